"""The clinic console over HTTP: the day's list, attendance and its refusals, the CSV, the
times (capacity, close with a confirmation, reopen), the weekly plan and the CSV import
with their previews; roles, another clinic's things, and CSRF."""

from __future__ import annotations

import codecs
import csv
import html
import io
import re
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import asyncpg
import httpx

from booking.http import JST
from booking.services.context import Ctx
from booking.settings import BookingSettings
from tests.booking.client import running
from tests.booking.factory import World, make_slot, make_staff, voucher
from tests.booking.helpers import book, operator, resident
from tests.booking.test_console_signin import csrf_of, sign_in


def today() -> date:
    return datetime.now(JST).date()


async def clinic_login(db: asyncpg.Pool, world: World, clinic_id: str | None = None) -> str:
    async with db.acquire() as conn:
        _, login = await make_staff(
            conn, world.municipality, "clinic", clinic_id or world.clinic_id
        )
    return login


async def signed_in(client: httpx.AsyncClient, login: str) -> str:
    """Signs in; the CSRF secret of the session."""
    assert (await sign_in(client, login)).status_code == 303
    home = await client.get("/staff")
    assert home.status_code == 200
    return csrf_of(home.text)


async def slot_on(db: asyncpg.Pool, world: World, day: date, hour: int, capacity: int = 4) -> str:
    """A slot of the world's clinic at ``hour``:00 Japan time on ``day``."""
    async with db.acquire() as conn:
        slot_id = await make_slot(conn, world.clinic_id, world.event_id, capacity, days=3)
    await db.execute(
        "UPDATE slots SET starts_at = $2 WHERE id = $1::uuid",
        slot_id,
        datetime(day.year, day.month, day.day, hour, tzinfo=JST),
    )
    return slot_id


async def booked(ctx: Ctx, db: asyncpg.Pool, world: World, n: int, day: date, hour: int) -> str:
    """A booking of resident ``n`` (made 3 days ahead, then moved to ``day`` ``hour``:00 —
    a booking cannot be made for a time already past)."""
    async with db.acquire() as conn:
        slot_id = await make_slot(conn, world.clinic_id, world.event_id, 4, days=3)
    made = await book(ctx, operator(world.municipality), resident(world.municipality, n), slot_id)
    await db.execute(
        "UPDATE slots SET starts_at = $2 WHERE id = $1::uuid",
        slot_id,
        datetime(day.year, day.month, day.day, hour, tzinfo=JST),
    )
    await db.execute(
        "UPDATE bookings SET slot_starts_at = $2 WHERE slot_id = $1::uuid",
        slot_id,
        datetime(day.year, day.month, day.day, hour, tzinfo=JST),
    )
    return str(made["booking"]["booking_id"])


async def status_of(db: asyncpg.Pool, booking_id: str) -> str:
    return str(
        await db.fetchval("SELECT status::text FROM bookings WHERE id = $1::uuid", booking_id)
    )


