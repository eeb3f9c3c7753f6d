"""Hold a slot for a resident: Redis Lua only, no Postgres write."""

from __future__ import annotations

import time
from dataclasses import dataclass

from booking import errors
from booking.domain import Actor, HoldRef, Refusal, Resident, SlotMeta
from booking.services import sessions
from booking.services.context import Ctx
from booking.services.inventory import load_slot
from booking.store.redis_store import ScriptRefused

# Reloads of a slot Redis lost, before the hold answers ``busy``.
RELOADS = 2


@dataclass(frozen=True, slots=True)
class Hold:
    hold: HoldRef
    expires_in_ms: int
    left: int

    @property
    def hold_id(self) -> str:
        """What the client is given: the hold's public id."""
        return self.hold.public

    @property
    def slot_id(self) -> str:
        return self.hold.slot_id


async def visible_slot(ctx: Ctx, actor: Actor, slot_id: str) -> SlotMeta:
    """The slot if this actor may book it: residents in their event, staff in their tenant."""
    meta = await ctx.catalog.get(slot_id)
    if meta is None or meta.municipality != actor.municipality:
        raise errors.NotFound()
    if actor.event_id is not None and meta.event_id != actor.event_id:
        raise errors.NotFound()
    return meta


async def hold_slot(
    ctx: Ctx,
    actor: Actor,
    resident: Resident,
    slot_id: str,
    check: sessions.LivenessCheck | None = None,
) -> Hold:
    """Reserve one place for ``hold_ms``; invariant: at most one live hold per resident.

    The place comes from the pool of the actor's channel (promise "the phone keeps its
    share": a web resident never holds a place kept for the phone before its release);
    ``left`` is what that channel may still hold.

    The resident pointer and the slot hold are two scripts on two hash tags, sent in
    one round trip (with the session liveness check when one is owed). The pointer
    decides: a refused pointer gives its slot hold straight back (that hold's id was
    never told to anyone, so it cannot be confirmed meanwhile); a refused slot hold or
    a lapsed session gives the pointer back.
    """
    await visible_slot(ctx, actor, slot_id)
    hold = HoldRef.new(slot_id)
    hold_ms = ctx.settings.hold_ms
    channel = actor.channel
    asked_at = time.monotonic()
    attempt = await ctx.redis.claim_resident_and_hold(
        resident, hold, hold_ms, None if check is None else check.key, channel=channel
    )
    left, refusal = attempt.left, attempt.refusal
    try:
        if check is not None:
            sessions.settle(ctx, check, attempt.session_expiry_ms)
        if not attempt.pointer_taken:
            current = attempt.existing
            raise errors.HoldExists(
                detail={}
                if current is None
                else {"hold_id": current.public, "slot_id": current.slot_id}
            )
        for _ in range(RELOADS):
            if refusal is not Refusal.NOT_LOADED:
                break
            # Redis lost this slot: mirror it from Postgres and try again.
            if not await load_slot(ctx, slot_id, asked_at):
                raise errors.NotFound()
            asked_at = time.monotonic()
            try:
                left = await ctx.redis.hold_slot(hold, resident, hold_ms, channel=channel)
                refusal = None
            except ScriptRefused as exc:
                refusal = exc.code
        if refusal is not None:
            raise errors.refused(refusal)
    except BaseException:
        await ctx.redis.give_back(
            hold, resident, place=refusal is None, pointer=attempt.pointer_taken
        )
        raise
    assert left is not None
    if left == 0:
        ctx.inventory_changed.set()
    return Hold(hold=hold, expires_in_ms=hold_ms, left=left)


async def current_hold(ctx: Ctx, resident: Resident) -> HoldRef | None:
    """The resident's live hold, if any."""
    return await ctx.redis.resident_hold(resident)


async def release_hold(ctx: Ctx, resident: Resident, hold_id: str) -> None:
    """Give the resident's hold back at once; unknown holds are ``hold_expired``."""
    hold = HoldRef.parse(hold_id)
    if hold is None or await current_hold(ctx, resident) != hold:
        raise errors.HoldExpired()
    await ctx.redis.give_back(hold, resident)


async def extend_hold(ctx: Ctx, resident: Resident, hold_id: str) -> int:
    """Once per hold, ``hold_ms`` more from now (a resident who needs more time to check
    the details must not lose the place: WCAG 2.2.1); ms left after it."""
    hold = HoldRef.parse(hold_id)
    if hold is None:
        raise errors.HoldExpired()
    try:
        return await ctx.redis.extend_hold(hold, resident, ctx.settings.hold_ms)
    except ScriptRefused as refused:
        raise errors.refused(refused.code) from None


async def hold_left_ms(ctx: Ctx, resident: Resident, hold_id: str) -> int:
    """Ms until the resident's hold lapses; a lapsed or unknown one is ``hold_expired``."""
    hold = HoldRef.parse(hold_id)
    left = None if hold is None else await ctx.redis.hold_left_ms(hold, resident)
    if left is None:
        raise errors.HoldExpired()
    return left
