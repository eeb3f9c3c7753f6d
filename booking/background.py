"""The lifespan's background loop: epoch check (rebuild Redis if lost) and the waitroom
handoff hashes (event inventory and booking load), at least every refresh interval and at
once after a booking changed the inventory — but no more than once per ``MIN_GAP_S``: during
a surge every confirm signals a change, and refreshing hundreds of times a second would cost
the service a tenth of its CPU and Postgres an aggregate over every slot each time."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import asyncpg

from booking import errors
from booking.middleware import p95_ms
from booking.services.context import Ctx
from booking.services.inventory import ensure_inventory
from booking.store import pg

log = logging.getLogger("booking.background")
MIN_GAP_S = 0.2


async def refresh_once(ctx: Ctx, samples: deque[tuple[float, float]]) -> None:
    if await ensure_inventory(ctx):
        log.warning("booking inventory rebuilt from Postgres (Redis epoch was missing)")
    # Taken before counting: a report dated after an event's opening was counted after it
    # (the waitroom trusts a "sold out" only from such a report).
    now_ms = await ctx.redis.now_ms()
    async with pg.acquire(ctx.pool) as conn:
        remaining = await pg.event_remaining(conn)
    latency = p95_ms(samples)
    for event_id, left in remaining.items():
        await ctx.redis.publish_event_status(event_id, left, latency, now_ms)


async def refresh_forever(
    ctx: Ctx, samples: deque[tuple[float, float]], stop: asyncio.Event
) -> None:
    """Runs until ``stop`` is set. A stop flag as well as cancel: client libraries may
    swallow a cancellation that lands inside them, and the lifespan must still end."""
    interval_s = ctx.settings.refresh_interval_ms / 1000
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        # Cleared before the refresh: a change during it wakes the next one.
        ctx.inventory_changed.clear()
        try:
            await refresh_once(ctx, samples)
        except (errors.AppError, asyncpg.PostgresError, OSError) as exc:
            log.warning("booking refresh failed: %s", exc)
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
        # arrives as the event fires, and the lifespan would wait for this task forever.
        try:
            async with asyncio.timeout(interval_s):
                await ctx.inventory_changed.wait()
        except TimeoutError:
            pass
        rest_s = MIN_GAP_S - (loop.time() - started)
        if rest_s > 0 and not stop.is_set():
            try:
                async with asyncio.timeout(rest_s):
                    await stop.wait()
            except TimeoutError:
                pass
