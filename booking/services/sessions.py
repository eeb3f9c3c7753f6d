"""Resident booking sessions: an admission pass plus a registry identity opens one.

Invariants: a pass opens at most one session (redeemed in Postgres, which survives a
Redis loss, and atomically with the session's registration in Redis); unknown voucher,
wrong birth date and ineligible group get the same refusal; attempts are throttled per
voucher and per client.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import date

import asyncpg

from booking import errors
from booking.domain import Resident, Session
from booking.services import bookings
from booking.services.context import Ctx
from booking.store import pg, pg_passes
from booking.store.redis_store import ScriptRefused
from machiai.tokens import SessionClaims, TokenError, Tokens

log = logging.getLogger("booking.sessions")
SESSION_RECHECK_S = 1.0
PASS_CLOCK_MARGIN_S = 120
MAX_MEMBERS = 3


@dataclass(frozen=True, slots=True)
class Opened:
    token: str
    session: Session
    expires_in_s: int


async def _throttle(ctx: Ctx, client: str, resident: Resident | None) -> None:
    """Identity attempts per client address, and failed ones per voucher, are bounded:
    guessing voucher numbers or birth dates is throttled (429 + Retry-After)."""
    s = ctx.settings
    by_client = await ctx.redis.client_attempts(client, s.throttle_client_window_s * 1000)
    if by_client.count > s.throttle_client_limit:
        raise errors.Throttled(by_client.ttl_ms // 1000 + 1)
    if resident is not None:
        failures = await ctx.redis.voucher_failures(
            resident, s.throttle_voucher_window_s * 1000, commit=False
        )
        if failures.count >= s.throttle_voucher_limit:
            raise errors.Throttled(failures.ttl_ms // 1000 + 1)


async def _identify(
    ctx: Ctx, event_id: str, voucher: str, birth_date: date, client: str
) -> Resident | None:
    """The resident if the registry knows this voucher with this birth date for the event's
    group; None for an unknown event. Throttled per client and per voucher; every identity
    failure gets the same refusal (no oracle for which part was wrong)."""
    async with pg.acquire(ctx.pool) as conn:
        event = await pg.fetch_event(conn, event_id)
        resident = None if event is None else Resident(str(event["municipality_code"]), voucher)
        await _throttle(ctx, client, resident)
        if event is None or resident is None:
            return None
        doses = await pg.identify(
            conn, resident.municipality, voucher, birth_date, event["eligibility_group"]
        )
    if doses is None:
        s = ctx.settings
        await ctx.redis.voucher_failures(resident, s.throttle_voucher_window_s * 1000, commit=True)
        raise errors.IdentityRefused()
    bookings.remember_doses(ctx, resident, doses)
    return resident


def _token(tokens: Tokens, session: Session) -> str:
    return tokens.dump_session(
        SessionClaims(
            session.session_id,
            session.event_id,
            session.resident.municipality,
            session.resident.voucher,
            admitted=session.admitted,
            started_s=session.started_s,
            members=session.members,
        )
    )


def pass_looks_valid(ctx: Ctx, tokens: Tokens, pass_token: str) -> bool:
    """The pass is authentic and not expired (whether it was used is Redis's to say)."""
    try:
        tokens.load_pass(pass_token, ctx.settings.core.pass_ttl_s)
    except TokenError:
        return False
    return True


async def start_session(
    ctx: Ctx, tokens: Tokens, pass_token: str, voucher: str, birth_date: date, client: str
) -> Opened:
    """Check the pass and the resident, then redeem the pass and open the session."""
    try:
        admission = tokens.load_pass(pass_token, ctx.settings.core.pass_ttl_s)
    except TokenError:
        raise errors.PassInvalid() from None
    if await ctx.redis.pass_used(admission.event_id, admission.pass_id):
        raise errors.PassUsed()
    resident = await _identify(ctx, admission.event_id, voucher, birth_date, client)
    if resident is None:
        raise errors.PassInvalid()
    session = Session(uuid.uuid4().hex, admission.event_id, resident, started_s=int(time.time()))
    # Promise: a pass opens one session, also after Redis lost its memory. Postgres keeps
    # the redemption (its primary key decides between twins); Redis, which refused replays
    # cheaply above, registers the live session. Kept past the pass's own expiry by a
    # margin for the clocks of the processes that sign and check it.
    async with pg.acquire(ctx.pool) as conn:
        redeemed = await pg_passes.redeem(
            conn,
            admission.event_id,
            admission.pass_id,
            session.session_id,
            ctx.settings.core.pass_ttl_s + PASS_CLOCK_MARGIN_S,
        )
    if not redeemed:
        raise errors.PassUsed()
    ttl_s = ctx.settings.session_ttl_s
    try:
        await ctx.redis.open_session(
            admission.event_id,
            admission.pass_id,
            session.session_id,
            ttl_s * 1000,
            (ctx.settings.core.pass_ttl_s + 60) * 1000,
        )
    except ScriptRefused as refused:
        raise errors.refused(refused.code) from None
    except BaseException:
        # No session was opened (Redis unreachable, the request cancelled): the pass is
        # the resident's to use again. Should Postgres fail here too, the pass stays used.
        await _release(ctx, admission.pass_id, session.session_id)
        raise
    token = _token(tokens, session)
    # Minted and registered here, just now: this process needs neither the signature
    # check nor the liveness read on the resident's next request.
    _trust(ctx, token, session, ttl_s)
    return Opened(token, session, ttl_s)


async def _release(ctx: Ctx, pass_id: str, session_id: str) -> None:
    try:
        async with pg.acquire(ctx.pool) as conn:
            await pg_passes.release(conn, pass_id, session_id)
    except (errors.AppError, asyncpg.PostgresError, OSError) as exc:
        log.warning("a pass stays used although its session did not open: %s", exc)


async def start_lookup(
    ctx: Ctx, tokens: Tokens, event_id: str, voucher: str, birth_date: date, client: str
) -> Opened:
    """A session to see and cancel one's bookings, without queueing: identity checked and
    throttled exactly as a sign-in with a pass, but it takes no place in booking (it is
    registered apart from the residents active in booking, and cannot hold). Like those,
    it lives in Redis, so "finish" ends it at once."""
    resident = await _identify(ctx, event_id, voucher, birth_date, client)
    if resident is None:
        raise errors.NotFound()
    now = time.time()
    session = Session(uuid.uuid4().hex, event_id, resident, admitted=False, started_s=int(now))
    ttl_s = ctx.settings.session_ttl_s
    await ctx.redis.open_lookup(event_id, session.session_id, int(now * 1000), ttl_s * 1000)
    token = _token(tokens, session)
    _trust(ctx, token, session, ttl_s)
    return Opened(token, session, ttl_s)


async def add_member(
    ctx: Ctx,
    tokens: Tokens,
    session: Session,
    voucher: str,
    birth_date: date,
    client: str,
) -> tuple[str, Session]:
    """Add a household member the resident books for: identity checked and throttled as a
    sign-in; at most ``MAX_MEMBERS``. Returns the session's new token (same session)."""
    if voucher == session.resident.voucher or voucher in session.members:
        return _token(tokens, session), session
    if len(session.members) >= MAX_MEMBERS:
        raise errors.HouseholdFull()
    resident = await _identify(ctx, session.event_id, voucher, birth_date, client)
    if resident is None:
        raise errors.SessionExpired()
    grown = dataclasses.replace(session, members=(*session.members, voucher))
    token = _token(tokens, grown)
    _trust(ctx, token, grown, SESSION_RECHECK_S)
    return token, grown


@dataclass(frozen=True, slots=True)
class LivenessCheck:
    """A session whose signature checked out but whose liveness Redis must still confirm;
    hold and confirm send it along with their own first Redis command."""

    token: str
    session: Session

    @property
    def key(self) -> tuple[str, str]:
        """(event id, session id): where Redis keeps the session's expiry (among the
        admitted ones, or the lookups when the session is not admitted)."""
        return self.session.event_id, self.session.session_id


def peek_session(ctx: Ctx, tokens: Tokens, token: str) -> tuple[Session, LivenessCheck | None]:
    """The session a token names, and the liveness check still owed (None: known live)."""
    session = ctx.verified_tokens.get(token)
    if session is None:
        try:
            claims = tokens.load_session(token, ctx.settings.session_ttl_s)
        except TokenError:
            raise errors.SessionExpired() from None
        session = Session(
            claims.session_id,
            claims.event_id,
            Resident(claims.municipality_code, claims.voucher),
            admitted=claims.admitted,
            members=claims.members,
            started_s=claims.started_s,
        )
    cached = ctx.live_sessions.get(session.session_id)
    if cached is not None and cached > time.monotonic():
        return session, None
    return session, LivenessCheck(token, session)


def settle(ctx: Ctx, check: LivenessCheck, expiry_ms: int | None) -> None:
    """Apply Redis's answer on a session's expiry: lapsed or ended sessions grant nothing."""
    session = check.session
    left_s = -1.0 if expiry_ms is None else expiry_ms / 1000 - time.time()
    if left_s <= 0:
        ctx.live_sessions.pop(session.session_id, None)
        ctx.verified_tokens.pop(check.token, None)
        raise errors.SessionExpired()
    _trust(ctx, check.token, session, left_s)


def _trust(ctx: Ctx, token: str, session: Session, left_s: float) -> None:
    """Remember a live session and its authentic token for this process."""
    # Trust the answer briefly (never past the session's end): one Redis read per
    # session per SESSION_RECHECK_S instead of one per request. Ending a session here
    # takes effect at once; ended elsewhere, within SESSION_RECHECK_S.
    if len(ctx.live_sessions) > 100_000:
        ctx.live_sessions.clear()
        ctx.verified_tokens.clear()
    ctx.live_sessions[session.session_id] = time.monotonic() + min(SESSION_RECHECK_S, left_s)
    # A string equal to one whose signature checked out is as authentic: skip the HMAC
    # next time. Its age needs no check of its own: the session it names ends with it.
    ctx.verified_tokens[token] = session


async def check_live(ctx: Ctx, check: LivenessCheck | None) -> None:
    """Settle an owed liveness check on its own round trip."""
    if check is not None:
        lookup = not check.session.admitted
        settle(ctx, check, await ctx.redis.session_expiry_ms(*check.key, lookup=lookup))


async def load_session(ctx: Ctx, tokens: Tokens, token: str) -> Session:
    """The live session a token names; ended or lapsed sessions grant nothing."""
    session, check = peek_session(ctx, tokens, token)
    await check_live(ctx, check)
    return session


async def end_session(ctx: Ctx, session: Session) -> None:
    """The session grants nothing from now on, here at once, elsewhere within
    SESSION_RECHECK_S."""
    ctx.live_sessions.pop(session.session_id, None)
    await ctx.redis.end_session(session.event_id, session.session_id, lookup=not session.admitted)


def require_admitted(session: Session) -> None:
    """Holding and booking take a place in booking: only a session that came through the
    line (with a pass) may; a "my bookings" session may see and cancel."""
    if not session.admitted:
        raise errors.NotAdmitted()


async def verify_resident(
    ctx: Ctx, municipality: str, voucher: str, birth_date: date, event_id: str
) -> tuple[Resident, list[pg.DoseBooking]]:
    """Operators identify a caller the same way the web does (registry, same refusal,
    the same count of failures per voucher: a phone is no way round the limit on guessing
    birth dates); with the caller's active doses, which the same read brings along."""
    resident = Resident(municipality, voucher)
    s = ctx.settings
    window_ms = s.throttle_voucher_window_s * 1000
    failures = await ctx.redis.voucher_failures(resident, window_ms, commit=False)
    if failures.count >= s.throttle_voucher_limit:
        raise errors.Throttled(failures.ttl_ms // 1000 + 1)
    async with pg.acquire(ctx.pool) as conn:
        event = await pg.fetch_event(conn, event_id)
        if event is None or event["municipality_code"] != municipality:
            raise errors.NotFound()
        doses = await pg.identify(
            conn, municipality, voucher, birth_date, event["eligibility_group"]
        )
    if doses is None:
        await ctx.redis.voucher_failures(resident, window_ms, commit=True)
        raise errors.IdentityRefused()
    return resident, doses
