"""Hold a slot for a resident: Redis Lua only, no Postgres write."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from booking import errors
from booking.services import sessions
from booking.services.context import Actor, Ctx, Resident
from booking.services.inventory import load_slot
from booking.store.pg import SlotMeta
from booking.store.redis_store import Code

_SLOT_ERRORS: dict[int, type[errors.AppError]] = {
    Code.CLOSED: errors.SlotClosed,
    Code.NOT_OPEN: errors.SlotNotOpen,
    Code.ENDED: errors.SlotNotOpen,
    Code.FULL: errors.SlotFull,
}


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    slot_id: str
    expires_in_ms: int
    left: int


def public_hold_id(slot_id: str, token: str) -> str:
    """What the client holds: ``<slot id>.<random token>`` (the slot travels with it, so
    confirm needs no lookup); it is also the resident pointer's value."""
    return f"{slot_id}.{token}"


def parse_hold_id(hold_id: str) -> tuple[str, str] | None:
    """(slot id, token) of a well-formed public hold id, else None."""
    slot_id, _, token = hold_id.partition(".")
    if len(slot_id) != 36 or len(token) != 32:
        return None
    return slot_id, token


def hold_member(token: str, resident: Resident) -> str:
    """The holds-ZSET member: bound to the resident, so nobody else can confirm it."""
    return f"{token}:{resident.ref}"


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

    The resident pointer and the slot hold are two scripts on two hash tags, sent in
    one round trip (with the session liveness check when one is owed). The pointer
    decides: a refused pointer gives its slot hold straight back (that hold's id was
    never told to anyone, so it cannot be confirmed meanwhile); a refused slot hold or
    a lapsed session gives the pointer back.
    """
    await visible_slot(ctx, actor, slot_id)
    token = uuid.uuid4().hex
    hold_id = public_hold_id(slot_id, token)
    member = hold_member(token, resident)
    hold_ms = ctx.settings.hold_ms
    who = (resident.municipality, resident.voucher)
    attempt = await ctx.redis.claim_resident_and_hold(
        who, hold_id, slot_id, member, hold_ms, None if check is None else check.key
    )
    left = attempt.left
    pointer_taken = attempt.pointer_code == 0
    try:
        if check is not None:
            sessions.settle(ctx, check, attempt.session_expiry_ms)
        if not pointer_taken:
            current = attempt.current_pointer
            raise errors.HoldExists(
                detail={"hold_id": current, "slot_id": current.partition(".")[0]}
            )
        for _ in range(3):
            if left != Code.NOT_LOADED:
                break
            # Redis lost this slot: mirror it from Postgres and try again.
            if not await load_slot(ctx, slot_id):
                raise errors.NotFound()
            left = await ctx.redis.hold_slot(slot_id, member, hold_ms)
        if left == Code.NOT_LOADED:
            raise errors.Busy()
        if left < 0:
            raise _SLOT_ERRORS.get(left, errors.SlotFull)()
    except BaseException:
        if left >= 0:
            await ctx.redis.release_hold(slot_id, member)
        if pointer_taken:
            await ctx.redis.release_resident(resident.municipality, resident.voucher, hold_id)
        raise
    if left == 0:
        ctx.inventory_changed.set()
    return Hold(hold_id=hold_id, slot_id=slot_id, expires_in_ms=hold_ms, left=left)


async def current_hold(ctx: Ctx, resident: Resident) -> tuple[str, str] | None:
    """(hold id, slot id) of the resident's live hold pointer, if any."""
    value = await ctx.redis.resident_pointer(resident.municipality, resident.voucher)
    if value is None:
        return None
    return value, value.partition(".")[0]


async def release_hold(ctx: Ctx, resident: Resident, hold_id: str) -> None:
    """Give the resident's hold back at once; unknown holds are ``hold_expired``."""
    parsed = parse_hold_id(hold_id)
    current = await current_hold(ctx, resident)
    if parsed is None or current is None or current[0] != hold_id:
        raise errors.HoldExpired()
    slot_id, token = parsed
    await ctx.redis.release_hold(slot_id, hold_member(token, resident))
    await ctx.redis.release_resident(resident.municipality, resident.voucher, hold_id)
