"""Staff sign-in: login + password gives a signed staff token (role, tenant, clinic)."""

from __future__ import annotations

import asyncio

from booking import errors
from booking.services.context import Ctx
from booking.store import keys, pg
from machiai.passwords import hash_password, verify_password
from machiai.tokens import StaffClaims, Tokens

# Checked when the login is unknown, so both failures cost the same time.
_DUMMY_HASH = hash_password("machiai-no-such-user")


class LoginRefused(errors.AppError):
    code = "login_refused"
    status = 401
    message_ja = "ログイン ID またはパスワードが違います。"
    message_en = "Wrong login or password."


async def staff_login(
    ctx: Ctx, tokens: Tokens, login: str, password: str, client: str
) -> tuple[str, StaffClaims]:
    """A staff token for valid, active credentials; throttled per client address."""
    s = ctx.settings
    hits = await ctx.redis.hit_counter(
        keys.throttle_client(ctx.redis.prefix, "staff:" + client),
        s.throttle_client_window_s * 1000,
        s.throttle_client_limit,
        commit=True,
    )
    if hits.count > s.throttle_client_limit:
        raise errors.Throttled(hits.ttl_ms // 1000 + 1)
    async with pg.acquire(ctx.pool) as conn:
        row = await conn.fetchrow(
            "SELECT id::text, municipality_code, role::text, clinic_id::text, password_hash "
            "FROM staff WHERE login = $1 AND active",
            login,
        )
    stored = _DUMMY_HASH if row is None else str(row["password_hash"])
    valid = await asyncio.to_thread(verify_password, password, stored)
    if row is None or not valid:
        raise LoginRefused()
    claims = StaffClaims(row["id"], row["municipality_code"], row["role"], row["clinic_id"])
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
