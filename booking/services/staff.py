"""Staff sign-in: login + password gives a signed staff token (role, tenant, clinic,
generation); sign-out ends every token of that person (machiai/staff_generation.py)."""

from __future__ import annotations

import asyncio

from booking import errors
from booking.services.context import Ctx
from booking.store import pg, pg_staff
from machiai.passwords import hash_password, needs_rehash, verify_password
from machiai.staff_generation import bump_generation
from machiai.tokens import StaffClaims, Tokens

# Checked when the login is unknown, so both failures cost the same time.
_DUMMY_HASH = hash_password("machiai-no-such-user")


async def staff_login(
    ctx: Ctx, tokens: Tokens, login: str, password: str, client: str
) -> tuple[str, StaffClaims]:
    """A staff token for valid, active credentials; throttled per client address, and an
    unknown login costs the same time as a wrong password (no oracle for logins). A hash
    of an older scheme or weaker parameters is replaced by a fresh argon2id one."""
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
    fresh = None
    if needs_rehash(stored):
        fresh = await asyncio.to_thread(hash_password, password)
    claims = StaffClaims(
        found.staff_id, found.municipality, found.role, found.clinic_id, found.generation
    )
    async with pg.acquire(ctx.pool) as conn:
        if fresh is not None:
            await pg_staff.replace_hash(conn, found.staff_id, stored, fresh)
        await pg.audit(
            conn,
            municipality=claims.municipality_code,
            actor_kind="staff",
            actor_id=claims.staff_id,
            action="booking.staff.logged_in",
            target=claims.staff_id,
        )
    return tokens.dump_staff(claims), claims


async def staff_logout(ctx: Ctx, claims: StaffClaims) -> None:
    """Signs the person out everywhere: their generation moves on, so every token of theirs
    (this one and those of other devices) stops working; audited in the same transaction."""
    async with pg.acquire(ctx.pool) as conn, conn.transaction():
        await bump_generation(conn, claims.staff_id)
        await pg.audit(
            conn,
            municipality=claims.municipality_code,
            actor_kind="staff",
            actor_id=claims.staff_id,
            action="booking.staff.logged_out",
            target=claims.staff_id,
        )
