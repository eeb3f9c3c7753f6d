"""The exports in the consoles and the lot number behind them: a clinic records the lot
with "vaccinated" (console form and API), typed as a person types it, refused in words
when it is not one; the administrator's ledger page (a GET form, no JavaScript) gives the
API's file, refuses a bad range beside the field, is in the navigation, and is audited."""

from __future__ import annotations

import codecs
import csv
import io
import json

import asyncpg

from booking.services.context import Ctx
from booking.settings import BookingSettings
from tests.booking.client import code, running, staff_token
from tests.booking.factory import World, make_staff
from tests.booking.test_console_clinic import (
    booked,
    clinic_login,
    follow,
    signed_in,
    status_of,
    today,
)
from tests.booking.test_console_signin import sign_in
from tests.booking.test_export_ledger import URL, expected_text, seed_ledger


async def lot_of(db: asyncpg.Pool, booking_id: str) -> str | None:
    found = await db.fetchval("SELECT lot FROM bookings WHERE id = $1::uuid", booking_id)
    return None if found is None else str(found)


async def test_the_clinic_records_the_lot_with_vaccinated(
    settings: BookingSettings, db: asyncpg.Pool, world: World, ctx: Ctx
) -> None:
    login = await clinic_login(db, world)
    day = today()
    first = await booked(ctx, db, world, 1, day, 9)
    second = await booked(ctx, db, world, 2, day, 10)
    async with running(settings) as (_, client):
        csrf = await signed_in(client, login)
        page = await client.get("/staff/clinic/day")
        assert page.text.count('name="lot"') == 2  # one per row still to come
        assert f'<label for="lot-{first}">ロット番号（記録する場合）' in page.text

        # Typed in full width and lower case, as an input method may: the same lot.
        done = await client.post(
            "/staff/clinic/day/attendance",
            data={
                "csrf": csrf,
                "booking": first,
                "status": "attended",
                "lot": " ｆｆ２８４７ ",
                "date": day.isoformat(),
            },
        )
        shown = await follow(client, done)
        assert await lot_of(db, first) == "FF2847"
        assert '<td data-label="ロット番号" class="lot" lang="en">FF2847</td>' in shown.text

        # Not a lot number: refused in words on the list; nothing changed.
        bad = await client.post(
            "/staff/clinic/day/attendance",
            data={
                "csrf": csrf,
                "booking": second,
                "status": "attended",
                "lot": "FF 2847!",
                "date": day.isoformat(),
            },
        )
        assert "notice=invalid_input" in bad.headers["location"]
        refused = await follow(client, bad)
        assert "ロット番号は、バイアルに印字されたとおりの" in refused.text
        assert await status_of(db, second) == "confirmed" and await lot_of(db, second) is None

        # "Did not come" from a row's form that also holds a typed lot: the lot goes with
        # "vaccinated" only, so it is not kept.
        away = await client.post(
            "/staff/clinic/day/attendance",
            data={
                "csrf": csrf,
                "booking": second,
                "status": "no_show",
                "lot": "AB1234",
                "date": day.isoformat(),
            },
        )
        assert away.status_code == 303 and "notice=no_show" in away.headers["location"]
        assert await lot_of(db, second) is None

        # The day's CSV carries the lot in its last column.
        sheet = await client.get(f"/staff/clinic/day.csv?date={day.isoformat()}")
        rows = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"), newline="")))
        assert rows[0][-1] == "ロット番号"
        assert [r[-1] for r in rows[1:]] == ["FF2847", ""]

        # Back to booked (a mistake undone) drops the lot: it would reach the ledger.
        back = await client.post(
            "/staff/clinic/day/attendance",
            data={"csrf": csrf, "booking": first, "status": "confirmed", "date": day.isoformat()},
        )
        assert back.status_code == 303 and await lot_of(db, first) is None
    audited = await db.fetchval(
        "SELECT after FROM audit_log WHERE action = 'booking.booking.attended' AND target = $1",
        first,
    )
    assert json.loads(audited)["lot"] == "FF2847"


