"""``machiai purge``: personal data of finished events goes, residents of events not
finished stay whole, counts stay, the audit chain still verifies once the purge's own row is
sealed, a second purge does nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from machiai import cli
from machiai.audit import seal_waiting, verify_chains
from machiai.pg import Conn
from machiai.purge import JST, MunicipalityCounts, PurgeRefused, purge_personal_data

A, B = "131001", "271004"
NOW = datetime.now(UTC)
TODAY = NOW.astimezone(JST).date()
BIRTH = date(1950, 4, 1)


def days(n: float) -> datetime:
    return NOW + timedelta(days=n)


@dataclass(frozen=True, slots=True)
class Seeded:
    old_event: str
    new_event: str
    b_event: str
    old_slot: str


async def event(conn: Conn, municipality: str, opens: datetime, closes: datetime) -> str:
    event_id = f"ev-{uuid.uuid4().hex[:8]}"
    await conn.execute(
        "INSERT INTO events (id, municipality_code, name_ja, name_en, prequeue_at, opens_at, "
        "closes_at, admit_per_minute, max_active) VALUES ($1, $2, '接種', 'Event', $3, $3, $4, "
        "60, 100)",
        event_id,
        municipality,
        opens,
        closes,
    )
    return event_id


async def slot(conn: Conn, clinic: str, event_id: str, starts: datetime, dose: int) -> str:
    slot_id: str = await conn.fetchval(
        "INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity, dose_number, "
        "vaccine_code) VALUES ($1::uuid, $2, $3, 30, 10, $4, 'comirnaty') RETURNING id::text",
        clinic,
        event_id,
        starts,
        dose,
    )
    return slot_id


async def book(
    conn: Conn,
    municipality: str,
    slot_id: str,
    voucher: str,
    status: str = "confirmed",
) -> None:
    """A booking as the confirm statement leaves it: the slot's count moved, audited."""
    row = await conn.fetchrow(
        "UPDATE slots SET booked = booked + 1 WHERE id = $1::uuid RETURNING starts_at, dose_number",
        slot_id,
    )
    assert row is not None
    booking_id = await conn.fetchval(
        "INSERT INTO bookings (confirmation_code, slot_id, municipality_code, voucher_number, "
        "dose_number, vaccine_code, slot_starts_at, channel) "
        "VALUES ($1, $2::uuid, $3, $4, $5, 'comirnaty', $6, 'web') RETURNING id::text",
        uuid.uuid4().hex[:8],
        slot_id,
        municipality,
        voucher,
        row["dose_number"],
        row["starts_at"],
    )
    await conn.execute(
        "INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, target, after) "
        "VALUES ($1, 'resident', $2, 'booking.booking.confirmed', $3, '{}')",
        municipality,
        f"{municipality}:{voucher}",
        booking_id,
    )
    if status == "cancelled":
        await conn.execute(
            "UPDATE bookings SET status = 'cancelled', cancelled_at = now() WHERE id = $1::uuid",
            booking_id,
        )
        await conn.execute("UPDATE slots SET booked = booked - 1 WHERE id = $1::uuid", slot_id)
    elif status != "confirmed":
        await conn.execute(
            "UPDATE bookings SET status = $2::booking_status WHERE id = $1::uuid",
            booking_id,
            status,
        )


async def register(
    conn: Conn, municipality: str, vouchers: list[str], imported_at: datetime
) -> None:
    await conn.executemany(
        "INSERT INTO registry (municipality_code, voucher_number, birth_date, imported_at) "
        "VALUES ($1, $2, $3, $4)",
        [(municipality, v, BIRTH, imported_at) for v in vouchers],
    )


def v(n: int) -> str:
    return f"{1_000_000_000 + n:010d}"


async def seed(db: asyncpg.Pool) -> Seeded:
    """A: an old event (closed 10 days ago, slots 20 days ago) and one still open.
    1 booked only the old one; 2 booked dose 1 there and dose 2 in the open one; 3 never
    booked; 4 cancelled in the old one. B: only an old event; 5 booked there, 6 never did,
    7 was imported after it closed."""
    async with db.acquire() as conn, conn.transaction():
        for code in (A, B):
            await conn.execute(
                "INSERT INTO municipalities (code, name_ja, name_en) VALUES ($1, '市', 'City')",
                code,
            )
        await conn.execute(
            "INSERT INTO vaccines (code, name_ja, name_en, dose_interval_days) "
            "VALUES ('comirnaty', 'コミナティ', 'Comirnaty', 21)"
        )
        clinics = {}
        for code in (A, B):
            clinics[code] = await conn.fetchval(
                "INSERT INTO clinics (municipality_code, name_ja, name_en, area) "
                "VALUES ($1, '診療所', 'Clinic', '中区') RETURNING id::text",
                code,
            )
        old = await event(conn, A, days(-40), days(-10))
        new = await event(conn, A, days(-1), days(30))
        b_old = await event(conn, B, days(-40), days(-10))
        old_slot = await slot(conn, clinics[A], old, days(-20), 1)
        new_slot = await slot(conn, clinics[A], new, days(10), 2)
        b_slot = await slot(conn, clinics[B], b_old, days(-20), 1)
        await register(conn, A, [v(1), v(2), v(3), v(4)], days(-45))
        await register(conn, B, [v(5), v(6)], days(-45))
        await register(conn, B, [v(7)], days(-5))
        await book(conn, A, old_slot, v(1), "attended")
        await book(conn, A, old_slot, v(2), "attended")
        await book(conn, A, new_slot, v(2))
        await book(conn, A, old_slot, v(4), "cancelled")
        await book(conn, B, b_slot, v(5), "no_show")
        for event_id in (old, new, b_old):
            await conn.execute(
                "INSERT INTO used_passes (pass_id, event_id, session_id, keep_until) "
                "VALUES ($1, $2, 's', $3)",
                uuid.uuid4().hex,
                event_id,
                days(1),
            )
        for created in (days(-20), NOW):
            await conn.execute(
                "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response, "
                "created_at) VALUES ($1, 'k', 'h', 200, '{}', $2)",
                f"resident:{A}:{v(1)}:{uuid.uuid4().hex}",
                created,
            )
    return Seeded(old, new, b_old, old_slot)


