"""The delivery worker: fan the outbox out, claim due deliveries, send, record.

Any number of workers may run at once, in any processes (SKIP LOCKED on both the outbox
and the deliveries). Promise: every message is sent at least once or ends dead after
``max_attempts`` (listed in the admin console); a worker killed at any point loses
nothing, because a claim is a lease that runs out. Sends happen outside any transaction.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from booking.delivery import fanout
from booking.delivery.channels.base import Channel, SendFailed
from booking.delivery.channels.email import EmailChannel
from booking.delivery.channels.log import LogChannel
from booking.delivery.channels.webhook import WebhookChannel
from booking.delivery.messages import Unrenderable, render
from booking.delivery.ratelimit import RateLimit
from booking.delivery.settings import DeliverySettings
from booking.store import pg_delivery
from booking.store.pg_delivery import Claimed, Outcome

logger = logging.getLogger("machiai.delivery")
Clock = Callable[[], datetime]
# What a worker survives and tries again after its poll interval: Postgres away or
# restarting. Anything else is a bug and stops the worker (its supervisor restarts it).
TRANSIENT = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_channels(settings: DeliverySettings) -> dict[str, Channel]:
    return {
        "log": LogChannel(),
        "email": EmailChannel(settings.smtp, settings.timeout_s),
        "webhook": WebhookChannel(
            settings.webhook_secrets, settings.timeout_s, connections=settings.concurrency
        ),
    }


@dataclass(frozen=True, slots=True)
class Pass:
    """What one pass did: outbox messages fanned out, deliveries claimed, and how those
    ended (sent, to be retried, dead)."""

    fanned: int = 0
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: DeliverySettings,
        *,
        channels: Mapping[str, Channel] | None = None,
        clock: Clock = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.channels = dict(channels) if channels is not None else default_channels(settings)
        self.limits = {name: RateLimit(settings.rates.get(name, 0.0)) for name in self.channels}
        self.gate = asyncio.Semaphore(settings.concurrency)
        self.clock = clock
        self.rng = rng or random.Random()

    async def fan_out(self) -> int:
        """Fan out one batch of the outbox; how many messages it took."""
        async with self.pool.acquire() as conn:
            taken, _ = await pg_delivery.fan_out(
                conn, self.settings.batch_size, self.clock(), fanout.plan
            )
        return taken

    async def run_once(self) -> Pass:
        """One batch of fan-out, then one batch of sending."""
        fanned = await self.fan_out()
        lease = timedelta(seconds=self.settings.lease_s)
        async with self.pool.acquire() as conn:
            claimed = await pg_delivery.claim(conn, self.clock(), self.settings.batch_size, lease)
        outcomes = await asyncio.gather(*(self._attempt(c) for c in claimed))
        async with self.pool.acquire() as conn:
            await pg_delivery.record(conn, outcomes, self.clock())
        sent = sum(o.sent for o in outcomes)
        retried = sum(1 for o in outcomes if not o.sent and o.retry_at is not None)
        return Pass(fanned, len(claimed), sent, retried, len(outcomes) - sent - retried)

    async def _attempt(self, delivery: Claimed) -> Outcome:
        channel = self.channels.get(delivery.channel)
        try:
            if channel is None:
                raise SendFailed(f"no {delivery.channel} channel in this worker", permanent=True)
            message = render(delivery.topic, delivery.payload, delivery.locale)
            if message is None:
                raise SendFailed(f"{delivery.topic} has no message", permanent=True)
            await self.limits[delivery.channel].take()
            async with self.gate:
                # The channel's own timeouts come first; this bounds a channel that has none.
                await asyncio.wait_for(
                    channel.send(delivery, message), self.settings.timeout_s * 1.5
                )
        except Unrenderable as exc:
            return self._failed(delivery, str(exc), permanent=True)
        except SendFailed as exc:
            return self._failed(delivery, exc.reason, permanent=exc.permanent)
        except TimeoutError:
            return self._failed(delivery, "no answer in time", permanent=False)
        return Outcome(delivery.delivery_id, delivery.attempt, sent=True)

    def _failed(self, delivery: Claimed, reason: str, *, permanent: bool) -> Outcome:
        """Retry after a full-jitter backoff, or dead (permanent, or out of attempts)."""
        if permanent or delivery.attempt >= self.settings.max_attempts:
            logger.warning(
                "delivery %s dead after %d attempt(s): %s",
                delivery.idempotency_key,
                delivery.attempt,
                reason,
            )
            return Outcome(delivery.delivery_id, delivery.attempt, sent=False, error=reason)
        ceiling = min(
            self.settings.backoff_cap_s,
            self.settings.backoff_base_s * 2 ** (delivery.attempt - 1),
        )
        retry_at = self.clock() + timedelta(seconds=self.rng.uniform(0, ceiling))
        return Outcome(
            delivery.delivery_id, delivery.attempt, sent=False, retry_at=retry_at, error=reason
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until ``stop`` is set; the pass in flight is finished first (its
        sends and their outcomes), so a stop never leaves a lease to run out."""
        idle_s = self.settings.poll_ms / 1000
        while not stop.is_set():
            try:
                done = await self.run_once()
            except TRANSIENT as exc:
                logger.warning("delivery pass failed, trying again: %s", exc)
                done = Pass()
            full = self.settings.batch_size
            if done.fanned >= full or done.claimed >= full:
                continue  # more is waiting: no pause
            try:
                await asyncio.wait_for(stop.wait(), idle_s)
            except TimeoutError:
                pass

    async def aclose(self) -> None:
        for channel in self.channels.values():
            await channel.aclose()