async def test_the_api_takes_the_lot_as_stored(
    settings: BookingSettings, db: asyncpg.Pool, world: World, ctx: Ctx
) -> None:
    day = today()
    booking = await booked(ctx, db, world, 1, day, 9)
    async with db.acquire() as conn:
        staff_id, _ = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
    clinic = staff_token(settings, staff_id, world.municipality, "clinic", world.clinic_id)
    url = f"/api/clinic/bookings/{booking}/attendance"
    async with running(settings) as (_, client):
        for body in (
            {"status": "attended", "lot": "ff2847"},  # the API takes the stored form only
            {"status": "attended", "lot": "FF 2847"},
            {"status": "attended", "lot": "A" * 21},
            {"status": "no_show", "lot": "FF2847"},  # a lot only with attended
            {"status": "attended", "lot": 2847},
        ):
            r = await client.post(url, json=body, headers=clinic)
            assert r.status_code == 422, (body, r.text)
            assert code(r) == "invalid_input" and r.json()["error"]["detail"]["field"] == "lot"
            assert await status_of(db, booking) == "confirmed"
        r = await client.post(url, json={"status": "attended", "lot": "EY0779-2"}, headers=clinic)
        assert r.status_code == 200 and r.json()["booking"]["status"] == "attended"
        assert await lot_of(db, booking) == "EY0779-2"
        # Attended again without a lot: the lot is what the last mark said.
        r = await client.post(url, json={"status": "attended"}, headers=clinic)
        assert r.status_code == 200 and await lot_of(db, booking) is None
        listed = await client.get(f"/api/clinic/bookings?date={day.isoformat()}", headers=clinic)
        assert listed.status_code == 200


async def admin_client_login(db: asyncpg.Pool, municipality: str) -> str:
    async with db.acquire() as conn:
        _, login = await make_staff(conn, municipality, "admin")
    return login


async def test_the_ledger_page_and_its_download(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    seeded = await seed_ledger(db, world, settings)
    login = await admin_client_login(db, world.municipality)
    async with running(settings) as (_, client):
        assert (await sign_in(client, login)).status_code == 303
        home = await client.get("/staff")
        assert 'href="/staff/admin/export?lang=ja"' in home.text  # in the navigation
        page = await client.get("/staff/admin/export")
        assert page.status_code == 200
        html = page.text
        assert 'aria-current="page"' in html and "予防接種台帳への出力" in html
        assert '<form method="get" action="/staff/admin/export/ledger.csv"' in html
        assert 'id="from" name="from" type="date"' in html and 'name="to"' in html
        assert 'value="shift_jis"' in html and "<script" not in html

        got = await client.get("/staff/admin/export/ledger.csv?from=2031-04-01&to=2031-04-02")
        assert got.status_code == 200
        assert got.headers["content-type"] == "text/csv; charset=utf-8"
        assert got.content == codecs.BOM_UTF8 + expected_text().encode()
        api = await client.get(URL, headers=seeded.admin)
        assert got.content == api.content  # one file, wherever it is downloaded
        sjis = await client.get(
            "/staff/admin/export/ledger.csv?from=2031-04-01&to=2031-04-02&encoding=shift_jis"
        )
        assert sjis.content == expected_text().encode("cp932")

        # A bad range: the form again, each problem beside its field and in the summary.
        bad = await client.get("/staff/admin/export/ledger.csv?from=2031-04-05&to=2031-04-01")
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("text/html")
        assert '<a href="#to">終了日は開始日と同じ日か、それより後の日付で' in bad.text
        long = await client.get("/staff/admin/export/ledger.csv?from=2001-01-01&to=2031-04-01")
        assert long.status_code == 422 and "開始日から 10 年以内" in long.text
        assert 'id="to-error"' in bad.text and 'aria-invalid="true"' in bad.text
        assert 'value="2031-04-05"' in bad.text  # what was typed stays
        typo = await client.get(
            "/staff/admin/export/ledger.csv?from=2031/04/01&to=&encoding=ebcdic&lang=en"
        )
        assert typo.status_code == 422
        for field in ("from", "to", "encoding"):
            assert f'<a href="#{field}">' in typo.text
        assert "Enter a date as 2026-12-01." in typo.text
        assert "Choose UTF-8 or Shift_JIS." in typo.text
    audits = await db.fetch(
        "SELECT actor_id, target FROM audit_log WHERE action = 'booking.export.ledger'"
    )
    staff_id = await db.fetchval("SELECT id::text FROM staff WHERE login = $1", login)
    # The page's two downloads and the API's one; the refused ones wrote nothing.
    assert sorted(a["actor_id"] for a in audits) == sorted([staff_id, staff_id, seeded.admin_id])
    assert {a["target"] for a in audits} == {"2031-04-01/2031-04-02"}


async def test_the_ledger_page_is_for_administrators(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    login = await clinic_login(db, world)
    async with running(settings) as (_, client):
        assert (await sign_in(client, login)).status_code == 303
        for path in ("/staff/admin/export", "/staff/admin/export/ledger.csv?from=2031-04-01"):
            r = await client.get(path)
            assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    async with running(settings) as (_, fresh):
        away = await fresh.get("/staff/admin/export/ledger.csv?from=2031-04-01&to=2031-04-02")
        assert away.status_code == 303 and "/staff/signin" in away.headers["location"]
    assert (
        await db.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'booking.export%'") == 0
    )
