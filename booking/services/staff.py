"""Staff sign-in: login + password gives a signed staff token (role, tenant, clinic)."""

from __future__ import annotations

import asyncio

from booking import errors
from booking.services.context import Ctx
from booking.store import pg, pg_staff
from machiai.passwords import hash_password, verify_password
from machiai.tokens import StaffClaims, Tokens

# Checked when the login is unknown, so both failures cost the same time.
_DUMMY_HASH = hash_password("machiai-no-such-user")


async def staff_login(
    ctx: Ctx, tokens: Tokens, login: str, password: str, client: str
) -> tuple[str, StaffClaims]:
    """A staff token for valid, active credentials; throttled per client address, and an
    unknown login costs the same time as a wrong password (no oracle for logins)."""
    s = ctx.settings
    hits = await ctx.redis.client_attempts("staff:" + client, s.throttle_client_window_s * 1000)
    if hits.count > s.throttle_client_limit:
        raise errors.Throttled(hits.ttl_ms // 1000 + 1)
    async with pg.acquire(ctx.pool) as conn:
        found = await pg_staff.active_staff(conn, login)
    stored = _DUMMY_HASH if found is None else found.password_hash
    valid = await asyncio.to_thread(verify_password, password, stored)
    if found is None or not valid:
        raise errors.LoginRefused()
    claims = StaffClaims(found.staff_id, found.municipality, found.role, found.clinic_id)
    async with pg.acquire(ctx.pool) as conn:
        await pg.audit(
            conn,
            municipality=claims.municipality_code,
            actor_kind="staff",
            actor_id=claims.staff_id,
            action="booking.staff.logged_in",
            target=claims.staff_id,
        )
    return tokens.dump_staff(claims), claims
