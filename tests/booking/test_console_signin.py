"""Staff console sign-in over HTTP: the cookie's attributes, CSRF on every form, sign-out
that ends the session at once, the idle timeout, and no open redirect."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from http.cookies import SimpleCookie

import asyncpg
import httpx

from booking.console.common import COOKIE, SIGNIN_COOKIE
from booking.settings import BookingSettings
from machiai.config import Mode
from tests.booking.client import running
from tests.booking.factory import PASSWORD, World, make_staff

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str | bool]:
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar:
            morsel = jar[name]
            return {k: morsel[k] for k in ("httponly", "samesite", "path", "secure")}
    raise AssertionError(f"no Set-Cookie for {name}")


async def sign_in(
    client: httpx.AsyncClient, login: str, password: str = PASSWORD
) -> httpx.Response:
    form = await client.get("/staff/signin")
    assert form.status_code == 200
    return await client.post(
        "/staff/signin",
        data={"csrf": csrf_of(form.text), "login": login, "password": password, "next": "/staff"},
    )


async def test_sign_in_use_and_sign_out(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, login = await make_staff(conn, world.municipality, "operator")
    async with running(settings) as (_, client):
        # Not signed in: the sign-in page, coming back here afterwards.
        away = await client.get("/staff")
        assert away.status_code == 303
        assert away.headers["location"] == "/staff/signin?next=%2Fstaff&lang=ja"

        form = await client.get("/staff/signin")
        assert form.status_code == 200 and 'lang="ja"' in form.text and "職員ログイン" in form.text
        assert cookie_attributes(form, SIGNIN_COOKIE) == {
            "httponly": True,
            "samesite": "strict",
            "path": "/staff",
            "secure": "",
        }
        # A sign-in form without its secret (posted from elsewhere) does nothing.
        forged = await client.post(
            "/staff/signin", data={"csrf": "made-up", "login": login, "password": PASSWORD}
        )
        assert forged.status_code == 403 and COOKIE not in client.cookies
        wrong = await sign_in(client, login, "not the password")
        assert wrong.status_code == 401 and "パスワードが正しくありません" in wrong.text
        empty = await client.post(
            "/staff/signin", data={"csrf": csrf_of(wrong.text), "login": "", "password": ""}
        )
        assert empty.status_code == 422 and 'href="#login"' in empty.text

        done = await sign_in(client, login)
        assert done.status_code == 303 and done.headers["location"] == "/staff?lang=ja"
        assert cookie_attributes(done, COOKIE) == {
            "httponly": True,
            "samesite": "strict",
            "path": "/staff",
            "secure": "",
        }
        stolen = client.cookies[COOKIE]
        home = await client.get("/staff")
        assert home.status_code == 200 and login in home.text and "コールセンター" in home.text
        assert home.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in home.headers["content-security-policy"]

        # Signing out needs the session's secret too: a forged form leaves the session.
        forged_out = await client.post("/staff/signout", data={"csrf": "made-up"})
        assert forged_out.status_code == 403
        assert (await client.get("/staff")).status_code == 200
        out = await client.post("/staff/signout", data={"csrf": csrf_of(home.text)})
        assert out.status_code == 303 and "signed_out=1" in out.headers["location"]
        assert (await client.get("/staff")).status_code == 303
        # The session ended on the server: the same cookie, replayed, grants nothing.
        client.cookies.set(COOKIE, stolen, path="/staff")
        assert (await client.get("/staff")).status_code == 303
    actions = await db.fetch(
        "SELECT action FROM audit_log WHERE action LIKE 'booking.staff.%' ORDER BY id"
    )
    assert [r["action"] for r in actions] == [
        "booking.staff.logged_in",
        "booking.staff.signed_out",
    ]


async def test_an_idle_console_signs_out_and_a_busy_one_does_not(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, login = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
    quick = dataclasses.replace(settings, staff_idle_s=2)
    async with running(quick) as (_, client):
        assert (await sign_in(client, login)).status_code == 303
        # Used every second for longer than the idle time: still signed in.
        for _ in range(4):
            await asyncio.sleep(1)
            assert (await client.get("/staff")).status_code == 200
        await asyncio.sleep(3)
        assert (await client.get("/staff")).status_code == 303


async def test_only_console_paths_come_back_after_sign_in(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, login = await make_staff(conn, world.municipality, "admin")
    async with running(settings) as (_, client):
        for elsewhere in ("https://evil.example/", "//evil.example/staff", "/book/slots"):
            client.cookies.clear()
            form = await client.get("/staff/signin", params={"next": elsewhere})
            assert 'name="next" value="/staff"' in form.text
            done = await client.post(
                "/staff/signin",
                data={
                    "csrf": csrf_of(form.text),
                    "login": login,
                    "password": PASSWORD,
                    "next": elsewhere,
                },
            )
            assert done.headers["location"] == "/staff?lang=ja"


async def test_cookies_are_secure_outside_development(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, login = await make_staff(conn, world.municipality, "admin")
    production = dataclasses.replace(
        settings, core=dataclasses.replace(settings.core, mode=Mode.PRODUCTION)
    )
    async with running(production) as (_, client):
        form = await client.get("/staff/signin")
        assert cookie_attributes(form, SIGNIN_COOKIE)["secure"] is True
        # The test client speaks plain HTTP, so it keeps no Secure cookie: send it by hand.
        client.cookies.set(SIGNIN_COOKIE, csrf_of(form.text), path="/staff")
        done = await client.post(
            "/staff/signin",
            data={"csrf": csrf_of(form.text), "login": login, "password": PASSWORD},
        )
        assert done.status_code == 303
        assert cookie_attributes(done, COOKIE)["secure"] is True


async def test_deactivating_a_staff_member_ends_their_console_within_seconds(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        staff_id, login = await make_staff(conn, world.municipality, "operator")
    async with running(settings) as (_, client):
        assert (await sign_in(client, login)).status_code == 303
        assert (await client.get("/staff")).status_code == 200
        await db.execute(
            "UPDATE staff SET active = false, generation = generation + 1 WHERE id = $1::uuid",
            staff_id,
        )
        for _ in range(50):  # the promise is a few seconds; give it five
            if (await client.get("/staff")).status_code == 303:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the console of a deactivated staff member still works")
        # Ended for good: the session is gone from Redis, not only refused this time.
        await db.execute("UPDATE staff SET active = true WHERE id = $1::uuid", staff_id)
        await asyncio.sleep(2.5)
        assert (await client.get("/staff")).status_code == 303
