"""The vaccination ledger (GET /api/exports/ledger): the exact file for a small fixture
(BOM, header, rows, a hostile clinic name escaped, Shift_JIS), the days' edges in Japan
time, only attended vaccinations, only the municipality's own, the lot when given; every
export audited; bad input refused before anything is written; and the file streamed:
its first bytes reach the client over real HTTP before the last rows are read."""

from __future__ import annotations

import asyncio
import codecs
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from booking.app import create_app
from booking.http import JST
from booking.services import exports
from booking.settings import BookingSettings
from booking.store import pg_export
from machiai.pg import Conn
from tests.booking.client import code, running, staff_token
from tests.booking.factory import World, make_staff, voucher
from tests.servers import serving

CLINIC_CODE = "1310010001"
HOSTILE = '=HYPERLINK("http://x.example","y")'
HEADER = "接種券番号,自治体コード,接種日,医療機関コード,医療機関名,ワクチン,接種回数,ロット番号"
URL = "/api/exports/ledger?from=2031-04-01&to=2031-04-02"


def jst(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=JST)


async def vaccination(
    conn: Conn,
    clinic_id: str,
    event_id: str,
    municipality: str,
    at: datetime,
    n: int,
    *,
    status: str = "attended",
    dose: int = 1,
    lot: str | None = None,
) -> str:
    """A slot of ``clinic_id`` at ``at`` and one booking of resident ``n`` in it."""
    slot_id = await conn.fetchval(
        "INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity, "
        "dose_number, vaccine_code) VALUES ($1, $2, $3, 30, 5, $4, 'comirnaty') "
        "RETURNING id",
        uuid.UUID(clinic_id), event_id, at, dose,
    )  # fmt: skip
    booking_id = await conn.fetchval(
        "INSERT INTO bookings (confirmation_code, slot_id, municipality_code, voucher_number, "
        "dose_number, vaccine_code, slot_starts_at, status, channel, lot, cancelled_at) "
        "VALUES ($1, $2, $3, $4, $5, 'comirnaty', $6, $7::booking_status, 'web', $8, "
        "CASE WHEN $7 = 'cancelled' THEN now() END) RETURNING id::text",
        uuid.uuid4().hex[:8].upper(), slot_id, municipality, voucher(n), dose, at, status, lot,
    )  # fmt: skip
    return str(booking_id)


@dataclass(frozen=True, slots=True)
class Ledger:
    world: World
    hostile_clinic: str
    admin: dict[str, str]  # Authorization header of an administrator of the world's city
    admin_id: str


async def seed_ledger(db: asyncpg.Pool, world: World, settings: BookingSettings) -> Ledger:
    """The fixture every test here reads: three rows in [2031-04-01, 2031-04-02], and rows
    around them that must stay out."""
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE clinics SET code = $2 WHERE id = $1", uuid.UUID(world.clinic_id), CLINIC_CODE
        )
        hostile = str(
            await conn.fetchval(
                "INSERT INTO clinics (municipality_code, name_ja, name_en, area) "
                "VALUES ($1, $2, 'Hostile', '北区') RETURNING id::text",
                world.municipality,
                HOSTILE,
            )
        )
        a, city, ev = world.clinic_id, world.municipality, world.event_id
        # In: the first instant of the first day, a hostile clinic without a code, the
        # last second of the last day.
        await vaccination(conn, a, ev, city, jst(2031, 4, 1, 0, 0), 1, lot="FF2847")
        await vaccination(conn, hostile, ev, city, jst(2031, 4, 1, 10, 0), 2, dose=2)
        await vaccination(conn, a, ev, city, jst(2031, 4, 2, 23, 59, 59), 3, lot="EY0779")
        # Out: a second before and the first instant after (Japan time, not UTC); not
        # attended; another municipality's.
        await vaccination(conn, a, ev, city, jst(2031, 3, 31, 23, 59, 59), 4)
        await vaccination(conn, a, ev, city, jst(2031, 4, 3, 0, 0), 5)
        await vaccination(conn, a, ev, city, jst(2031, 4, 1, 11, 0), 6, status="confirmed")
        await vaccination(conn, a, ev, city, jst(2031, 4, 1, 12, 0), 7, status="no_show")
        await vaccination(conn, a, ev, city, jst(2031, 4, 1, 13, 0), 8, status="cancelled")
        await vaccination(
            conn,
            world.other_clinic_id,
            world.other_event_id,
            world.other_municipality,
            jst(2031, 4, 1, 9, 0),
            9,
        )
        admin_id, _ = await make_staff(conn, world.municipality, "admin")
    header = staff_token(settings, admin_id, world.municipality, "admin", None)
    return Ledger(world, hostile, header, admin_id)


