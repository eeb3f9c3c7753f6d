"""Confirm a held slot (or change a booking to it), and cancel: Postgres is the final word.

Invariant: a booking exists only if the guarded statement (booking.store.pg_confirm)
found a free place and the unique (resident, dose) index let it in; whatever Postgres
refuses, the hold is given back and nothing is half-written.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from booking import errors
from booking.domain import Actor, HoldRef, Resident
from booking.services import sessions
from booking.services.context import Ctx, request_hash
from booking.services.inventory import after_commit
from booking.store import pg, pg_cancel, pg_confirm
from machiai.pg import Conn


@dataclass(frozen=True, slots=True)
class Contact:
    """Where a resident asked messages to go: an address (None: none given) and a language."""

    email: str | None
    locale: str = "ja"


@dataclass(frozen=True, slots=True)
class Idempotency:
    scope: str
    key: str
    request_hash: str

    @property
    def record(self) -> tuple[str, str, str]:
        return self.scope, self.key, self.request_hash


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
    ctx: Ctx, actor: Actor, work: Callable[[Conn], Awaitable[pg.Outcome]]
) -> pg.Outcome:
    """Bounded retries on lock contention, then ``busy`` (503 + Retry-After).

    Runs in the actor's lane (municipality × channel): one lane can never take every
    pooled connection, so one city's surge leaves room for another city and for the
    phone operators of the same city."""
    lane = ctx.lane(actor.municipality, actor.channel.value)
    deadline_s = ctx.settings.db_timeout_s
    for attempt in range(ctx.settings.confirm_attempts):
        if lane.locked():
            try:
                # Promise: a paused Postgres makes "busy" within the deadline; nobody
                # queues for the lane behind transactions that cannot finish. (A free
                # lane is taken at once: no timer on the common path.)
                async with asyncio.timeout(deadline_s):
                    await lane.acquire()
            except TimeoutError:
                raise errors.Busy() from None
        else:
            await lane.acquire()
        try:
            async with pg.acquire(ctx.pool, deadline_s) as conn:
                return await work(conn)
        except pg.RETRYABLE:
            await asyncio.sleep(0.01 * (attempt + 1))
        except pg.UNAVAILABLE as exc:
            raise errors.Busy() from exc
        finally:
            lane.release()
    raise errors.Busy()


async def confirm_booking(
    ctx: Ctx,
    actor: Actor,
    resident: Resident,
    hold_id: str,
    idem: Idempotency | None = None,
    replaces: str | None = None,
    check: sessions.LivenessCheck | None = None,
    contact: Contact | None = None,
) -> dict[str, Any]:
    """Turn the resident's live hold into a booking (replacing ``replaces`` if given).

    A session liveness check owed (``check``) travels with the hold claim; a lapsed
    session books nothing (its claimed hold lapses on its own). ``contact``: where
    messages about the booking go, written with the booking in the same statement (a
    change without one keeps the address of the booking it replaces).

    A retried request (same idempotency key) gets the first one's result, without a read
    of the idempotency record up front on every confirm: a retry that comes after its twin
    committed finds the hold gone and replays then; a twin still in flight collides with
    the first on the idempotency record (or the booking itself) and replays then.
    """
    replaces_id = None
    if replaces is not None:
        replaces_id = pg.parse_uuid(replaces)
        if replaces_id is None:
            raise errors.NoBooking()
    hold = HoldRef.parse(hold_id)
    left_ms = None
    if hold is not None:
        claim = await ctx.redis.claim_hold(
            hold,
            resident,
            ctx.settings.confirm_grace_ms,
            None if check is None else check.key,
        )
        if check is not None:
            sessions.settle(ctx, check, claim.session_expiry_ms)
        left_ms = claim.left_ms
    else:
        await sessions.check_live(ctx, check)
    if hold is None or left_ms is None:
        # A twin of this request may have finished meanwhile: its result wins.
        again = await replay(ctx, idem)
        if again is not None:
            return again
        if hold is not None:
            await ctx.redis.give_back(hold, resident, place=False)
        raise errors.HoldExpired()
    req = pg_confirm.BookRequest(
        slot_id=uuid.UUID(hold.slot_id),
        municipality=resident.municipality,
        voucher=resident.voucher,
        channel=actor.channel.value,
        actor_kind=actor.kind,
        actor_id=actor.actor_id,
        staff_id=None if actor.staff_id is None else uuid.UUID(actor.staff_id),
        replaces=replaces_id,
        idem=None if idem is None else idem.record,
        email=None if contact is None else contact.email,
        locale="ja" if contact is None else contact.locale,
    )
    lock_timeout_ms = ctx.settings.lock_timeout_ms
    try:
        outcome = await run_transaction(
            ctx, actor, lambda conn: pg_confirm.book(conn, req, lock_timeout_ms)
        )
    except pg.IdempotentRace:
        await ctx.redis.give_back(hold, resident, pointer=False)
        again = await replay(ctx, idem)
        assert again is not None
        return again
    except errors.AppError:
        # Refused (full, duplicate, closed, down): the place goes back at once. When the
        # refusal is that a twin of this request (same key) booked first, the twin's
        # result is the answer.
        await ctx.redis.give_back(hold, resident)
        again = await replay(ctx, idem)
        if again is not None:
            return again
        raise
    except BaseException:
        # Refused (full, duplicate, closed, down): the place goes back at once.
        await ctx.redis.give_back(hold, resident)
        raise
    ctx.doses.pop(resident, None)
    if replaces is not None:
        ctx.recent.pop(replaces, None)
    remember(ctx, resident, outcome.response["booking"])
    tidy = ctx.redis.finish_confirm(outcome.states, hold, resident)
    await after_commit(ctx, outcome.states, tidy)
    return outcome.response


RECENT_S = 60.0


def remember(ctx: Ctx, resident: Resident, booking: dict[str, Any]) -> None:
    """Keep a booking this process just made for the next page's look at it."""
    if len(ctx.recent) > 10_000:
        ctx.recent.clear()
    ctx.recent[str(booking["booking_id"])] = (time.monotonic() + RECENT_S, resident, booking)


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
    record = None if idem is None else idem.record
    try:
        outcome = await run_transaction(
            ctx,
            actor,
            lambda conn: pg_cancel.cancel(
                conn,
                parsed,
                actor.municipality,
                voucher,
                actor.kind,
                actor.actor_id,
                record,
                ctx.settings.lock_timeout_ms,
            ),
        )
    except pg.IdempotentRace:
        again = await replay(ctx, idem)
        assert again is not None
        return again
    ctx.recent.pop(booking_id, None)
    if voucher is not None:
        ctx.doses.pop(Resident(actor.municipality, voucher), None)
    await after_commit(ctx, outcome.states, ctx.redis.apply_slots(outcome.states))
    return outcome.response
