"""The webhook channel: a signed JSON POST to the municipality's receiver (a LINE or SMS
bridge), as :mod:`booking.delivery.signature` describes.

Any 2xx is taken; 408, 425, 429 and 5xx, a timeout or a refused connection are tried
again later; another 4xx is the receiver refusing this request as such (dead at once)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from booking.delivery.channels.base import SendFailed
from booking.delivery.messages import Message
from booking.delivery.signature import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from booking.store.pg_delivery import Claimed

RETRIED = {408, 425, 429}
SHARD = 4


def webhook_body(delivery: Claimed, message: Message) -> dict[str, Any]:
    return {
        "id": delivery.idempotency_key,
        "topic": delivery.topic,
        "municipality_code": delivery.municipality,
        "outbox_id": delivery.outbox_id,
        "payload": delivery.payload,
        "text": {"locale": message.locale, "subject": message.subject, "body": message.body},
    }


class WebhookChannel:
    def __init__(
        self,
        secrets: Sequence[str],
        timeout_s: float,
        connections: int = 20,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.secrets = tuple(secrets)
        self.clock_s = clock_s
        # As many kept-alive connections as sends in flight (the worker's concurrency), in
        # pools of SHARD: httpcore's pool walks its connections for every request and every
        # waiting request, so one pool of 20 cost twice the CPU per webhook of 5 pools of 4
        # (benchmarks/booking/bench_delivery.py).
        limits = httpx.Limits(max_connections=SHARD, max_keepalive_connections=SHARD)
        self.clients = [
            httpx.AsyncClient(
                timeout=httpx.Timeout(timeout_s), limits=limits, follow_redirects=False
            )
            for _ in range(max(1, -(-connections // SHARD)))
        ]

    async def send(self, delivery: Claimed, message: Message) -> None:
        if not self.secrets:
            raise SendFailed("no signing key: set MACHIAI_WEBHOOK_SECRET")
        body = json.dumps(webhook_body(delivery, message), ensure_ascii=False).encode()
        timestamp = int(self.clock_s())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self.secrets, timestamp, body),
            KEY_HEADER: delivery.idempotency_key,
        }
        try:
            client = self.clients[delivery.delivery_id % len(self.clients)]
            response = await client.post(delivery.recipient, content=body, headers=headers)
        except httpx.TimeoutException:
            raise SendFailed("webhook: no answer in time") from None
        except httpx.HTTPError as exc:
            raise SendFailed(f"webhook: {type(exc).__name__}: {str(exc)[:200]}") from None
        if response.is_success:
            return
        status = response.status_code
        permanent = 400 <= status < 500 and status not in RETRIED
        raise SendFailed(f"webhook: HTTP {status}", permanent=permanent)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