async def snapshot(db: asyncpg.Pool) -> dict[str, object]:
    return {
        "registry": sorted(
            (r["municipality_code"], r["voucher_number"])
            for r in await db.fetch("SELECT municipality_code, voucher_number FROM registry")
        ),
        "bookings": sorted(
            (r["voucher_number"] or "-", r["status"], r["purged"])
            for r in await db.fetch(
                "SELECT voucher_number, status::text, purged_at IS NOT NULL AS purged FROM bookings"
            )
        ),
        "booked": sorted(r["booked"] for r in await db.fetch("SELECT booked FROM slots")),
        "passes": await db.fetchval("SELECT count(*) FROM used_passes"),
        "idempotency": await db.fetchval("SELECT count(*) FROM idempotency_keys"),
        "audit": await db.fetchval("SELECT count(*) FROM audit_log"),
    }


EXPECTED_COUNTS = [
    MunicipalityCounts(A, events=1, bookings=2, registry=2, used_passes=1),
    MunicipalityCounts(B, events=1, bookings=1, registry=2, used_passes=1),
]


async def test_purge_removes_finished_events_personal_data_and_keeps_the_rest(
    db: asyncpg.Pool,
) -> None:
    seeded = await seed(db)
    before = await snapshot(db)
    async with db.acquire() as conn:
        dry = await purge_personal_data(conn, TODAY)
    assert (dry.municipalities, dry.idempotency_records, dry.applied) == (
        EXPECTED_COUNTS,
        1,
        False,
    )
    assert await snapshot(db) == before  # a dry run changes nothing

    async with db.acquire() as conn:
        done = await purge_personal_data(conn, TODAY, apply=True)
    assert (done.municipalities, done.idempotency_records) == (EXPECTED_COUNTS, 1)
    after = await snapshot(db)
    # 1 and 4 (old event only) go; 2 (booked the open event too) and 3 (never booked, and
    # A still has an open event) stay; of B, 5 and 6 go, 7 (imported after) stays.
    assert after["registry"] == [(A, v(2)), (A, v(3)), (B, v(7))]
    assert after["bookings"] == sorted(
        [
            ("-", "attended", True),
            ("-", "cancelled", True),
            ("-", "no_show", True),
            (v(2), "attended", False),
            (v(2), "confirmed", False),
        ]
    )
    assert after["booked"] == before["booked"]
    assert (after["passes"], after["idempotency"]) == (1, 1)
    assert (
        await db.fetchval("SELECT count(*) FROM used_passes WHERE event_id = $1", seeded.new_event)
        == 1
    )
    # Audited once, with the counts; every chain still verifies.
    assert after["audit"] == before["audit"] + 1  # type: ignore[operator]
    audit = await db.fetchrow(
        "SELECT id, municipality_code, actor_kind, after FROM audit_log "
        "WHERE action = 'admin.data.purged'"
    )
    assert audit is not None and audit["id"] == done.audit_id
    assert (audit["municipality_code"], audit["actor_kind"]) == (None, "system")
    assert json.loads(audit["after"])["municipalities"][0] == {
        "municipality": A,
        "events": 1,
        "bookings": 2,
        "registry": 2,
        "used_passes": 1,
    }
    async with db.acquire() as conn:
        await seal_waiting(conn)  # as booking does every second
        reports = await verify_chains(conn, max_unsealed_s=0)
    assert [(r.municipality_code, r.rows, r.intact) for r in reports] == [
        (None, 1, True),
        (A, 4, True),
        (B, 1, True),
    ]

    # A second purge finds nothing to remove, and writes nothing.
    async with db.acquire() as conn:
        again = await purge_personal_data(conn, TODAY, apply=True)
    assert not again.removes_anything and again.audit_id is None
    assert [(m.municipality, m.events) for m in again.municipalities] == [(A, 1), (B, 1)]
    assert await snapshot(db) == after


