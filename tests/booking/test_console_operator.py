"""The call-centre console over HTTP: find a caller (right and wrong identity), search,
hold → review → confirm (once, however often the form is sent), change, cancel with a
confirmation step, already_booked in words with the way to change, the household, the
roles, CSRF, and no birth date in any URL. And 10 consoles after the last 3 places."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from starlette.applications import Starlette

from booking.domain import Resident
from booking.services.context import Ctx
from booking.settings import BookingSettings
from booking.store.redis_store import RedisStore
from tests.booking.client import running
from tests.booking.factory import World, make_slot, make_staff, voucher
from tests.booking.helpers import book, operator, pg_active_bookings, pg_slot
from tests.booking.test_console_signin import csrf_of, sign_in

URLS = re.compile(r'(?:href|action|src)="([^"]*)"')
GET_FORMS = re.compile(r'<form method="get"[^>]*>(.*?)</form>', re.S)
VALUES = re.compile(r'value="([^"]*)"')
HOLD_BUTTONS = re.compile(r'name="slot_id" value="([0-9a-f-]{36})"')
# Ways the caller's birth date (1950-04-01, 昭和25) could be written into a URL.
BIRTH_IN_URL = re.compile(
    r"1950-0?4-0?1|19500401|year=|month=|born|birth|昭和|%E6%98%AD|S25", re.IGNORECASE
)


class UrlWatch:
    """Every URL a console page links, posts a form to, or redirects to; a GET form's
    fields too (they become the next URL)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, response: httpx.Response) -> None:
        self.seen.append(str(response.request.url))
        if "location" in response.headers:
            self.seen.append(response.headers["location"])
        if response.headers.get("content-type", "").startswith("text/html"):
            text = (await response.aread()).decode()
            self.seen += [html.unescape(u) for u in URLS.findall(text)]
            for fields in GET_FORMS.findall(text):
                self.seen += [html.unescape(v) for v in VALUES.findall(fields)]

    def leaks(self) -> list[str]:
        return [u for u in self.seen if BIRTH_IN_URL.search(u)]


@asynccontextmanager
async def consoles(
    settings: BookingSettings, n: int = 1
) -> AsyncIterator[tuple[Starlette, list[httpx.AsyncClient], UrlWatch]]:
    """``n`` browsers (own cookies) on one app, every response watched."""
    watch = UrlWatch()
    async with running(settings) as (app, _):
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=("192.0.2.10", 1234)),
                base_url="http://booking",
                event_hooks={"response": [watch]},
            )
            for _ in range(n)
        ]
        try:
            yield app, clients, watch
        finally:
            for c in clients:
                await c.aclose()


def words(page: str) -> str:
    """What a page says (its text, not its markup and links)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


async def find(
    client: httpx.AsyncClient,
    voucher_number: str,
    year: str = "1950",
    month: str = "4",
    day: str = "1",
) -> httpx.Response:
    form = await client.get("/staff/operator")
    assert form.status_code == 200, form.text
    event = re.search(r'<option value="([^"]+)" selected>', form.text)
    assert event, form.text
    return await client.post(
        "/staff/operator",
        data={
            "csrf": csrf_of(form.text),
            "lang": "ja",
            "voucher": voucher_number,
            "year": year,
            "month": month,
            "day": day,
            "event": event.group(1),
        },
    )


async def open_call(client: httpx.AsyncClient, voucher_number: str) -> str:
    """The caller's page URL for a caller the registry knows."""
    found = await find(client, voucher_number)
    assert found.status_code == 303, found.text
    assert found.headers["location"].startswith("/staff/operator/call?c=")
    return found.headers["location"]


