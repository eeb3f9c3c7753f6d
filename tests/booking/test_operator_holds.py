"""The call-centre lane's hold keeps "one booking per resident and dose" before a place is taken."""

from __future__ import annotations

import asyncio

import asyncpg

from booking.settings import BookingSettings
from tests.booking.client import code, running, staff_token
from tests.booking.factory import BIRTH, World, make_slot, make_staff, voucher


async def test_a_caller_with_the_dose_booked_does_not_take_the_last_place(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        staff_id, _ = await make_staff(conn, world.municipality, "operator")
        first = await make_slot(conn, world.clinic_id, world.event_id, 5)
        last_place = await make_slot(conn, world.clinic_id, world.event_id, 1, days=4)
    auth = staff_token(settings, staff_id, world.municipality, "operator", None)
    caller = {"voucher": voucher(21), "birth_date": BIRTH.isoformat()}
    async with running(settings) as (_, client):
        held = await client.post(
            "/api/operator/holds", json={**caller, "slot_id": first}, headers=auth
        )
        done = await client.post(
            "/api/operator/bookings",
            json={"voucher": caller["voucher"], "hold_id": held.json()["hold_id"]},
            headers=auth,
        )
        assert done.status_code == 201, done.text
        booking_id = done.json()["booking"]["booking_id"]

        # Dose 1 is booked: a second dose-1 hold is refused and names the booking to change.
        again = await client.post(
            "/api/operator/holds", json={**caller, "slot_id": last_place}, headers=auth
        )
        assert again.status_code == 409 and code(again) == "already_booked", again.text
        assert again.json()["error"]["detail"] == {"booking_id": booking_id}
        # ... and the last place is still there for someone else.
        found = await client.get(f"/api/operator/slots?event_id={world.event_id}", headers=auth)
        left = {s["slot_id"]: s["remaining"] for s in found.json()["slots"]}
        assert left[last_place] == 1
        other = await client.post(
            "/api/operator/holds",
            json={"voucher": voucher(22), "birth_date": BIRTH.isoformat(), "slot_id": last_place},
            headers=auth,
        )
        assert other.status_code == 201, other.text
        await client.post(
            "/api/operator/holds/release",
            json={"voucher": voucher(22), "hold_id": other.json()["hold_id"]},
            headers=auth,
        )

        # A change names the booking it moves: then the same dose may be held, and moved.
        not_theirs = await client.post(
            "/api/operator/holds",
            json={
                **caller,
                "slot_id": last_place,
                "replaces": "00000000-0000-4000-8000-000000000000",
            },
            headers=auth,
        )
        assert not_theirs.status_code == 404 and code(not_theirs) == "no_booking"
        moving = await client.post(
            "/api/operator/holds",
            json={**caller, "slot_id": last_place, "replaces": booking_id},
            headers=auth,
        )
        assert moving.status_code == 201, moving.text
        moved = await client.post(
            f"/api/operator/bookings/{booking_id}/change",
            json={"voucher": caller["voucher"], "hold_id": moving.json()["hold_id"]},
            headers=auth,
        )
        assert moved.status_code == 200, moved.text
    rows = await db.fetch(
        "SELECT slot_id::text, status::text FROM bookings WHERE voucher_number = $1 "
        "ORDER BY created_at",
        caller["voucher"],
    )
    assert [(r["slot_id"], r["status"]) for r in rows] == [
        (first, "cancelled"),
        (last_place, "confirmed"),
    ]


async def test_many_operators_holding_for_one_booked_caller_take_no_place(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """Twenty operators at once try to hold for a caller who already has the dose: none
    gets a hold, and every place is left for others."""
    async with db.acquire() as conn:
        staff_id, _ = await make_staff(conn, world.municipality, "operator")
        first = await make_slot(conn, world.clinic_id, world.event_id, 1)
        places = await make_slot(conn, world.clinic_id, world.event_id, 3, days=4)
    auth = staff_token(settings, staff_id, world.municipality, "operator", None)
    caller = {"voucher": voucher(23), "birth_date": BIRTH.isoformat()}
    async with running(settings) as (_, client):
        held = await client.post(
            "/api/operator/holds", json={**caller, "slot_id": first}, headers=auth
        )
        done = await client.post(
            "/api/operator/bookings",
            json={"voucher": caller["voucher"], "hold_id": held.json()["hold_id"]},
            headers=auth,
        )
        assert done.status_code == 201, done.text
        answers = await asyncio.gather(
            *(
                client.post("/api/operator/holds", json={**caller, "slot_id": places}, headers=auth)
                for _ in range(20)
            )
        )
        assert {(a.status_code, code(a)) for a in answers} == {(409, "already_booked")}
        found = await client.get(f"/api/operator/slots?event_id={world.event_id}", headers=auth)
        assert {s["slot_id"]: s["remaining"] for s in found.json()["slots"]}[places] == 3


async def test_guessing_a_callers_birth_date_by_phone_is_throttled_as_on_the_web(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """The phone is no way round the web's limit on failed identity checks per voucher:
    after ``throttle_voucher_limit`` wrong birth dates, even the right one waits (429), and
    another voucher is not affected."""
    async with db.acquire() as conn:
        staff_id, _ = await make_staff(conn, world.municipality, "operator")
        slot = await make_slot(conn, world.clinic_id, world.event_id, 5)
    auth = staff_token(settings, staff_id, world.municipality, "operator", None)
    target = voucher(31)
    async with running(settings) as (_, client):
        for day in range(1, settings.throttle_voucher_limit + 1):
            wrong = await client.post(
                "/api/operator/holds",
                json={"voucher": target, "birth_date": f"1960-01-{day:02d}", "slot_id": slot},
                headers=auth,
            )
            assert wrong.status_code == 403 and code(wrong) == "identity_refused"
        right = await client.post(
            "/api/operator/holds",
            json={"voucher": target, "birth_date": BIRTH.isoformat(), "slot_id": slot},
            headers=auth,
        )
        assert right.status_code == 429 and code(right) == "too_many_attempts"
        assert int(right.headers["retry-after"]) > 0
        other = await client.post(
            "/api/operator/holds",
            json={"voucher": voucher(32), "birth_date": BIRTH.isoformat(), "slot_id": slot},
            headers=auth,
        )
        assert other.status_code == 201, other.text