async def test_purge_of_one_municipality_leaves_the_others(db: asyncpg.Pool) -> None:
    await seed(db)
    async with db.acquire() as conn:
        done = await purge_personal_data(conn, TODAY, B, apply=True)
    assert done.municipalities == EXPECTED_COUNTS[1:]
    registry = await db.fetch("SELECT voucher_number FROM registry WHERE municipality_code = $1", A)
    assert len(registry) == 4
    assert (
        await db.fetchval(
            "SELECT municipality_code FROM audit_log WHERE action = 'admin.data.purged'"
        )
        == B
    )


async def test_an_event_with_a_slot_not_yet_over_is_not_finished(db: asyncpg.Pool) -> None:
    seeded = await seed(db)
    # The old event's window closed, but one of its slots runs until after the cutoff.
    clinic = await db.fetchval(
        "SELECT clinic_id::text FROM slots WHERE id = $1::uuid", seeded.old_slot
    )
    async with db.acquire() as conn:
        await slot(conn, clinic, seeded.old_event, days(1), 1)
        done = await purge_personal_data(conn, TODAY, A)
    assert done.municipalities == []


async def test_purge_refuses_a_future_date(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        with pytest.raises(PurgeRefused, match="in the future"):
            await purge_personal_data(conn, TODAY + timedelta(days=1))


async def test_machiai_purge(
    db: asyncpg.Pool,
    env_vars: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env_vars.items():
        monkeypatch.setenv(name, value)
    await seed(db)
    day = TODAY.isoformat()
    assert await asyncio.to_thread(cli.main, ["purge", "--before", day]) == 0
    out = capsys.readouterr().out
    assert f"  {A}: 1 events; to go: 2 booking voucher numbers, 2 registry rows" in out
    assert "dry run: nothing changed (add --apply to purge)" in out
    assert await asyncio.to_thread(cli.main, ["purge", "--before", day, "--apply"]) == 0
    assert "purged; audited as admin.data.purged" in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["purge", "--before", day, "--apply"]) == 0
    assert "nothing to purge" in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["audit", "seal"]) == 0
    args = ["audit", "verify", "--max-unsealed-s", "0"]
    assert await asyncio.to_thread(cli.main, args) == 0
    tomorrow = (TODAY + timedelta(days=1)).isoformat()
    assert await asyncio.to_thread(cli.main, ["purge", "--before", tomorrow]) == 2
    assert "is in the future" in capsys.readouterr().err


async def _message(conn: Conn, topic: str, payload: dict[str, str]) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO outbox (topic, payload, published_at) VALUES ($1, $2::jsonb, now()) "
            "RETURNING id",
            topic,
            json.dumps(payload),
        )
    )


async def test_purge_forgets_whom_messages_were_for(db: asyncpg.Pool) -> None:
    """Deliveries done with before the cutoff go (their recipient is an address); "your
    turn is near" rows of closed events lose address, webhook id and link; what is still
    to send, and what belongs to an event still open, stays."""
    seeded = await seed(db)
    async with db.acquire() as conn:
        booked = await _message(conn, "booking.booking.confirmed", {"booking_id": "x"})
        for n, (state, created) in enumerate(
            (("sent", days(-20)), ("dead", days(-20)), ("pending", days(-20)), ("sent", NOW))
        ):
            await conn.execute(
                "INSERT INTO deliveries (outbox_id, municipality_code, channel, recipient, "
                "idempotency_key, state, created_at, sent_at) "
                "VALUES ($1, $2, 'email', $3, $4, $5::text::delivery_state, $6::timestamptz, "
                "CASE WHEN $5::text = 'sent' THEN $6::timestamptz END)",
                booked,
                A,
                f"r{n}@example.jp",
                f"k{n}",
                state,
                created,
            )
        near = {"email": "near@example.jp", "link": "https://w/x?t=secret", "locale": "ja"}
        closed = await _message(conn, "waitroom.turn.near", {**near, "event_id": seeded.old_event})
        still_open = await _message(
            conn, "waitroom.turn.near", {**near, "event_id": seeded.new_event}
        )
        dry = await purge_personal_data(conn, TODAY)
        assert dry.messages == 3  # two deliveries done with, one notice of a closed event
        done = await purge_personal_data(conn, TODAY, apply=True)
        assert done.messages == 3 and done.audit_id is not None
        left = sorted(r["recipient"] for r in await conn.fetch("SELECT recipient FROM deliveries"))
        assert left == ["r2@example.jp", "r3@example.jp"]  # pending; sent after the cutoff
        payload = json.loads(
            await conn.fetchval("SELECT payload::text FROM outbox WHERE id = $1", closed)
        )
        assert payload == {"event_id": seeded.old_event, "locale": "ja"}
        payload = json.loads(
            await conn.fetchval("SELECT payload::text FROM outbox WHERE id = $1", still_open)
        )
        assert payload["email"] == "near@example.jp"
        assert (await purge_personal_data(conn, TODAY)).messages == 0
