"""The schema's own guards: no oversell and one active booking per resident and dose."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from machiai.seed_demo import DEMO_EVENT, DEMO_MUNICIPALITY, seed_demo


async def _a_slot(db: asyncpg.Pool) -> asyncpg.Record:
    async with db.acquire() as conn:
        await seed_demo(conn)
        row = await conn.fetchrow(
            "SELECT id, capacity, starts_at FROM slots WHERE event_id = $1 LIMIT 1", DEMO_EVENT
        )
    assert row is not None
    return row


async def test_check_constraint_refuses_oversell(db: asyncpg.Pool) -> None:
    slot = await _a_slot(db)
    with pytest.raises(asyncpg.CheckViolationError, match="slots_no_oversell"):
        await db.execute("UPDATE slots SET booked = capacity + 1 WHERE id = $1", slot["id"])


async def test_one_active_booking_per_resident_and_dose(db: asyncpg.Pool) -> None:
    slot = await _a_slot(db)
    insert = """
        INSERT INTO bookings (confirmation_code, slot_id, municipality_code, voucher_number,
                              dose_number, vaccine_code, slot_starts_at, channel, status,
                              cancelled_at)
        VALUES ($1, $2, $3, '1000000001', 1, 'comirnaty', $4, $5, $6, $7)
    """
    await db.execute(
        insert,
        uuid.uuid4().hex,
        slot["id"],
        DEMO_MUNICIPALITY,
        slot["starts_at"],
        "web",
        "confirmed",
        None,
    )
    with pytest.raises(asyncpg.UniqueViolationError, match="bookings_one_active_per_dose"):
        await db.execute(
            insert,
            uuid.uuid4().hex,
            slot["id"],
            DEMO_MUNICIPALITY,
            slot["starts_at"],
            "operator",
            "confirmed",
            None,
        )
    # A cancelled booking does not count as active.
    await db.execute("UPDATE bookings SET status = 'cancelled', cancelled_at = now()")
    await db.execute(
        insert,
        uuid.uuid4().hex,
        slot["id"],
        DEMO_MUNICIPALITY,
        slot["starts_at"],
        "operator",
        "confirmed",
        None,
    )


async def test_seed_demo_is_idempotent(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        first = await seed_demo(conn)
        second = await seed_demo(conn)
        residents = await conn.fetchval("SELECT count(*) FROM registry")
    assert first.slots == second.slots > 0
    assert residents == first.residents
    assert first.staff_passwords != second.staff_passwords