def form_fields(page: str, action: str, button: str | None = None) -> dict[str, str]:
    """The hidden fields of the form posting to ``action`` (the first one; or the one
    holding ``button``)."""
    for match in re.finditer(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', page, re.S):
        if match.group(1) == action and (button is None or button in match.group(2)):
            return {
                name: html.unescape(value)
                for name, value in re.findall(
                    r'<input type="hidden" name="([^"]+)" value="([^"]*)"', match.group(2)
                )
            }
    raise AssertionError(f"no form to {action} in the page")


async def hold(
    client: httpx.AsyncClient, call_url: str, slot_id: str, **extra: str
) -> httpx.Response:
    page = await client.get(call_url)
    assert page.status_code == 200, page.text
    return await client.post(
        "/staff/operator/hold",
        data={
            **form_fields(page.text, "/staff/operator/hold", slot_id),
            "slot_id": slot_id,
            **extra,
        },
    )


async def confirm_form(client: httpx.AsyncClient, review_url: str) -> dict[str, str]:
    review = await client.get(review_url)
    assert review.status_code == 200, review.text
    return form_fields(review.text, "/staff/operator/confirm")


async def book_through_console(client: httpx.AsyncClient, call_url: str, slot_id: str) -> str:
    """Hold, review, confirm; the confirmation page's URL."""
    held = await hold(client, call_url, slot_id)
    assert held.status_code == 303 and "/staff/operator/review?" in held.headers["location"]
    done = await client.post(
        "/staff/operator/confirm", data=await confirm_form(client, held.headers["location"])
    )
    assert done.status_code == 303 and "/staff/operator/done?" in done.headers["location"]
    return done.headers["location"]


async def bookings_of(db: asyncpg.Pool, voucher_number: str) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        "SELECT id::text, slot_id::text, status::text FROM bookings WHERE voucher_number = $1 "
        "ORDER BY created_at",
        voucher_number,
    )
    return [(r["id"], r["slot_id"], r["status"]) for r in rows]


async def test_find_search_hold_and_confirm_once(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, login = await make_staff(conn, world.municipality, "operator")
        soon = await make_slot(conn, world.clinic_id, world.event_id, 4, days=2)
        later = await make_slot(conn, world.clinic_id, world.event_id, 4, days=5)
        await make_slot(conn, world.other_clinic_id, world.other_event_id, 4, days=2)
    async with consoles(settings) as (_, [client], watch):
        assert (await sign_in(client, login)).status_code == 303
        home = await client.get("/staff")
        assert 'href="/staff/operator?lang=ja"' in home.text and "電話受付" in home.text
        form = await client.get("/staff/operator")
        # The municipality's events only, the one open now chosen; the voucher field first.
        assert f'<option value="{world.event_id}" selected>' in form.text
        assert world.other_event_id not in form.text
        assert 'id="voucher"' in form.text and "autofocus" in form.text

        # Wrong birth date, unknown voucher: one answer, in words, never which part.
        refusals = [
            await find(client, voucher(11), year="1951"),
            await find(client, voucher(49_999)),
        ]
        for refused in refusals:
            assert refused.status_code == 403
            assert "接種券番号と生年月日が台帳と一致しません" in refused.text
            assert 'href="#voucher"' in refused.text
            assert "identity_refused" not in words(refused.text)
        assert refusals[0].text.count("台帳と一致しません") == refusals[1].text.count(
            "台帳と一致しません"
        )
        # What residents type: full-width digits with hyphens, the year in its era.
        found = await find(client, "１０００-０００-０１１", year="昭和25", month="０４", day="1")
        assert found.status_code == 303
        call_url = found.headers["location"]
        page = await client.get(call_url)
        assert page.status_code == 200
        assert "お電話の方" in page.text and voucher(11) in page.text
        assert "1950年4月1日（昭和25年）" in page.text and "まだ予約はありません" in page.text
        # Operators see every free time of the event (the phone's share too), soonest first.
        assert HOLD_BUTTONS.findall(page.text) == [soon, later]
        assert "4 人" in page.text
        viewed = await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'booking.resident.viewed' "
            "AND target = $1",
            voucher(11),
        )
        assert viewed >= 1
        # Narrowed to a date: that day's times only.
        later_day = (datetime.now(UTC) + timedelta(days=5, hours=9)).date().isoformat()
        narrowed = await client.get(call_url + f"&date={later_day}")
        assert HOLD_BUTTONS.findall(narrowed.text) == [later]

        held = await hold(client, call_url, soon)
        assert held.status_code == 303
        review_url = held.headers["location"]
        review = await client.get(review_url)
        assert "仮押さえしています" in review.text and "予約を確定する" in review.text
        confirm = form_fields(review.text, "/staff/operator/confirm")
        # The same form sent twice (a double click): one booking, the same answer.
        first, second = [await client.post("/staff/operator/confirm", data=confirm) for _ in "12"]
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        assert [b[1:] for b in await bookings_of(db, voucher(11))] == [(soon, "confirmed")]
        assert await pg_slot(db, soon) == (4, 1)
        done = await client.get(first.headers["location"])
        code = await db.fetchval(
            "SELECT confirmation_code FROM bookings WHERE voucher_number = $1", voucher(11)
        )
        assert "予約を確定しました" in done.text and f"{code[:4]} {code[4:]}" in done.text
        # The caller's page lists it now, with its change and cancel.
        after = await client.get(call_url)
        assert code in after.text and "日時を変更する" in after.text
        assert "/staff/operator/cancel?" in after.text
        # The English switch keeps the operator on the caller's page.
        english = await client.get(call_url.replace("lang=ja", "lang=en"))
        assert english.status_code == 200 and 'lang="en"' in english.text
        assert "Caller" in english.text and "1 Apr 1950" in english.text
    assert watch.leaks() == []


