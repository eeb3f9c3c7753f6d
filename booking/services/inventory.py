"""Redis inventory rebuilt from Postgres: at start, when the epoch key vanishes, per slot on demand.

Invariant: Redis never believes in more places than Postgres had at some
version; every write is the full, versioned slot state (apply_slot-3), so a
rebuild racing live confirms converges on the newest Postgres state. Holds
lost with a flush are gone (their residents get ``hold_expired``); the guarded
UPDATE in Postgres stops any oversell meanwhile.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Sequence

from booking import errors
from booking.domain import SlotState
from booking.services.context import Ctx
from booking.store import pg

log = logging.getLogger(__name__)


async def load_slot(ctx: Ctx, slot_id: str, asked_at: float | None = None) -> bool:
    """Mirror one slot from Postgres; False when Postgres does not know it. Concurrent
    holds on a slot Redis lacks share one read (at 9:00 they come by the hundred);
    ``asked_at`` (monotonic: when the hold was sent that found the slot missing) lets a
    mirror finished since then answer too."""
    return await ctx.mirroring.run(slot_id, lambda: _load_slot(ctx, slot_id), asked_at)


async def _load_slot(ctx: Ctx, slot_id: str) -> bool:
    async with pg.acquire(ctx.pool) as conn:
        states = await pg.slot_states(conn, [slot_id])
    await ctx.redis.apply_slots(states)
    return bool(states)


async def mirror_published(ctx: Ctx, slot_ids: Sequence[str]) -> None:
    """Slots just published: into Redis and this process's catalogue before anyone holds
    them, so a surge's first holds do not each go to Postgres for them. Best effort: a
    slot missing here is mirrored on its first hold."""
    if not slot_ids:
        return
    async with pg.acquire(ctx.pool) as conn:
        states = await pg.slot_states(conn, slot_ids)
        metas = await pg.fetch_slot_metas(conn, slot_ids)
    ctx.catalog.remember(metas)
    await ctx.redis.apply_slots(states)
    ctx.inventory_changed.set()


async def rebuild_inventory(ctx: Ctx) -> int:
    """Mirror every slot of events not yet over, then mark the epoch. Returns slots written."""
    # A Redis that lost its data lost its scripts too: teach them first, so the first
    # requests of a surge do not each meet NOSCRIPT and load them again.
    await ctx.redis.load_scripts()
    async with pg.acquire(ctx.pool) as conn:
        # The marks before the slots: an event changed in between is older in the record
        # than in the mirror, and only mirrored once more.
        marks = await pg.event_marks(conn)
        states = await pg.slot_states(conn)
    await ctx.redis.apply_slots(states)
    await ctx.redis.set_epoch(f"{int(time.time())}:{uuid.uuid4().hex[:8]}", marks)
    return len(states)


async def mirror_unmirrored(ctx: Ctx) -> int:
    """Mirror again the slots whose committed change Redis did not take (see
    :func:`after_commit`); they stay marked until Redis has them. Returns slots written."""
    if not ctx.unmirrored:
        return 0
    # Taken before the read: a slot marked again while it runs (a later commit Redis
    # missed) stays marked for the next turn instead of being cleared by an older read.
    slot_ids, ctx.unmirrored = ctx.unmirrored, set()
    try:
        async with pg.acquire(ctx.pool) as conn:
            states = await pg.slot_states(conn, sorted(slot_ids))
        await ctx.redis.apply_slots(states)
    except BaseException:
        ctx.unmirrored |= slot_ids
        raise
    return len(states)


async def after_commit(ctx: Ctx, states: Sequence[SlotState], tidy: Awaitable[None]) -> None:
    """Run ``tidy`` (Redis catching up with what Postgres just committed).

    Promise: a change Postgres committed is answered as done. Redis only mirrors it, so a
    Redis that fails here (a cluster master dying, a timeout) does not turn the answer into
    "busy" — the resident would try again and find a booking they were told failed. Its
    slots are mirrored again by the refresher instead; a hold left behind lapses on its own.
    """
    try:
        await tidy
    except errors.Busy:
        ctx.unmirrored.update(st.slot_id for st in states)
        log.warning("Redis missed a committed change of %d slot(s): mirrored again", len(states))
    ctx.inventory_changed.set()


async def ensure_inventory(ctx: Ctx) -> bool:
    """Rebuild when the epoch key is missing (Redis restarted empty or was flushed); True
    when it did.

    Otherwise mirror again the slots of every event an administrator changed (in the
    waitroom: its times, closing it, its phone share) since its slots were mirrored: Redis
    holds each slot's booking window, closed flag, kept places and release time, and must
    agree with Postgres within a refresh (the change bumped those slots' versions,
    migration 0003, so the newer state is taken). One small Postgres read and one Redis
    round trip per refresh, off the hot paths."""
    async with pg.acquire(ctx.pool) as conn:
        marks = await pg.event_marks(conn)
    epoch, mirrored = await ctx.redis.epoch_and_marks(list(marks))
    if epoch is None:
        await rebuild_inventory(ctx)
        return True
    changed = {ev: mark for ev, mark in marks.items() if mirrored.get(ev) != mark}
    if changed:
        async with pg.acquire(ctx.pool) as conn:
            states = await pg.event_slot_states(conn, list(changed))
        await ctx.redis.apply_slots(states)
        await ctx.redis.remember_marks(changed)
        ctx.inventory_changed.set()
    return False
