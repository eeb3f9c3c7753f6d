"""Staff consoles' sign-in: a browser session kept in Redis, named by an opaque cookie.

The session holds the same signed staff token the JSON API hands out, checked the same way
(its lifetime; the staff row's standing: deactivation, a role or password change, a logout
through the API), so whatever revokes a token ends the console too. A console also ends
when its staff member signs out (this browser only) or leaves it idle for
``BOOKING_STAFF_IDLE_S``. Each session has its own CSRF secret, which every form of the
console carries (the synchronizer-token pattern): a form posted from another site cannot
know it.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

from booking.services.context import Ctx
from booking.services.staff import staff_login
from booking.store import pg, redis_console
from machiai.staff_generation import StaffGenerations
from machiai.tokens import StaffClaims, TokenError, Tokens

# The cookie's value: 43 URL-safe characters (256 random bits); anything longer is not ours.
MAX_SESSION_ID = 64


@dataclass(frozen=True, slots=True)
class Console:
    """A signed-in staff member's browser."""

    session_id: str
    claims: StaffClaims
    login: str
    csrf: str
    # The staff token the console acts with (e.g. on the waitroom's event API); never shown.
    token: str = field(repr=False, default="")

    def csrf_ok(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf.encode())


async def sign_in(ctx: Ctx, tokens: Tokens, login: str, password: str, client: str) -> Console:
    """A new console session for valid credentials (throttled and audited as the API's
    sign-in; refusals are the same)."""
    token, claims = await staff_login(ctx, tokens, login, password, client)
    console = Console(secrets.token_urlsafe(32), claims, login, secrets.token_urlsafe(32), token)
    record = {"token": token, "csrf": console.csrf, "login": login}
    await redis_console.open_console(
        ctx.redis, console.session_id, record, ctx.settings.staff_idle_s * 1000
    )
    return console


async def resume(
    ctx: Ctx, tokens: Tokens, standing: StaffGenerations, session_id: str
) -> Console | None:
    """The console this cookie names, its idle clock started again; None when it ended,
    idled out, or its staff token no longer holds (then it is ended here too)."""
    if not session_id or len(session_id) > MAX_SESSION_ID:
        return None
    record = await redis_console.touch_console(
        ctx.redis, session_id, ctx.settings.staff_idle_s * 1000
    )
    if record is None:
        return None
    claims = await _claims(ctx, tokens, str(record.get("token", "")))
    # Promise (machiai/staff_generation.py): deactivating, a role change or a new password
    # ends this console too, within its check interval, like every token of the person.
    if claims is None or not await standing.admits(claims):
        await redis_console.end_console(ctx.redis, session_id)
        return None
    return Console(
        session_id, claims, str(record["login"]), str(record["csrf"]), str(record["token"])
    )


async def _claims(ctx: Ctx, tokens: Tokens, token: str) -> StaffClaims | None:
    try:
        return tokens.load_staff(token, ctx.settings.core.staff_token_ttl_s)
    except TokenError:
        return None


async def sign_out(ctx: Ctx, console: Console) -> None:
    """Ends this browser's session at once (other browsers of the same person stay)."""
    await redis_console.end_console(ctx.redis, console.session_id)
    async with pg.acquire(ctx.pool) as conn:
        await pg.audit(
            conn,
            municipality=console.claims.municipality_code,
            actor_kind="staff",
            actor_id=console.claims.staff_id,
            action="booking.staff.signed_out",
            target=console.claims.staff_id,
        )