async def test_change_and_cancel_with_a_confirmation_step(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, login = await make_staff(conn, world.municipality, "operator")
        first_slot = await make_slot(conn, world.clinic_id, world.event_id, 4, days=2)
        second_slot = await make_slot(conn, world.clinic_id, world.event_id, 4, days=3)
    async with consoles(settings) as (_, [client], watch):
        assert (await sign_in(client, login)).status_code == 303
        call_url = await open_call(client, voucher(21))
        await book_through_console(client, call_url, first_slot)
        [(booking_id, _, _)] = await bookings_of(db, voucher(21))

        # Change: the caller's page in change mode, a hold that replaces the booking.
        changing = await client.get(call_url + f"&replaces={booking_id}")
        assert "の予約（確認コード" in changing.text and "変更をやめる" in changing.text
        held = await hold(client, call_url + f"&replaces={booking_id}", second_slot)
        assert held.status_code == 303 and f"replaces={booking_id}" in held.headers["location"]
        review = await client.get(held.headers["location"])
        assert "を、下の日時に変更します" in review.text
        assert "この日時への変更を確定する" in review.text
        changed = await client.post(
            "/staff/operator/confirm", data=form_fields(review.text, "/staff/operator/confirm")
        )
        assert changed.status_code == 303 and "changed=1" in changed.headers["location"]
        assert "予約を変更しました" in (await client.get(changed.headers["location"])).text
        rows = await bookings_of(db, voucher(21))
        assert [(s, st) for _, s, st in rows] == [
            (first_slot, "cancelled"),
            (second_slot, "confirmed"),
        ]
        assert await pg_slot(db, first_slot) == (4, 0)
        new_id = rows[1][0]

        # Cancel: a confirmation step first; nothing is cancelled by looking at it.
        page = await client.get(call_url)
        cancel_link = re.search(r'href="(/staff/operator/cancel\?[^"]+)"', page.text)
        assert cancel_link
        asked = await client.get(html.unescape(cancel_link.group(1)))
        assert asked.status_code == 200 and "この予約をキャンセルしますか" in asked.text
        assert "いいえ、予約を残します" in asked.text
        assert (await bookings_of(db, voucher(21)))[1][2] == "confirmed"
        fields = form_fields(asked.text, "/staff/operator/cancel")
        # Without the console's CSRF secret (a form from elsewhere): 403, nothing changes.
        forged = await client.post(
            "/staff/operator/cancel", data={k: v for k, v in fields.items() if k != "csrf"}
        )
        assert forged.status_code == 403
        assert (await bookings_of(db, voucher(21)))[1][2] == "confirmed"
        yes = await client.post("/staff/operator/cancel", data=fields)
        assert yes.status_code == 303 and "notice=cancelled" in yes.headers["location"]
        assert (await bookings_of(db, voucher(21)))[1] == (new_id, second_slot, "cancelled")
        assert await pg_slot(db, second_slot) == (4, 0)
        told = await client.get(yes.headers["location"])
        assert "予約をキャンセルしました" in told.text
        # Sent again: nothing more happens, and the page says what is true.
        again = await client.post("/staff/operator/cancel", data=fields)
        assert again.status_code == 303
        # Release: a hold given back from the review page, nothing booked.
        held = await hold(client, call_url, first_slot)
        review = await client.get(held.headers["location"])
        released = await client.post(
            "/staff/operator/release", data=form_fields(review.text, "/staff/operator/release")
        )
        assert "notice=released" in released.headers["location"]
        assert "仮押さえを解除しました" in (await client.get(released.headers["location"])).text
        assert await pg_slot(db, first_slot) == (4, 0)
    assert watch.leaks() == []


async def test_already_booked_is_said_in_words_with_the_way_to_change(
    settings: BookingSettings, db: asyncpg.Pool, world: World, ctx: Ctx
) -> None:
    async with db.acquire() as conn:
        staff_id, login = await make_staff(conn, world.municipality, "operator")
        booked_slot = await make_slot(conn, world.clinic_id, world.event_id, 4, days=2)
        asked_slot = await make_slot(conn, world.clinic_id, world.event_id, 4, days=4)
    async with consoles(settings) as (_, [client], watch):
        assert (await sign_in(client, login)).status_code == 303
        call_url = await open_call(client, voucher(31))
        # The caller's page was open; meanwhile dose 1 was booked (the web, a colleague).
        page = await client.get(call_url)
        fields = form_fields(page.text, "/staff/operator/hold", asked_slot)
        booked = await book(
            ctx, operator(world.municipality, staff_id), Resident(world.municipality, voucher(31)),
            booked_slot,
        )  # fmt: skip
        booking_id = booked["booking"]["booking_id"]
        refused = await client.post("/staff/operator/hold", data={**fields, "slot_id": asked_slot})
        assert refused.status_code == 303
        told = await client.get(refused.headers["location"])
        assert told.status_code == 200
        assert "この回の接種をすでに予約しています" in told.text
        assert "その予約の日時を変更してください" in told.text
        assert "already_booked" not in words(told.text)
        assert re.search(rf'href="[^"]*replaces={booking_id}[^"]*"', told.text)
        assert await pg_slot(db, asked_slot) == (4, 0)
        # One click from the words: move that booking to the time that was asked for.
        move = form_fields(
            told.text, "/staff/operator/hold", "その予約を、いま選んだ日時に変更する"
        )
        assert move["replaces"] == booking_id and move["slot_id"] == asked_slot
        held = await client.post("/staff/operator/hold", data=move)
        review = await client.get(held.headers["location"])
        done = await client.post(
            "/staff/operator/confirm", data=form_fields(review.text, "/staff/operator/confirm")
        )
        assert "changed=1" in done.headers["location"]
        assert [(s, st) for _, s, st in await bookings_of(db, voucher(31))] == [
            (booked_slot, "cancelled"),
            (asked_slot, "confirmed"),
        ]
    assert watch.leaks() == []


async def test_a_household_member_is_looked_up_on_their_own_identity(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, login = await make_staff(conn, world.municipality, "operator")
        slot = await make_slot(conn, world.clinic_id, world.event_id, 4, days=2)
    async with consoles(settings) as (_, [client], watch):
        assert (await sign_in(client, login)).status_code == 303
        call_url = await open_call(client, voucher(41))
        page = await client.get(call_url)
        member_link = re.search(r'href="(/staff/operator/member\?[^"]+)"', page.text)
        assert member_link and "同じ世帯の別の方の予約をする" in page.text
        form = await client.get(html.unescape(member_link.group(1)))
        assert form.status_code == 200
        fields = form_fields(form.text, "/staff/operator/member")
        wrong = await client.post(
            "/staff/operator/member",
            data={**fields, "voucher": voucher(42), "year": "1960", "month": "4", "day": "1"},
        )
        assert wrong.status_code == 403 and "台帳と一致しません" in wrong.text
        added = await client.post(
            "/staff/operator/member",
            data={**fields, "voucher": voucher(42), "year": "昭和25", "month": "4", "day": "1"},
        )
        assert added.status_code == 303
        assert (
            "who=1" in added.headers["location"]
            and "notice=member_added" in added.headers["location"]
        )
        member_page = await client.get(added.headers["location"])
        assert "ご家族" in member_page.text and voucher(42) in member_page.text
        assert "ご家族を追加しました" in member_page.text
        await book_through_console(client, added.headers["location"], slot)
        assert [b[1:] for b in await bookings_of(db, voucher(42))] == [(slot, "confirmed")]
        assert await bookings_of(db, voucher(41)) == []
    assert watch.leaks() == []


async def test_roles_csrf_and_calls_of_other_consoles(
    settings: BookingSettings, db: asyncpg.Pool, world: World, store: RedisStore
) -> None:
    async with db.acquire() as conn:
        _, clerk = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
        _, login = await make_staff(conn, world.municipality, "operator")
        _, admin = await make_staff(conn, world.municipality, "admin")
        slot = await make_slot(conn, world.clinic_id, world.event_id, 4, days=2)
    async with consoles(settings, 3) as (_, [clinic, desk, other], watch):
        assert (await sign_in(clinic, clerk)).status_code == 303
        assert (await clinic.get("/staff/operator")).status_code == 403
        home = await clinic.get("/staff")
        assert "/staff/operator" not in home.text
        refused = await clinic.post(
            "/staff/operator", data={"csrf": csrf_of(home.text), "voucher": voucher(1)}
        )
        assert refused.status_code == 403

        assert (await sign_in(desk, login)).status_code == 303
        call_url = await open_call(desk, voucher(5))
        page = await desk.get(call_url)
        fields = form_fields(page.text, "/staff/operator/hold", slot)
        forged = await desk.post(
            "/staff/operator/hold",
            data={**{k: v for k, v in fields.items() if k != "csrf"}, "slot_id": slot},
        )
        assert forged.status_code == 403
        assert await store.resident_hold(Resident(world.municipality, voucher(5))) is None

        # Administrators work the phones too; a call id is only this console's own.
        assert (await sign_in(other, admin)).status_code == 303
        assert (await other.get("/staff/operator")).status_code == 200
        elsewhere = await other.get(call_url)
        assert elsewhere.status_code == 303
        assert "notice=call_gone" in elsewhere.headers["location"]
        assert voucher(5) not in (await other.get(elsewhere.headers["location"])).text

        # Ending the call forgets it at once.
        ended = await desk.post(
            "/staff/operator/end", data=form_fields(page.text, "/staff/operator/end")
        )
        assert ended.status_code == 303 and "notice=call_ended" in ended.headers["location"]
        assert "notice=call_gone" in (await desk.get(call_url)).headers["location"]
        # Not signed in: the sign-in page, coming back to the console afterwards.
        desk.cookies.clear()
        away = await desk.get("/staff/operator")
        assert away.status_code == 303 and away.headers["location"].startswith("/staff/signin")
    assert watch.leaks() == []


async def test_ten_consoles_after_the_last_three_places(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """10 operators book one slot's last 3 places for 10 callers at the same moment:
    exactly 3 bookings, and 7 operators told in words that the time was taken."""
    async with db.acquire() as conn:
        logins = [(await make_staff(conn, world.municipality, "operator"))[1] for _ in range(10)]
        slot = await make_slot(conn, world.clinic_id, world.event_id, 3, days=2)
    async with consoles(settings, 10) as (_, clients, watch):
        calls = []
        for client, login in zip(clients, logins, strict=True):
            assert (await sign_in(client, login)).status_code == 303
        for i, client in enumerate(clients):
            call_url = await open_call(client, voucher(20 + i))
            page = await client.get(call_url)
            calls.append(form_fields(page.text, "/staff/operator/hold", slot))
        start = asyncio.Event()

        async def attempt(client: httpx.AsyncClient, fields: dict[str, str]) -> str:
            await start.wait()
            held = await client.post("/staff/operator/hold", data={**fields, "slot_id": slot})
            assert held.status_code == 303
            if "/staff/operator/review?" not in held.headers["location"]:
                told = await client.get(held.headers["location"])
                assert "この枠は埋まりました" in told.text, told.text
                return "taken"
            done = await client.post(
                "/staff/operator/confirm", data=await confirm_form(client, held.headers["location"])
            )
            assert "/staff/operator/done?" in done.headers["location"]
            return "booked"

        tasks = [asyncio.create_task(attempt(c, f)) for c, f in zip(clients, calls, strict=True)]
        await asyncio.sleep(0.05)
        start.set()
        answers = await asyncio.gather(*tasks)
    assert sorted(answers) == ["booked"] * 3 + ["taken"] * 7
    assert await pg_active_bookings(db, slot) == 3
    assert await pg_slot(db, slot) == (3, 3)
    assert watch.leaks() == []
