"""The lifespan's background loop: epoch check (rebuild Redis if lost) and the waitroom
handoff hashes (event inventory and booking load), at least every refresh interval and at
once after a booking changed the inventory — but no more than once per ``MIN_GAP_S``: during
a surge every confirm signals a change, and refreshing hundreds of times a second would cost
the service a tenth of its CPU and Postgres an aggregate over every slot each time. Once a
minute it also deletes the used passes that expired, and every second it seals the audit rows
written meanwhile (by every process of both services) into their hash chains."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from datetime import UTC, date, datetime

import asyncpg

from booking import errors
from booking.middleware import p95_ms
from booking.services.context import Ctx
from booking.services.inventory import ensure_inventory, mirror_unmirrored
from booking.services.reminders import remind_when_due
from booking.store import pg, pg_delivery, pg_passes
from machiai import audit, metrics

log = logging.getLogger("booking.background")
MIN_GAP_S = 0.2
# Used passes past their expiry are deleted this often (they prove nothing any more).
SWEEP_EVERY_S = 60.0
# Audit rows are sealed this often (machiai/audit.py): how long a new row can be changed
# unseen. Every booking process tries; one seals at a time, the others return at once.
SEAL_EVERY_S = 1.0
# The day-before reminders are looked at this often (written once a day per municipality,
# after BOOKING_REMINDER_AT; every process tries, the claim in Postgres lets one write).
REMIND_EVERY_S = 60.0
# The outbox's backlog is counted this often for the metrics (two counts on partial
# indexes; the alert "outbox not draining" looks at 15 minutes).
BACKLOG_EVERY_S = 5.0


async def refresh_once(ctx: Ctx, samples: deque[tuple[float, float]]) -> None:
    if await ensure_inventory(ctx):
        metrics.REDIS_REBUILDS.inc()
        log.warning("booking inventory rebuilt from Postgres (Redis epoch was missing)")
    await mirror_unmirrored(ctx)
    pool = ctx.pool
    metrics.report_pool("booking", pool.get_size() - pool.get_idle_size(), pool.get_max_size())
    # Taken before counting: a report dated after an event's opening was counted after it
    # (the waitroom trusts a "sold out" only from such a report).
    now_ms = await ctx.redis.now_ms()
    async with pg.acquire(ctx.pool) as conn:
        remaining = await pg.event_remaining(conn)
    latency = p95_ms(samples)
    for event_id, left in remaining.items():
        await ctx.redis.publish_event_status(event_id, left, latency, now_ms)
        metrics.SLOTS_LEFT.labels(event_id).set(left)


async def seal_audit(ctx: Ctx) -> bool:
    """Seal one batch of audit rows; True when it was full (more are waiting)."""
    async with pg.acquire(ctx.pool) as conn:
        return await audit.seal(conn) == audit.SEAL_BATCH_ROWS


async def refresh_forever(
    ctx: Ctx, samples: deque[tuple[float, float]], stop: asyncio.Event
) -> None:
    """Runs until ``stop`` is set. A stop flag as well as cancel: client libraries may
    swallow a cancellation that lands inside them, and the lifespan must still end."""
    interval_s = ctx.settings.refresh_interval_ms / 1000
    loop = asyncio.get_running_loop()
    swept = loop.time()
    counted = -math.inf
    refreshed = sealed = -math.inf
    behind = False  # the last seal left rows waiting: seal again at the next turn
    reminded = -math.inf
    reminders_done: set[tuple[str, date]] = set()
    while not stop.is_set():
        started = loop.time()
        # Cleared before the refresh: a change during it wakes the next one.
        changed = ctx.inventory_changed.is_set()
        ctx.inventory_changed.clear()
        if changed or started - refreshed >= interval_s:
            refreshed = started
            try:
                await refresh_once(ctx, samples)
                if started - swept >= SWEEP_EVERY_S:
                    swept = started
                    async with pg.acquire(ctx.pool) as conn:
                        await pg_passes.forget_expired(conn)
                if started - counted >= BACKLOG_EVERY_S:
                    counted = started
                    async with pg.acquire(ctx.pool) as conn:
                        waiting, dead = await pg_delivery.backlog(conn)
                    metrics.OUTBOX_BACKLOG.set(waiting)
                    metrics.OUTBOX_DEAD.set(dead)
            except (errors.AppError, asyncpg.PostgresError, OSError) as exc:
                log.warning("booking refresh failed: %s", exc)
        if started - reminded >= REMIND_EVERY_S:
            reminded = started
            try:
                await remind_when_due(
                    ctx.pool, datetime.now(UTC), ctx.settings.reminder_at_min, reminders_done
                )
            except (errors.AppError, asyncpg.PostgresError, OSError) as exc:
                log.warning("day-before reminders failed (tried again in a minute): %s", exc)
        if behind or started - sealed >= SEAL_EVERY_S:
            sealed = started
            try:
                behind = await seal_audit(ctx)
            except (errors.AppError, asyncpg.PostgresError, OSError) as exc:
                behind = False
                log.warning("audit sealing failed: %s", exc)
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
        # arrives as the event fires, and the lifespan would wait for this task forever.
        try:
            async with asyncio.timeout(0 if behind else min(interval_s, SEAL_EVERY_S)):
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
