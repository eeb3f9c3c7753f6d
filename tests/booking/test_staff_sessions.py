"""Staff sessions end everywhere: after sign-out, deactivation, a role change or a new
password, every token signed before is refused (401) by booking and by the waitroom's admin
API within a few seconds; a token without a generation grants nothing; the check costs one
read per staff member per CHECK_TTL_S per process; sign-in replaces an old hash."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from booking.settings import BookingSettings
from booking.store.pg_staff import replace_hash
from machiai import accounts
from machiai.passwords import verify_password
from machiai.pg import Conn
from machiai.staff_generation import StaffGenerations
from machiai.tokens import Tokens
from tests.booking.client import code, running
from tests.booking.factory import PASSWORD, World, make_staff, voucher
from tests.machiai.test_passwords import scrypt_hash
from waitroom.app import create_app as create_waitroom
from waitroom.settings import WaitroomSettings

POLL_S = 5.0  # how long a revoked token may take to be refused, at most, in this test


@dataclass
class Services:
    booking: httpx.AsyncClient
    waitroom: httpx.AsyncClient
    booking_checks: Callable[[], StaffGenerations]


@asynccontextmanager
async def both(settings: BookingSettings, env_vars: dict[str, str]) -> AsyncIterator[Services]:
    """Booking and the waitroom, each with its own memory of staff standing, on one database."""
    waitroom_app = create_waitroom(WaitroomSettings.from_env(env_vars), refresher=False)
    async with (
        running(settings) as (booking_app, booking),
        waitroom_app.router.lifespan_context(waitroom_app),
    ):
        transport = httpx.ASGITransport(app=waitroom_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://waitroom") as waitroom:

            def checks() -> StaffGenerations:
                found: StaffGenerations = booking_app.state.staff_generations
                return found

            yield Services(booking, waitroom, checks)


async def sign_in(
    client: httpx.AsyncClient, login: str, password: str = PASSWORD
) -> dict[str, str]:
    r = await client.post("/api/staff/login", json={"login": login, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def statuses(s: Services, auth: dict[str, str], world: World) -> tuple[int, int]:
    """What booking's operator lane and the waitroom's admin API answer this token."""
    booked = await s.booking.get(f"/api/operator/residents/{voucher(1)}/bookings", headers=auth)
    stats = await s.waitroom.get(f"/admin/events/{world.event_id}/stats", headers=auth)
    return booked.status_code, stats.status_code


async def refused_soon(s: Services, auth: dict[str, str], world: World) -> tuple[int, int]:
    """The statuses once both services refuse the token, or as they are after POLL_S."""
    deadline = time.monotonic() + POLL_S
    while True:
        seen = await statuses(s, auth, world)
        if seen == (401, 401) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.1)


async def test_sign_out_ends_every_session_of_that_person_and_only_theirs(
    settings: BookingSettings, env_vars: dict[str, str], db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        staff_id, login = await make_staff(conn, world.municipality, "admin")
        _, colleague = await make_staff(conn, world.municipality, "admin")
    async with both(settings, env_vars) as s:
        phone, desk = await sign_in(s.booking, login), await sign_in(s.booking, login)
        other = await sign_in(s.booking, colleague)
        for auth in (phone, desk, other):
            assert await statuses(s, auth, world) == (200, 200)
        out = await s.booking.post("/api/staff/logout", headers=phone)
        assert out.status_code == 200 and out.json() == {"logged_out": True}
        assert await refused_soon(s, phone, world) == (401, 401)
        assert await refused_soon(s, desk, world) == (401, 401)  # the other device too
        again = await s.booking.post("/api/staff/logout", headers=phone)
        assert again.status_code == 401 and code(again) == "unauthorized"
        assert await statuses(s, other, world) == (200, 200)  # a colleague stays signed in
        fresh = await sign_in(s.booking, login)  # signing in again works
        assert await statuses(s, fresh, world) == (200, 200)
    rows = await db.fetch(
        "SELECT actor_kind, actor_id, action, target FROM audit_log "
        "WHERE action LIKE 'booking.staff.%' AND actor_id = $1 ORDER BY id",
        staff_id,
    )
    assert [r["action"] for r in rows] == [
        "booking.staff.logged_in",
        "booking.staff.logged_in",
        "booking.staff.logged_out",
        "booking.staff.logged_in",
    ]
    assert {(r["actor_kind"], r["target"]) for r in rows} == {("staff", staff_id)}


Change = Callable[[Conn, str], Awaitable[object]]
NEW_PASSWORD = "a brand new password"


async def deactivate(conn: Conn, login: str) -> object:
    return await accounts.deactivate_staff(conn, login)


async def demote(conn: Conn, login: str) -> object:
    return await accounts.change_role(conn, login, "operator", None)


async def new_password(conn: Conn, login: str) -> object:
    return await accounts.reset_password(conn, login, NEW_PASSWORD)


@pytest.mark.parametrize("change", [deactivate, demote, new_password])
async def test_deactivation_a_role_change_or_a_new_password_end_every_session(
    settings: BookingSettings,
    env_vars: dict[str, str],
    db: asyncpg.Pool,
    world: World,
    change: Change,
) -> None:
    async with db.acquire() as conn:
        _, login = await make_staff(conn, world.municipality, "admin")
    async with both(settings, env_vars) as s:
        auth = await sign_in(s.booking, login)
        assert await statuses(s, auth, world) == (200, 200)
        async with db.acquire() as conn:
            await change(conn, login)
        assert await refused_soon(s, auth, world) == (401, 401)
        r = await s.booking.post("/api/staff/login", json={"login": login, "password": PASSWORD})
        if change is demote:  # still signs in, as what they are now
            assert r.status_code == 200 and r.json()["role"] == "operator"
            demoted = {"Authorization": f"Bearer {r.json()['token']}"}
            assert await statuses(s, demoted, world) == (200, 403)
        else:
            assert r.status_code == 401 and code(r) == "login_refused"
        if change is new_password:
            assert await statuses(s, await sign_in(s.booking, login, NEW_PASSWORD), world) == (
                200,
                200,
            )


async def test_a_token_without_a_generation_grants_nothing(
    settings: BookingSettings, env_vars: dict[str, str], db: asyncpg.Pool, world: World
) -> None:
    """A token as signed before generations existed: valid signature, four fields."""
    async with db.acquire() as conn:
        staff_id, _ = await make_staff(conn, world.municipality, "admin")
    old = Tokens(settings.core.secret_keys).staff.dumps([staff_id, world.municipality, "admin", ""])
    async with both(settings, env_vars) as s:
        assert await statuses(s, {"Authorization": f"Bearer {old}"}, world) == (401, 401)


async def test_the_check_reads_a_staff_row_once_for_a_burst_of_requests(
    settings: BookingSettings, env_vars: dict[str, str], db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, login = await make_staff(conn, world.municipality, "operator")
    async with both(settings, env_vars) as s:
        auth = await sign_in(s.booking, login)
        answers = await asyncio.gather(
            *(
                s.booking.get(f"/api/operator/residents/{voucher(1)}/bookings", headers=auth)
                for _ in range(20)
            )
        )
        assert [a.status_code for a in answers] == [200] * 20
        assert s.booking_checks().reads == 1


async def test_sign_in_replaces_an_old_hash_unless_the_password_changed_meanwhile(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        staff_id, login = await make_staff(conn, world.municipality, "operator")
        await conn.execute(
            "UPDATE staff SET password_hash = $2 WHERE id = $1::uuid",
            staff_id,
            scrypt_hash(PASSWORD),
        )
    async with running(settings) as (_, client):
        await sign_in(client, login)
        stored = await db.fetchval("SELECT password_hash FROM staff WHERE login = $1", login)
        assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert verify_password(PASSWORD, stored)
        await sign_in(client, login)  # and the new hash signs in
    # A rehash computed from the old hash loses to a password set meanwhile.
    async with db.acquire() as conn:
        await accounts.reset_password(conn, login, NEW_PASSWORD)
        reset = await conn.fetchval("SELECT password_hash FROM staff WHERE login = $1", login)
        assert not await replace_hash(conn, staff_id, stored, scrypt_hash("stale"))
        assert await conn.fetchval("SELECT password_hash FROM staff WHERE login = $1", login) == (
            reset
        )