def expected_text() -> str:
    return (
        HEADER + "\r\n"
        f"{voucher(1)},131001,2031-04-01,{CLINIC_CODE},診療所,comirnaty,1,FF2847\r\n"
        # The clinic's name would start a formula: written with a leading apostrophe, and
        # quoted (it holds a comma and quotes).
        f'{voucher(2)},131001,2031-04-01,,"\'=HYPERLINK(""http://x.example"",""y"")",'
        "comirnaty,2,\r\n"
        f"{voucher(3)},131001,2031-04-02,{CLINIC_CODE},診療所,comirnaty,1,EY0779\r\n"
    )


async def ledger_audits(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT actor_kind, actor_id, target, after FROM audit_log "
            "WHERE action = 'booking.export.ledger' ORDER BY id"
        )
    )


async def test_the_ledger_file_exactly(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    seeded = await seed_ledger(db, world, settings)
    async with running(settings) as (_, client):
        r = await client.get(URL, headers=seeded.admin)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["content-disposition"].startswith(
            'attachment; filename="ledger-131001-2031-04-01-2031-04-02.csv"'
        )
        assert r.content == codecs.BOM_UTF8 + expected_text().encode("utf-8")

        sjis = await client.get(URL + "&encoding=shift_jis", headers=seeded.admin)
        assert sjis.status_code == 200
        assert sjis.headers["content-type"] == "text/csv; charset=Windows-31J"
        assert sjis.content == expected_text().encode("cp932")  # no BOM, strict cp932

    audits = await ledger_audits(db)
    assert [(a["actor_kind"], a["actor_id"], a["target"]) for a in audits] == [
        ("staff", seeded.admin_id, "2031-04-01/2031-04-02")
    ] * 2
    assert [json.loads(a["after"]) for a in audits] == [
        {"from": "2031-04-01", "to": "2031-04-02", "encoding": "utf-8", "rows": 3},
        {"from": "2031-04-01", "to": "2031-04-02", "encoding": "shift_jis", "rows": 3},
    ]


async def test_one_day_and_an_empty_range(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    seeded = await seed_ledger(db, world, settings)
    async with running(settings) as (_, client):
        last_day = await client.get(
            "/api/exports/ledger?from=2031-04-02&to=2031-04-02", headers=seeded.admin
        )
        lines = last_day.content.decode("utf-8-sig").split("\r\n")
        assert lines == [HEADER, expected_text().split("\r\n")[3], ""]
        # The day before the range: only the 23:59:59 JST row (15:00 UTC on the 31st).
        before = await client.get(
            "/api/exports/ledger?from=2031-03-31&to=2031-03-31", headers=seeded.admin
        )
        assert (
            before.content.decode("utf-8-sig")
            .split("\r\n")[1]
            .startswith(f"{voucher(4)},131001,2031-03-31,")
        )
        nothing = await client.get(
            "/api/exports/ledger?from=2030-01-01&to=2030-12-31", headers=seeded.admin
        )
        assert nothing.status_code == 200
        assert nothing.content == codecs.BOM_UTF8 + (HEADER + "\r\n").encode()


async def test_the_other_municipality_gets_its_own_only(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    await seed_ledger(db, world, settings)
    async with db.acquire() as conn:
        other_id, _ = await make_staff(conn, world.other_municipality, "admin")
    other = staff_token(settings, other_id, world.other_municipality, "admin", None)
    async with running(settings) as (_, client):
        r = await client.get(URL, headers=other)
    rows = r.content.decode("utf-8-sig").split("\r\n")
    assert rows[1:] == [f"{voucher(9)},271004,2031-04-01,,診療所,comirnaty,1,", ""]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("to=2031-04-02", "from"),
        ("from=2031-04-01", "to"),
        ("from=2031-4-1&to=2031-04-02", "from"),
        ("from=2031-04-01&to=2031-02-30", "to"),
        ("from=2031-04-02&to=2031-04-01", "to"),
        ("from=2001-01-01&to=2031-04-01", "to"),
        ("from=1999-12-31&to=2000-01-01", "from"),
        ("from=9999-12-31&to=9999-12-31", "from"),
        ("from=2031-04-01&to=2031-04-02&encoding=latin-1", "encoding"),
        ("from=2031-04-01&to=2031-04-02&encoding=", "encoding"),
    ],
)
async def test_bad_input_is_a_4xx_and_exports_nothing(
    settings: BookingSettings, db: asyncpg.Pool, world: World, query: str, field: str
) -> None:
    seeded = await seed_ledger(db, world, settings)
    async with running(settings) as (_, client):
        r = await client.get(f"/api/exports/ledger?{query}", headers=seeded.admin)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "invalid_input"
        assert r.json()["error"]["detail"]["field"] == field
        assert r.json()["error"]["message"]  # Japanese by default
        english = await client.get(
            f"/api/exports/ledger?{query}", headers={**seeded.admin, "Accept-Language": "en"}
        )
        assert english.json()["error"]["message"].startswith(field)
    assert await ledger_audits(db) == []


async def test_only_administrators(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    seeded = await seed_ledger(db, world, settings)
    async with db.acquire() as conn:
        clinic_id, _ = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
        operator_id, _ = await make_staff(conn, world.municipality, "operator")
    async with running(settings) as (_, client):
        assert code(await client.get(URL)) == "unauthorized"
        clinic = staff_token(settings, clinic_id, world.municipality, "clinic", world.clinic_id)
        assert code(await client.get(URL, headers=clinic)) == "forbidden"
        operator = staff_token(settings, operator_id, world.municipality, "operator", None)
        assert code(await client.get(URL, headers=operator)) == "forbidden"
        assert (await client.get(URL, headers=seeded.admin)).status_code == 200
    assert len(await ledger_audits(db)) == 1


ROWS = 12_000
BATCH = 1_000


async def many_attended(db: asyncpg.Pool, world: World, rows: int) -> None:
    """``rows`` attended bookings of the world's clinic on 2031-04-01, a second apart."""
    async with db.acquire() as conn:
        slot_id = await conn.fetchval(
            "INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity, "
            "dose_number, vaccine_code) VALUES ($1, $2, $3, 30, 5, 1, 'comirnaty') RETURNING id",
            uuid.UUID(world.clinic_id), world.event_id, jst(2031, 4, 1, 0, 0),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO bookings (confirmation_code, slot_id, municipality_code, "
            "voucher_number, dose_number, vaccine_code, slot_starts_at, status, channel, lot) "
            "SELECT 'S' || lpad(g::text, 7, '0'), $1, $2, (2000000000 + g)::text, 1, "
            "'comirnaty', $3::timestamptz + g * interval '1 second', 'attended', 'web', "
            "'LOT' || g % 97 "
            "FROM generate_series(1, $4) g",
            slot_id, world.municipality, jst(2031, 4, 1, 0, 0), rows,
        )  # fmt: skip


@pytest.mark.timeout(120)  # a file held back until its last row would wait here forever
async def test_the_first_bytes_arrive_before_the_last_rows_are_read(
    settings: BookingSettings,
    db: asyncpg.Pool,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await many_attended(db, world, ROWS)
    async with db.acquire() as conn:
        admin_id, _ = await make_staff(conn, world.municipality, "admin")
    admin = staff_token(settings, admin_id, world.municipality, "admin", None)
    batches_read: list[int] = []
    first_bytes = asyncio.Event()
    real = pg_export.ledger_batches

    async def gated(
        conn: Conn, municipality: str, since: datetime, until: datetime, batch_rows: int
    ) -> AsyncIterator[Sequence[Sequence[Any]]]:
        # The last batch is read only once the client holds the file's first bytes: a
        # service that gathered every row before sending would never get here.
        async for batch in real(conn, municipality, since, until, batch_rows):
            if len(batches_read) == ROWS // BATCH - 1:
                await first_bytes.wait()
            batches_read.append(len(batch))
            yield batch

    monkeypatch.setattr(pg_export, "ledger_batches", gated)
    monkeypatch.setattr(exports, "BATCH_ROWS", BATCH)
    async with (
        serving(create_app(settings)) as base,
        httpx.AsyncClient(base_url=base, timeout=None) as client,
        client.stream(
            "GET", "/api/exports/ledger?from=2031-04-01&to=2031-04-01", headers=admin
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in r.headers
        received: list[bytes] = []
        read_when_first_arrived = -1
        async for chunk in r.aiter_raw():
            if not received:
                read_when_first_arrived = len(batches_read)
                first_bytes.set()
            received.append(chunk)
    assert read_when_first_arrived < ROWS // BATCH
    assert batches_read == [BATCH] * (ROWS // BATCH)
    lines = b"".join(received).decode("utf-8-sig").split("\r\n")
    assert len(lines) == ROWS + 2 and lines[-1] == ""  # header, every row, the final CRLF
    assert lines[1] == "2000000001,131001,2031-04-01,,診療所,comirnaty,1,LOT1"
    assert lines[-2].startswith(f"{2_000_000_000 + ROWS},")
