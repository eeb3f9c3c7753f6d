"""Confirm a held slot (or change a booking to it): Postgres is the final word.

Invariant: a booking exists only if the guarded UPDATE found a free place and
the unique (resident, dose) index let it in; whatever Postgres refuses, the
hold is released and nothing is half-written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from booking import errors
from booking.services import sessions
from booking.services.context import Actor, Ctx, Resident, request_hash
from booking.services.hold import hold_member, parse_hold_id
from booking.store import pg, pg_booking, pg_confirm
from booking.store.redis_store import Code


@dataclass(frozen=True, slots=True)
class Idempotency:
    scope: str
    key: str
    request_hash: str


def idempotency(actor: Actor, operation: str, key: str | None, payload: Any) -> Idempotency | None:
    if key is None:
        return None
    return Idempotency(f"{actor.kind}:{actor.actor_id}:{operation}", key, request_hash(payload))


async def replay(ctx: Ctx, idem: Idempotency | None) -> dict[str, Any] | None:
    """The first result of a retried request, if there was one."""
    if idem is None:
        return None
    async with pg.acquire(ctx.pool) as conn:
        found = await pg.idempotent_result(conn, idem.scope, idem.key)
    if found is None:
        return None
    stored_hash, _status, response = found
    if stored_hash != idem.request_hash:
        raise errors.IdempotencyReused()
    assert isinstance(response, dict)
    return response


async def run_transaction(
    ctx: Ctx, actor: Actor, work: Callable[[Any], Awaitable[pg_booking.Outcome]]
) -> pg_booking.Outcome:
    """Bounded retries on lock contention, then ``busy`` (503 + Retry-After).

    Runs in the actor's lane (municipality × channel): one lane can never take every
    pooled connection, so one city's surge leaves room for another city and for the
    phone operators of the same city."""
    lane = ctx.lane(actor.municipality, actor.channel.value)
    for attempt in range(ctx.settings.confirm_attempts):
        try:
            async with lane, pg.acquire(ctx.pool) as conn:
                return await work(conn)
        except pg.RETRYABLE:
            await asyncio.sleep(0.01 * (attempt + 1))
        except pg.UNAVAILABLE as exc:
            raise errors.Busy() from exc
    raise errors.Busy()


async def confirm_booking(
    ctx: Ctx,
    actor: Actor,
    resident: Resident,
    hold_id: str,
    idem: Idempotency | None = None,
    replaces: str | None = None,
    check: sessions.LivenessCheck | None = None,
) -> dict[str, Any]:
    """Turn the resident's live hold into a booking (replacing ``replaces`` if given).

    A session liveness check owed (``check``) travels with the hold claim when there is
    nothing to replay; a lapsed session books nothing (its claimed hold lapses on its own).
    """
    if idem is not None:
        await sessions.check_live(ctx, check)
        check = None
    first = await replay(ctx, idem)
    if first is not None:
        return first
    replaces_id = None
    if replaces is not None:
        replaces_id = pg.parse_uuid(replaces)
        if replaces_id is None:
            raise errors.NoBooking()
    parsed = parse_hold_id(hold_id)
    slot_id, member, claimed = "", "", int(Code.HOLD_EXPIRED)
    if parsed is not None:
        slot_id, member = parsed[0], hold_member(parsed[1], resident)
        claimed, expiry_ms = await ctx.redis.claim_hold_checking_session(
            None if check is None else check.key, slot_id, member, ctx.settings.confirm_grace_ms
        )
        if check is not None:
            sessions.settle(ctx, check, expiry_ms)
    else:
        await sessions.check_live(ctx, check)
    if claimed == Code.HOLD_EXPIRED:
        # A concurrent twin of this request may have finished meanwhile: its result wins.
        again = await replay(ctx, idem)
        if again is not None:
            return again
        await ctx.redis.release_resident(resident.municipality, resident.voucher, hold_id)
        raise errors.HoldExpired()
    req = pg_booking.BookRequest(
        slot_id=uuid.UUID(slot_id),
        municipality=resident.municipality,
        voucher=resident.voucher,
        channel=actor.channel.value,
        actor_kind=actor.kind,
        actor_id=actor.actor_id,
        staff_id=None if actor.staff_id is None else uuid.UUID(actor.staff_id),
        replaces=replaces_id,
        idem=None if idem is None else (idem.scope, idem.key, idem.request_hash),
    )
    try:
        if req.replaces is None:
            outcome = await run_transaction(
                ctx, actor, lambda conn: pg_confirm.confirm_fast(conn, req)
            )
        else:
            outcome = await run_transaction(
                ctx, actor, lambda conn: pg_booking.book(conn, req, ctx.settings.lock_timeout_ms)
            )
    except pg.IdempotentRace:
        await ctx.redis.release_hold(slot_id, member)
        again = await replay(ctx, idem)
        assert again is not None
        return again
    except BaseException:
        # Refused (full, duplicate, closed, down): the place goes back at once.
        await ctx.redis.release_hold(slot_id, member)
        await ctx.redis.release_resident(resident.municipality, resident.voucher, hold_id)
        raise
    await ctx.redis.finish_confirm(
        outcome.states, slot_id, member, resident.municipality, resident.voucher, hold_id
    )
    ctx.inventory_changed.set()
    return outcome.response


async def cancel_booking(
    ctx: Ctx,
    actor: Actor,
    booking_id: str,
    voucher: str | None,
    idem: Idempotency | None = None,
) -> dict[str, Any]:
    """Cancel a confirmed booking; its place returns in Postgres and then Redis."""
    first = await replay(ctx, idem)
    if first is not None:
        return first
    parsed = pg.parse_uuid(booking_id)
    if parsed is None:
        raise errors.NoBooking()
    try:
        outcome = await run_transaction(
            ctx,
            actor,
            lambda conn: pg_booking.cancel(
                conn,
                parsed,
                actor.municipality,
                voucher,
                actor.kind,
                actor.actor_id,
                None if idem is None else (idem.scope, idem.key, idem.request_hash),
                ctx.settings.lock_timeout_ms,
            ),
        )
    except pg.IdempotentRace:
        again = await replay(ctx, idem)
        assert again is not None
        return again
    for state in outcome.states:
        await ctx.redis.apply_slot(state)
    ctx.inventory_changed.set()
    return outcome.response