async def follow(client: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    assert response.status_code == 303, response.text
    return await client.get(response.headers["location"].split("#")[0])


def text_of(html: str) -> str:
    """The page's words, without tags (a sentence may hold markup)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_the_days_list_and_attendance(
    settings: BookingSettings, db: asyncpg.Pool, world: World, ctx: Ctx
) -> None:
    login = await clinic_login(db, world)
    day, ahead = today(), today() + timedelta(days=2)
    first = await booked(ctx, db, world, 1, day, 9)
    second = await booked(ctx, db, world, 2, day, 10)
    later = await booked(ctx, db, world, 3, ahead, 9)
    async with running(settings) as (_, client):
        csrf = await signed_in(client, login)
        page = await client.get("/staff/clinic/day")
        assert page.status_code == 200
        html = page.text
        # Printable heading: the clinic and the day; the list, vouchers masked.
        assert "診療所" in html and f"{day.year}年{day.month}月{day.day}日" in html
        assert voucher(1) not in html and voucher(2) not in html
        assert f"</span>{voucher(1)[-4:]}</td>" in html
        assert html.count('name="status" value="attended"') == 2
        assert "予約 2 件（接種済み 0、来院なし 0、未来院 2）" in text_of(html)
        assert (
            f'href="/staff/clinic/day?date={(day + timedelta(days=1)).isoformat()}&amp;lang=ja"'
            in html
        )
        assert 'aria-current="page"' in html and "予約一覧" in html

        # Vaccinated: 303 back to the list at the row, with the sentence and the new state.
        done = await client.post(
            "/staff/clinic/day/attendance",
            data={"csrf": csrf, "booking": first, "status": "attended", "date": day.isoformat()},
        )
        assert done.status_code == 303
        assert done.headers["location"].endswith(f"#b-{first}")
        shown = await follow(client, done)
        assert "接種済みにしました" in shown.text and 'role="status"' in shown.text
        assert await status_of(db, first) == "attended"
        # Did not come, then back to booked (a mistake undone).
        for status in ("no_show", "confirmed"):
            r = await client.post(
                "/staff/clinic/day/attendance",
                data={"csrf": csrf, "booking": second, "status": status, "date": day.isoformat()},
            )
            assert r.status_code == 303 and await status_of(db, second) == status
        assert "予約済みに戻しました" in (await follow(client, r)).text

        # Before the day: refused, in words, on the list itself; nothing changed.
        early = await client.post(
            "/staff/clinic/day/attendance",
            data={"csrf": csrf, "booking": later, "status": "no_show", "date": ahead.isoformat()},
        )
        assert (
            early.status_code == 303 and "notice=attendance_too_early" in early.headers["location"]
        )
        refused = await follow(client, early)
        assert refused.status_code == 200 and 'role="alert"' in refused.text
        assert "来院状況は予約日の当日から記録できます。何も変更していません。" in refused.text
        assert await status_of(db, later) == "confirmed"
        # A future day's list offers no attendance buttons, and says why.
        future = await client.get(f"/staff/clinic/day?date={ahead.isoformat()}")
        assert 'value="attended"' not in future.text
        assert "来院状況は予約日の当日から記録できます。" in future.text

        # Without the session's CSRF secret: 403 and nothing changed.
        forged = await client.post(
            "/staff/clinic/day/attendance",
            data={"booking": later, "status": "confirmed", "date": day.isoformat()},
        )
        assert forged.status_code == 403
        no_csrf = await client.post(
            "/staff/clinic/day/attendance",
            data={"booking": second, "status": "attended", "date": day.isoformat()},
        )
        assert no_csrf.status_code == 403 and await status_of(db, second) == "confirmed"

        # English, and an unreadable date falls back to today with a sentence.
        english = await client.get(f"/staff/clinic/day?date={day.isoformat()}&lang=en")
        assert 'lang="en"' in english.text and "Bookings on" in english.text
        assert "2 bookings: 1 vaccinated, 0 did not come, 1 still to come." in text_of(english.text)
        odd = await client.get("/staff/clinic/day?date=2031-02-30")
        assert odd.status_code == 200 and "日付を読み取れなかった" in odd.text
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert "booking.booking.attended" in actions and "booking.booking.no_show" in actions


async def test_another_clinics_booking_and_slot_are_not_found(
    settings: BookingSettings, db: asyncpg.Pool, world: World, ctx: Ctx
) -> None:
    # A second clinic in the same municipality, with its own staff.
    other_clinic = await db.fetchval(
        "INSERT INTO clinics (municipality_code, name_ja, name_en, area) "
        "VALUES ($1, '別の診療所', 'Other clinic', '北区') RETURNING id::text",
        world.municipality,
    )
    other_login = await clinic_login(db, world, other_clinic)
    day = today()
    mine = await booked(ctx, db, world, 1, day, 9)
    slot = await slot_on(db, world, day + timedelta(days=3), 9)
    async with running(settings) as (_, client):
        csrf = await signed_in(client, other_login)
        listed = await client.get(f"/staff/clinic/day?date={day.isoformat()}")
        assert listed.status_code == 200 and mine not in listed.text and "別の診療所" in listed.text
        mark = await client.post(
            "/staff/clinic/day/attendance",
            data={"csrf": csrf, "booking": mine, "status": "attended", "date": day.isoformat()},
        )
        assert mark.status_code == 404 and await status_of(db, mine) == "confirmed"
        slot_day = (day + timedelta(days=3)).isoformat()
        confirm = await client.get(f"/staff/clinic/slots/close?slot={slot}&date={slot_day}")
        assert confirm.status_code == 404
        for path, extra in (("capacity", {"capacity": "9"}), ("close", {}), ("reopen", {})):
            r = await client.post(
                f"/staff/clinic/slots/{path}",
                data={"csrf": csrf, "slot": slot, "date": slot_day, **extra},
            )
            assert r.status_code == 404, path
        row = await db.fetchrow("SELECT capacity, closed FROM slots WHERE id = $1::uuid", slot)
        assert row is not None and (row["capacity"], row["closed"]) == (4, False)
        # A made-up id is not found either (never a 500).
        bogus = await client.post(
            "/staff/clinic/day/attendance",
            data={"csrf": csrf, "booking": "nope", "status": "attended"},
        )
        assert bogus.status_code == 404


async def test_the_days_csv(
    settings: BookingSettings, db: asyncpg.Pool, world: World, ctx: Ctx
) -> None:
    login = await clinic_login(db, world)
    day = today()
    await booked(ctx, db, world, 1, day, 9)
    await booked(ctx, db, world, 2, day, 11)
    async with running(settings) as (_, client):
        await signed_in(client, login)
        r = await client.get(f"/staff/clinic/day.csv?date={day.isoformat()}")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.content.startswith(codecs.BOM_UTF8)  # Excel reads UTF-8 right only so
        disposition = r.headers["content-disposition"]
        assert disposition.startswith(f'attachment; filename="bookings-{day.isoformat()}.csv"; ')
        assert (
            unquote(disposition.split("filename*=UTF-8''")[1]) == f"予約一覧_{day.isoformat()}.csv"
        )
        assert r.headers["x-content-type-options"] == "nosniff"
        rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
        assert rows[0] == [
            "日付", "時刻", "接種券番号（下4桁）", "接種回", "ワクチン", "状態", "ロット番号"
        ]  # fmt: skip
        assert rows[1:] == [
            [
                day.isoformat(),
                "9:00",
                "＊＊＊＊＊＊" + voucher(1)[-4:],
                "1",
                "comirnaty",
                "予約済み",
                "",
            ],
            [
                day.isoformat(),
                "11:00",
                "＊＊＊＊＊＊" + voucher(2)[-4:],
                "1",
                "comirnaty",
                "予約済み",
                "",
            ],
        ]
        assert voucher(1).encode() not in r.content
        assert r.content.endswith(b"\r\n")

        sjis = await client.get(f"/staff/clinic/day.csv?date={day.isoformat()}&encoding=shift_jis")
        assert sjis.headers["content-type"] == "text/csv; charset=Windows-31J"
        assert not sjis.content.startswith(codecs.BOM_UTF8)
        text = sjis.content.decode("cp932")  # strict: every byte is cp932
        assert text.startswith("日付,時刻,接種券番号（下4桁）")
        assert list(csv.reader(io.StringIO(text, newline="")))[1:] == rows[1:]

        english = await client.get(f"/staff/clinic/day.csv?date={day.isoformat()}&lang=en")
        assert english.content.decode("utf-8-sig").startswith(
            "Date,Time,Voucher number (last 4 digits),Dose,Vaccine,Booking status,Lot number\r\n"
        )


async def test_times_capacity_close_and_reopen(
    settings: BookingSettings, db: asyncpg.Pool, world: World, ctx: Ctx
) -> None:
    login = await clinic_login(db, world)
    async with db.acquire() as conn:
        slot = await make_slot(conn, world.clinic_id, world.event_id, 2, days=3)
    await book(ctx, operator(world.municipality), resident(world.municipality, 1), slot)
    starts = await db.fetchval("SELECT starts_at FROM slots WHERE id = $1::uuid", slot)
    day = starts.astimezone(JST).date().isoformat()
    async with running(settings) as (_, client):
        csrf = await signed_in(client, login)
        page = await client.get(f"/staff/clinic/slots?date={day}")
        assert page.status_code == 200
        assert re.search(r'data-label="定員" class="num">2<', page.text)
        assert re.search(r'data-label="空き" class="num">1<', page.text)
        assert "受付中" in page.text and f'id="cap-{slot}"' in page.text

        # Below the places booked: the list again, the number booked in words, the field
        # marked and linked from the summary, what was typed kept; nothing changed.
        below = await client.post(
            "/staff/clinic/slots/capacity",
            data={"csrf": csrf, "slot": slot, "capacity": "0", "date": day},
        )
        assert below.status_code == 409
        assert (
            "この枠はすでに 1 人が予約しているため、定員を 1 より少なくできません。" in below.text
        )
        assert f'href="#cap-{slot}"' in below.text and 'aria-invalid="true"' in below.text
        assert f'value="0" aria-describedby="cap-{slot}-error"' in below.text
        english = await client.post(
            "/staff/clinic/slots/capacity",
            data={"csrf": csrf, "slot": slot, "capacity": "0", "date": day, "lang": "en"},
        )
        assert "1 person has booked this time" in english.text
        garbage = await client.post(
            "/staff/clinic/slots/capacity",
            data={"csrf": csrf, "slot": slot, "capacity": "many", "date": day},
        )
        assert garbage.status_code == 422 and "0 から 100000 までの整数" in garbage.text
        assert await db.fetchval("SELECT capacity FROM slots WHERE id = $1::uuid", slot) == 2
        # Full-width digits, as a Japanese input method types them, are fine.
        done = await client.post(
            "/staff/clinic/slots/capacity",
            data={"csrf": csrf, "slot": slot, "capacity": "５", "date": day},
        )
        assert done.status_code == 303 and done.headers["location"].endswith(f"#s-{slot}")
        assert "の定員を 5 にしました。" in (await follow(client, done)).text
        assert await db.fetchval("SELECT capacity FROM slots WHERE id = $1::uuid", slot) == 5

        # Closing asks first, saying what it does; a POST without the secret does nothing.
        confirm = await client.get(f"/staff/clinic/slots/close?slot={slot}&date={day}")
        assert confirm.status_code == 200 and "この枠の受付を停止しますか" in confirm.text
        assert "すでにある予約 1 件はそのまま残ります" in confirm.text
        forged = await client.post("/staff/clinic/slots/close", data={"slot": slot, "date": day})
        assert forged.status_code == 403
        assert await db.fetchval("SELECT closed FROM slots WHERE id = $1::uuid", slot) is False
        closed = await client.post(
            "/staff/clinic/slots/close", data={"csrf": csrf, "slot": slot, "date": day}
        )
        assert closed.status_code == 303
        assert await db.fetchval("SELECT closed FROM slots WHERE id = $1::uuid", slot) is True
        after = await follow(client, closed)
        assert "受付を停止しました" in after.text and "受付停止中" in after.text
        assert 'action="/staff/clinic/slots/reopen"' in after.text
        reopened = await client.post(
            "/staff/clinic/slots/reopen", data={"csrf": csrf, "slot": slot, "date": day}
        )
        assert "受付を再開しました" in (await follow(client, reopened)).text
        assert await db.fetchval("SELECT closed FROM slots WHERE id = $1::uuid", slot) is False

        # A week from two days before: the slot is on its third day, and closes from there.
        monday = (starts.astimezone(JST).date() - timedelta(days=2)).isoformat()
        week = await client.get(f"/staff/clinic/slots?date={monday}&span=week")
        assert week.status_code == 200 and week.text.count("<h2>") >= 7
        assert "前の週" in week.text and f"span=week&amp;slot={slot}" in week.text
        close_from_week = await client.get(
            f"/staff/clinic/slots/close?date={monday}&span=week&slot={slot}"
        )
        assert close_from_week.status_code == 200
    actions = {r["action"] for r in await db.fetch("SELECT action FROM audit_log")}
    assert {
        "booking.slot.capacity_changed",
        "booking.slot.closed",
        "booking.slot.reopened",
    } <= actions


async def test_only_clinic_accounts(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, op_login = await make_staff(conn, world.municipality, "operator")
    async with running(settings) as (_, client):
        # Not signed in: the sign-in page, coming back here.
        away = await client.get("/staff/clinic/day")
        assert (
            away.status_code == 303
            and "/staff/signin?next=%2Fstaff%2Fclinic%2Fday" in (away.headers["location"])
        )
        away_post = await client.post("/staff/clinic/import/preview", data={"csv": "x"})
        assert away_post.status_code == 303
        csrf = await signed_in(client, op_login)
        home = await client.get("/staff")
        assert "/staff/clinic/day" not in home.text  # not in an operator's navigation
        for path in (
            "/staff/clinic/day",
            "/staff/clinic/day.csv",
            "/staff/clinic/slots",
            "/staff/clinic/plan",
            "/staff/clinic/import",
        ):
            assert (await client.get(path)).status_code == 403, path
        for path in ("/staff/clinic/day/attendance", "/staff/clinic/import/preview"):
            r = await client.post(path, data={"csrf": csrf, "csv": "x", "status": "attended"})
            assert r.status_code == 403, path


def next_monday(weeks: int = 2) -> date:
    monday = today() + timedelta(days=7 * weeks)
    return monday - timedelta(days=monday.weekday())


def plan(world: World, monday: date, **changes: Any) -> dict[str, Any]:
    return {
        "event": world.event_id,
        "from_date": monday.isoformat(),
        "to_date": (monday + timedelta(days=6)).isoformat(),
        "weekdays": ["0", "1", "2", "3", "4"],
        "opens": "09:00",
        "closes": "12:00",
        "slot_min": "30",
        "capacity": "4",
        "vaccine": "comirnaty",
        "dose": "1",
        "break_start": "10:00",
        "break_end": "10:30",
        "closed_days": (monday + timedelta(days=2)).isoformat(),
        **changes,
    }


async def count_slots(db: asyncpg.Pool, world: World) -> int:
    sql = "SELECT count(*) FROM slots WHERE clinic_id = $1::uuid"
    return int(await db.fetchval(sql, world.clinic_id))


async def test_weekly_plan_preview_then_publish(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    login = await clinic_login(db, world)
    monday = next_monday()
    async with running(settings) as (_, client):
        csrf = await signed_in(client, login)
        form = await client.get("/staff/clinic/plan")
        assert form.status_code == 200 and f'value="{world.event_id}"' in form.text
        assert world.other_event_id not in form.text  # another municipality's event

        # Problems: listed at the top, linked to their fields; nothing written.
        bad = await client.post(
            "/staff/clinic/plan/preview",
            data={**plan(world, monday, weekdays=[], closes="08:00", capacity="x"), "csrf": csrf},
        )
        assert bad.status_code == 422
        for field in ("weekdays", "closes", "capacity"):
            assert f'href="#{field}"' in bad.text, field
        assert "曜日を 1 つ以上選んでください。" in bad.text

        # Mon–Fri 9:00–12:00 in 30 minutes, a 10:00–10:30 break, Wednesday closed: 4 × 5.
        preview = await client.post(
            "/staff/clinic/plan/preview", data={**plan(world, monday), "csrf": csrf}
        )
        assert preview.status_code == 200, preview.text
        assert "新しい枠 20 件" in preview.text and "20 件の枠を公開する" in preview.text
        assert "9:00–10:00、10:30–12:00" in preview.text  # the break is a gap
        assert await count_slots(db, world) == 0  # a preview writes nothing
        change = re.search(r'href="(/staff/clinic/plan\?[^"]*from_date[^"]+)"', preview.text)
        assert change is not None
        again = await client.get(change.group(1).replace("&amp;", "&"))
        assert 'value="10:30"' in again.text and 'value="4" checked' in again.text
        assert 'value="2" checked' in again.text and 'value="5" checked' not in again.text

        forged = await client.post("/staff/clinic/plan/publish", data=plan(world, monday))
        assert forged.status_code == 403 and await count_slots(db, world) == 0
        done = await client.post(
            "/staff/clinic/plan/publish", data={**plan(world, monday), "csrf": csrf}
        )
        assert done.status_code == 303 and "notice=published" in done.headers["location"]
        assert "新しい接種枠を 20 件公開しました。" in (await follow(client, done)).text
        assert await count_slots(db, world) == 20
        # The same plan again: everything is already there, nothing new to publish.
        twice = await client.post(
            "/staff/clinic/plan/preview", data={**plan(world, monday), "csrf": csrf}
        )
        assert "20 件はすでに公開されているため" in twice.text
        assert "この予定で新しくできる枠はありません。" in twice.text

        # A plan in the past: every time listed with its reason, no way to publish.
        past = today() - timedelta(days=7)
        old = await client.post(
            "/staff/clinic/plan/preview",
            data={**plan(world, past, closed_days="", weekdays=list("0123456")), "csrf": csrf},
        )
        assert "この日時はすでに過ぎています。" in old.text
        assert 'action="/staff/clinic/plan/publish"' not in old.text
        assert 'href="#problems"' in old.text


GOOD = (
    "event_id,starts_at,duration_min,capacity,vaccine_code,dose_number\n"
    "{ev},{day} 9:00,30,10,comirnaty,1\n"
    "{ev},{day} 9:30,30,10,comirnaty,1\n"
)


async def test_csv_import_preview_then_apply(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    login = await clinic_login(db, world)
    day = (today() + timedelta(days=10)).strftime("%Y/%-m/%-d")
    async with running(settings) as (_, client):
        csrf = await signed_in(client, login)
        form = await client.get("/staff/clinic/import")
        assert form.status_code == 200 and 'name="csv"' in form.text

        bad = (
            "event_id,starts_at,duration_min,capacity,vaccine_code,dose_number\n"
            f"{world.event_id},{day} 9:00,30,10,comirnaty,1\n"
            f"{world.event_id},{day} 9:30,30,x,comirnaty,1\n"
            f"nobody-{uuid.uuid4().hex[:6]},{day} 10:00,30,10,comirnaty,1\n"
            f"{world.event_id},2001/1/1 9:00,30,10,comirnaty,1\n"
            f"{world.event_id},{day} 10:30,30,10\n"
            f"{world.event_id},{day} 11:00,30,10,comirnaty,7\n"
        )
        checked = await client.post("/staff/clinic/import/preview", data={"csrf": csrf, "csv": bad})
        assert checked.status_code == 422
        words = text_of(checked.text)
        for row, column, reason in (
            (3, "capacity", "0 から 100000 までの整数を数字で書いてください。"),
            (4, "event_id", "この ID の予約受付はありません。"),
            (5, "starts_at", "この日時はすでに過ぎています。"),
            (6, None, "この行の列の数が 1 行目と違います。"),
            (7, "dose_number", "このワクチンにその回数の接種はありません。"),
        ):
            cell = f"{column}" if column else "（行全体）"
            assert f"{row} {cell} {reason}" in words, (row, words)
        assert "5 件の問題があります。" in words
        assert "問題のない行" in words and re.search(r">2</th>", checked.text)  # row 2 is fine
        assert 'action="/staff/clinic/import/apply"' not in checked.text
        assert await count_slots(db, world) == 0

        empty = await client.post("/staff/clinic/import/preview", data={"csrf": csrf, "csv": " "})
        assert empty.status_code == 422 and 'href="#csv"' in empty.text

        # Cells copied from Excel arrive tab-separated; more rows than a 16 KB form holds.
        rows = ["event_id\tstarts_at\tduration_min\tcapacity\tvaccine_code\tdose_number"]
        start = datetime.combine(today() + timedelta(days=20), datetime.min.time())
        for i in range(400):
            at = start + timedelta(minutes=15 * i)
            rows.append(f"{world.event_id}\t{at:%Y/%m/%d %H:%M}\t15\t3\tcomirnaty\t1")
        pasted = "\r\n".join(rows)
        assert len(pasted.encode()) > 16 * 1024
        ready = await client.post(
            "/staff/clinic/import/preview", data={"csrf": csrf, "csv": pasted}
        )
        assert ready.status_code == 200, text_of(ready.text)[:2000]
        assert "公開できる行" in ready.text and "400 件の枠を公開する" in ready.text
        assert await count_slots(db, world) == 0
        carried = re.search(r'<input type="hidden" name="csv" value="([^"]*)"', ready.text)
        assert carried is not None and html.unescape(carried.group(1)) == pasted

        forged = await client.post("/staff/clinic/import/apply", data={"csv": pasted})
        assert forged.status_code == 403 and await count_slots(db, world) == 0
        applied = await client.post(
            "/staff/clinic/import/apply",
            data={"csrf": csrf, "csv": html.unescape(carried.group(1))},
        )
        assert applied.status_code == 303, text_of(applied.text)[:1000]
        assert "notice=published" in applied.headers["location"]
        assert "新しい接種枠を 400 件公開しました。" in (await follow(client, applied)).text
        assert await count_slots(db, world) == 400
        # Applied twice (a second tab, a double click): refused row by row, nothing doubled.
        twice = await client.post("/staff/clinic/import/apply", data={"csrf": csrf, "csv": pasted})
        assert twice.status_code == 409
        assert "同じ日時・ワクチン・接種回の枠がすでに公開されています。" in twice.text
        assert await count_slots(db, world) == 400

        small = GOOD.format(ev=world.event_id, day=day)
        english = await client.post(
            "/staff/clinic/import/preview", data={"csrf": csrf, "csv": small, "lang": "en"}
        )
        assert english.status_code == 200 and "Publish 2 times" in english.text
