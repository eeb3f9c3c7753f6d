"""What the delivery tests share: a webhook receiver that checks signatures and can fail
or hang on cue, an SMTP sink (aiosmtpd), a clock the test moves, worker settings."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import asyncpg
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from booking.delivery.settings import DeliverySettings, SmtpSettings
from booking.delivery.signature import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from booking.store import pg_delivery
from booking.store.pg_delivery import ChannelConfig
from machiai.config import Mode
from machiai.embedded import free_port
from tests.servers import serving

SECRET = "webhook-test-key-" + "x" * 32


class Clock:
    """The workers' clock: starts now, moves only when the test says."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def worker_settings(**changes: Any) -> DeliverySettings:
    base: dict[str, Any] = {
        "mode": Mode.DEVELOPMENT,
        "webhook_secrets": (SECRET,),
        "max_attempts": 5,
        "backoff_base_s": 1.0,
        "backoff_cap_s": 8.0,
        "lease_s": 30.0,
        "batch_size": 50,
        "timeout_s": 0.5,
        "concurrency": 10,
        "rates": {"log": 0.0, "email": 0.0, "webhook": 0.0},
    }
    base.update(changes)
    return DeliverySettings(**base)


@dataclass
class Receiver:
    """A city's webhook bridge that keeps each message once (by its idempotency key).

    ``script``: what it does on the n-th request carrying one key ("ok", "503", or "hang":
    answer later than the sender waits); past its end, the last step again."""

    secret: str = SECRET
    script: list[str] = field(default_factory=lambda: ["ok"])
    hang_s: float = 1.0
    # Every request takes this long (a slow bridge), to catch a worker mid-batch.
    delay_s: float = 0.0
    tries: Counter[str] = field(default_factory=Counter)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0
    refused: int = 0

    def app(self) -> Starlette:
        async def hook(request: Request) -> JSONResponse:
            body = await request.body()
            headers = request.headers
            if not verify_signature(
                self.secret, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER), body
            ):
                self.refused += 1
                return JSONResponse({"error": "signature"}, status_code=401)
            key = headers[KEY_HEADER]
            step = self.script[min(self.tries[key], len(self.script) - 1)]
            self.tries[key] += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if step == "hang":
                await asyncio.sleep(self.hang_s)
                return JSONResponse({"error": "late"}, status_code=503)
            if step == "503":
                return JSONResponse({"error": "busy"}, status_code=503)
            if key in self.accepted:
                self.duplicates += 1
                return JSONResponse({"duplicate": True})
            self.accepted[key] = json.loads(body)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """The receiver's URL while it serves."""
        async with serving(self.app()) as base:
            yield f"{base}/hook"


class Sink:
    """aiosmtpd's handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[Sink, SmtpSettings]]:
    """A local SMTP server (plain, no auth) and the settings that reach it."""
    sink = Sink()
    port = free_port("127.0.0.1")
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, SmtpSettings(host="127.0.0.1", port=port, sender="yoyaku@city.example")
    finally:
        controller.stop()


async def set_channels(
    db: asyncpg.Pool, municipality: str, *, email: bool = False, webhook: str | None = None
) -> None:
    configs = [ChannelConfig("log", False)]
    if email:
        configs.append(ChannelConfig("email", True))
    if webhook:
        configs.append(ChannelConfig("webhook", True, webhook))
    async with db.acquire() as conn:
        await pg_delivery.set_channels(conn, municipality, configs, "system", "test")


def reminder_payload(municipality: str, n: int) -> dict[str, Any]:
    """A day-before reminder as its writer makes it (BOOKING_JSON + municipality_code)."""
    return {
        "booking_id": str(uuid.uuid4()),
        "confirmation_code": f"CODE{n:04d}",
        "slot_id": str(uuid.uuid4()),
        "clinic_id": str(uuid.uuid4()),
        "clinic_name_ja": "中央診療所",
        "clinic_name_en": "Central Clinic",
        "starts_at": "2026-12-03T05:30:00+00:00",
        "dose_number": 1,
        "vaccine_code": "comirnaty",
        "status": "confirmed",
        "channel": "web",
        "created_at": "2026-11-30T00:00:00+00:00",
        "municipality_code": municipality,
    }


async def add_reminders(db: asyncpg.Pool, municipality: str, n: int) -> None:
    await db.executemany(
        "INSERT INTO outbox (topic, payload) VALUES ('booking.reminder.due', $1::jsonb)",
        [(json.dumps(reminder_payload(municipality, i)),) for i in range(n)],
    )


async def states(db: asyncpg.Pool) -> dict[str, int]:
    rows = await db.fetch("SELECT state::text, count(*) AS n FROM deliveries GROUP BY state")
    return {r["state"]: int(r["n"]) for r in rows}
