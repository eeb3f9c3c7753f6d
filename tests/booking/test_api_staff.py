"""Staff over HTTP: login, operator lane, clinic publishing, registry import, tenant isolation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import asyncpg

from booking.settings import BookingSettings
from tests.booking.client import code, running, staff_token
from tests.booking.factory import BIRTH, PASSWORD, World, make_slot, make_staff, voucher

JST = timezone(timedelta(hours=9))


async def test_staff_login(settings: BookingSettings, db: asyncpg.Pool, world: World) -> None:
    async with db.acquire() as conn:
        staff_id, login = await make_staff(conn, world.municipality, "operator")
    async with running(settings) as (_, client):
        r = await client.post("/api/staff/login", json={"login": login, "password": PASSWORD})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["role"] == "operator" and body["staff_id"] == staff_id
        assert body["municipality_code"] == world.municipality and body["clinic_id"] is None
        wrong = await client.post("/api/staff/login", json={"login": login, "password": "nope"})
        unknown = await client.post("/api/staff/login", json={"login": "who", "password": "x"})
        assert wrong.json() == unknown.json() and wrong.status_code == 401
        auth = {"Authorization": f"Bearer {body['token']}"}
        me = await client.get(f"/api/operator/residents/{voucher(1)}/bookings", headers=auth)
        assert me.status_code == 200
        clinic_only = await client.get("/api/clinic/slots?date=2030-01-01", headers=auth)
        assert clinic_only.status_code == 403 and code(clinic_only) == "forbidden"
        assert (await client.get("/api/clinic/slots?date=2030-01-01")).status_code == 401


async def test_operator_books_for_a_caller(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        staff_id, _ = await make_staff(conn, world.municipality, "operator")
        other_id, _ = await make_staff(conn, world.other_municipality, "operator")
        slot = await make_slot(conn, world.clinic_id, world.event_id, 1)
        foreign = await make_slot(conn, world.other_clinic_id, world.other_event_id, 1)
    auth = staff_token(settings, staff_id, world.municipality, "operator", None)
    other = staff_token(settings, other_id, world.other_municipality, "operator", None)
    caller = {"voucher": voucher(8), "birth_date": BIRTH.isoformat()}
    async with running(settings) as (_, client):
        # Operators search their own municipality's events, like residents do; another
        # municipality's event answers exactly like an unknown one.
        found = await client.get(f"/api/operator/slots?event_id={world.event_id}", headers=auth)
        assert found.status_code == 200, found.text
        assert [(s["slot_id"], s["remaining"]) for s in found.json()["slots"]] == [(slot, 1)]
        foreign_event = await client.get(
            f"/api/operator/slots?event_id={world.other_event_id}", headers=auth
        )
        unknown_event = await client.get("/api/operator/slots?event_id=nope", headers=auth)
        assert foreign_event.status_code == unknown_event.status_code == 404
        assert foreign_event.json() == unknown_event.json()
        missing = await client.get("/api/operator/slots", headers=auth)
        assert missing.status_code == 422 and missing.json()["error"]["detail"]["field"] == (
            "event_id"
        )
        assert (
            await client.get(f"/api/operator/slots?event_id={world.event_id}")
        ).status_code == 401
        refused = await client.post(
            "/api/operator/holds",
            json={**caller, "birth_date": "1970-01-01", "slot_id": slot},
            headers=auth,
        )
        assert code(refused) == "identity_refused"
        cross = await client.post(
            "/api/operator/holds", json={**caller, "slot_id": foreign}, headers=auth
        )
        assert cross.status_code == 404
        held = await client.post(
            "/api/operator/holds", json={**caller, "slot_id": slot}, headers=auth
        )
        assert held.status_code == 201, held.text
        done = await client.post(
            "/api/operator/bookings",
            json={"voucher": voucher(8), "hold_id": held.json()["hold_id"]},
            headers={**auth, "Idempotency-Key": "call-1"},
        )
        assert done.status_code == 201, done.text
        booking = done.json()["booking"]
        assert booking["channel"] == "operator"
        listed = await client.get(f"/api/operator/residents/{voucher(8)}/bookings", headers=auth)
        assert [b["booking_id"] for b in listed.json()["bookings"]] == [booking["booking_id"]]
        # Another municipality's operator cannot see or cancel it.
        seen = await client.get(f"/api/operator/residents/{voucher(8)}/bookings", headers=other)
        assert seen.json()["bookings"] == []
        nope = await client.post(
            f"/api/operator/bookings/{booking['booking_id']}/cancel", headers=other
        )
        assert nope.status_code == 404 and code(nope) == "no_booking"
        ok = await client.post(
            f"/api/operator/bookings/{booking['booking_id']}/cancel", headers=auth
        )
        assert ok.status_code == 200
    rows = await db.fetch("SELECT actor_id, action FROM audit_log ORDER BY id")
    assert [(r["actor_id"], r["action"]) for r in rows if r["action"].startswith("booking.b")] == [
        (staff_id, "booking.booking.confirmed"),
        (staff_id, "booking.booking.cancelled"),
    ]
    assert [r["action"] for r in rows if r["action"].startswith("booking.hold")] == [
        "booking.hold.placed"
    ]
    created_by = await db.fetchval("SELECT created_by::text FROM bookings")
    assert created_by == staff_id


async def test_clinic_publishes_and_manages_slots(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        staff_id, _ = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
        other_id, _ = await make_staff(
            conn, world.other_municipality, "clinic", world.other_clinic_id
        )
        op_id, _ = await make_staff(conn, world.municipality, "operator")
    auth = staff_token(settings, staff_id, world.municipality, "clinic", world.clinic_id)
    other = staff_token(
        settings, other_id, world.other_municipality, "clinic", world.other_clinic_id
    )
    op = staff_token(settings, op_id, world.municipality, "operator", None)
    start = (datetime.now(JST) + timedelta(days=2)).replace(hour=10, minute=0, second=0)
    single = {
        "event_id": world.event_id,
        "starts_at": start.replace(tzinfo=None).isoformat(),
        "duration_min": 30,
        "capacity": 2,
        "vaccine_code": "comirnaty",
        "dose_number": 1,
    }
    async with running(settings) as (_, client):
        r = await client.post("/api/clinic/slots", json=single, headers=auth)
        assert r.status_code == 201 and r.json()["created"] == 1, r.text
        dup = await client.post("/api/clinic/slots", json=single, headers=auth)
        assert dup.status_code == 422
        assert dup.json()["error"]["detail"]["errors"][0]["reason"] == "slot already exists"
        foreign = await client.post(
            "/api/clinic/slots", json={**single, "event_id": world.other_event_id}, headers=auth
        )
        assert foreign.status_code == 422
        day = start.date().isoformat()
        slots = (await client.get(f"/api/clinic/slots?date={day}", headers=auth)).json()["slots"]
        assert len(slots) == 1 and slots[0]["capacity"] == 2
        slot_id = slots[0]["slot_id"]
        # Book one place through the operator lane, then try to shrink below it.
        held = await client.post(
            "/api/operator/holds",
            json={"voucher": voucher(9), "birth_date": BIRTH.isoformat(), "slot_id": slot_id},
            headers=op,
        )
        booked = await client.post(
            "/api/operator/bookings",
            json={"voucher": voucher(9), "hold_id": held.json()["hold_id"]},
            headers=op,
        )
        assert booked.status_code == 201
        below = await client.patch(
            f"/api/clinic/slots/{slot_id}", json={"capacity": 0}, headers=auth
        )
        assert below.status_code == 409 and code(below) == "capacity_below_booked"
        r = await client.patch(f"/api/clinic/slots/{slot_id}", json={"capacity": 5}, headers=auth)
        assert r.status_code == 200 and r.json()["slot"]["capacity"] == 5
        r = await client.patch(f"/api/clinic/slots/{slot_id}", json={"closed": True}, headers=auth)
        assert r.json()["slot"]["closed"] is True
        closed = await client.post(
            "/api/operator/holds",
            json={"voucher": voucher(10), "birth_date": BIRTH.isoformat(), "slot_id": slot_id},
            headers=op,
        )
        assert code(closed) == "slot_closed"
        r = await client.patch(f"/api/clinic/slots/{slot_id}", json={"closed": False}, headers=auth)
        assert r.json()["slot"]["closed"] is False
        hidden = await client.patch(
            f"/api/clinic/slots/{slot_id}", json={"capacity": 9}, headers=other
        )
        assert hidden.status_code == 404
        day_list = await client.get(f"/api/clinic/bookings?date={day}", headers=auth)
        bookings = day_list.json()["bookings"]
        assert [b["voucher_number"] for b in bookings] == [voucher(9)]
        # Not before the appointment's day (a no-show would free the dose early).
        for early in ("attended", "no_show"):
            refused = await client.post(
                f"/api/clinic/bookings/{bookings[0]['booking_id']}/attendance",
                json={"status": early},
                headers=auth,
            )
            assert refused.status_code == 409 and code(refused) == "attendance_too_early"
        assert (
            await db.fetchval(
                "SELECT status::text FROM bookings WHERE id = $1::uuid", bookings[0]["booking_id"]
            )
            == "confirmed"
        )
        # The day comes (in Japan time): now it may be recorded.
        await db.execute(
            "UPDATE slots SET starts_at = date_trunc('day', now() AT TIME ZONE 'Asia/Tokyo') "
            "AT TIME ZONE 'Asia/Tokyo' WHERE id = $1::uuid",
            slot_id,
        )
        mark = await client.post(
            f"/api/clinic/bookings/{bookings[0]['booking_id']}/attendance",
            json={"status": "attended"},
            headers=auth,
        )
        assert mark.status_code == 200 and mark.json()["booking"]["status"] == "attended"
        other_mark = await client.post(
            f"/api/clinic/bookings/{bookings[0]['booking_id']}/attendance",
            json={"status": "no_show"},
            headers=other,
        )
        assert other_mark.status_code == 404
        # Weekly plan: Mon–Fri 9:00–12:00 in 30 min slots, 10:00–10:30 break, one holiday.
        monday = (datetime.now(JST) + timedelta(days=14)).date()
        monday -= timedelta(days=monday.weekday())
        plan = {
            "event_id": world.event_id,
            "from_date": monday.isoformat(),
            "to_date": (monday + timedelta(days=6)).isoformat(),
            "weekdays": [0, 1, 2, 3, 4],
            "opens": "09:00",
            "closes": "12:00",
            "slot_min": 30,
            "capacity": 4,
            "vaccine_code": "comirnaty",
            "dose_number": 1,
            "breaks": [{"start": "10:00", "end": "10:30"}],
            "exceptions": [{"date": (monday + timedelta(days=2)).isoformat(), "closed": True}],
        }
        preview = await client.post(
            "/api/clinic/slots/plan", json={**plan, "dry_run": True}, headers=auth
        )
        assert preview.status_code == 200 and preview.json()["slots"] == 4 * 5, preview.text
        made = await client.post("/api/clinic/slots/plan", json=plan, headers=auth)
        assert made.status_code == 201 and made.json()["created"] == 20
        again = await client.post("/api/clinic/slots/plan", json=plan, headers=auth)
        assert again.json()["created"] == 0
        wed = await client.get(
            f"/api/clinic/slots?date={(monday + timedelta(days=2)).isoformat()}", headers=auth
        )
        assert wed.json()["slots"] == []
    actions = {r["action"] for r in await db.fetch("SELECT action FROM audit_log")}
    assert {
        "booking.slot.published",
        "booking.slot.capacity_changed",
        "booking.slot.closed",
        "booking.slot.reopened",
        "booking.booking.attended",
    } <= actions
    change = await db.fetchrow(
        "SELECT actor_id, before, after FROM audit_log "
        "WHERE action = 'booking.slot.capacity_changed'"
    )
    assert change is not None and change["actor_id"] == staff_id
    assert '"capacity": 2' in change["before"] and '"capacity": 5' in change["after"]


async def test_slot_csv_import_previews_every_bad_row(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        staff_id, _ = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
    auth = staff_token(settings, staff_id, world.municipality, "clinic", world.clinic_id)
    base = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)
    good = [
        f"{world.event_id},{(base + timedelta(hours=i)).isoformat()},30,3,comirnaty,1"
        for i in range(3)
    ]
    header = "event_id,starts_at,duration_min,capacity,vaccine_code,dose_number"
    bad = [
        f"{world.event_id},not-a-date,30,3,comirnaty,1",
        f"{world.event_id},{(base + timedelta(hours=9)).isoformat()},30,-1,comirnaty,1",
        f"nope,{(base + timedelta(hours=10)).isoformat()},30,3,comirnaty,1",
        f"{world.event_id},{(base - timedelta(days=10)).isoformat()},30,3,pfizer,1",
        good[0],
    ]
    csv_bad = "\n".join([header, *good, *bad]) + "\n"
    async with running(settings) as (_, client):
        r = await client.post(
            "/api/clinic/slots/import?dry_run=true", content=csv_bad, headers=auth
        )
        assert r.status_code == 422 and code(r) == "csv_invalid"
        errs = r.json()["error"]["detail"]["errors"]
        assert {(e["row"], e["column"]) for e in errs} == {
            (5, "starts_at"),
            (6, "capacity"),
            (7, "event_id"),
            (8, "starts_at"),
            (8, "vaccine_code"),
            (9, "starts_at"),
        }
        # Rows 2-4: a row with two bad cells counts once, one that did not parse not twice.
        assert r.json()["error"]["detail"]["valid_rows"] == 3
        r = await client.post("/api/clinic/slots/import", content=csv_bad, headers=auth)
        assert r.status_code == 422
        assert await db.fetchval("SELECT count(*) FROM slots") == 0
        csv_good = "\n".join([header, *good]) + "\n"
        preview = await client.post(
            "/api/clinic/slots/import?dry_run=true", content=csv_good, headers=auth
        )
        assert preview.json() == {"dry_run": True, "rows": 3, "errors": []}
        assert await db.fetchval("SELECT count(*) FROM slots") == 0
        done = await client.post("/api/clinic/slots/import", content=csv_good, headers=auth)
        assert done.status_code == 200 and done.json()["created"] == 3
        bad_header = await client.post(
            "/api/clinic/slots/import", content="a,b\n1,2\n", headers=auth
        )
        assert bad_header.status_code == 422
        binary = await client.post(
            "/api/clinic/slots/import", content=b"\xff\xfe\x00\x81", headers=auth
        )
        assert binary.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM slots") == 3


async def test_registry_import_is_validated_and_atomic(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        admin_id, _ = await make_staff(conn, world.municipality, "admin")
        op_id, _ = await make_staff(conn, world.municipality, "operator")
    auth = staff_token(settings, admin_id, world.municipality, "admin", None)
    m = world.municipality
    header = "voucher_number,birth_date,municipality_code,groups"
    good = [f"{3_000_000_000 + i},1950-01-{i + 1:02d},{m},65+" for i in range(5)]
    bad = [
        f"123,1950-01-01,{m},65+",
        f"3000000100,1950-02-30,{m},65+",
        f"3000000101,1950-01-01,{world.other_municipality},65+",
        f"3000000000,1950-01-01,{m},65+|medical",
        f"3000000102,2999-01-01,{m},65+",
    ]
    async with running(settings) as (_, client):
        forbidden = await client.post(
            "/api/registry/import",
            content="\n".join([header, *good]),
            headers=staff_token(settings, op_id, m, "operator", None),
        )
        assert forbidden.status_code == 403
        r = await client.post(
            "/api/registry/import?dry_run=true",
            content="\n".join([header, *good, *bad]),
            headers=auth,
        )
        assert r.status_code == 422
        errs = [(e["row"], e["column"]) for e in r.json()["error"]["detail"]["errors"]]
        assert errs == [
            (7, "voucher_number"),
            (8, "birth_date"),
            (9, "municipality_code"),
            (10, "voucher_number"),
            (11, "birth_date"),
        ]
        before = await db.fetchval("SELECT count(*) FROM registry WHERE municipality_code = $1", m)
        r = await client.post(
            "/api/registry/import", content="\n".join([header, *good, *bad]), headers=auth
        )
        assert r.status_code == 422
        assert (
            await db.fetchval("SELECT count(*) FROM registry WHERE municipality_code = $1", m)
            == before
        )
        preview = await client.post(
            "/api/registry/import?dry_run=true", content="\n".join([header, *good]), headers=auth
        )
        assert preview.json()["rows"] == 5 and preview.json()["groups"] == {"65+": 5}
        done = await client.post(
            f"/api/registry/import?mode=replace&expect_removed={before}",
            content="\n".join([header, *good]).encode("cp932"),
            headers=auth,
        )
        assert done.status_code == 200 and done.json()["removed"] == before
    rows = await db.fetch("SELECT municipality_code, voucher_number FROM registry")
    assert sorted(r["voucher_number"] for r in rows if r["municipality_code"] == m) == [
        str(3_000_000_000 + i) for i in range(5)
    ]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'booking.registry.imported'"
        )
        == 1
    )
