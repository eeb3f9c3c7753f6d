"""Issue 15: the day-before reminders. One ``booking.reminder.due`` outbox row per confirmed
booking of the next day (Japan time), per municipality and day, however often and from
however many processes the job runs; ``machiai remind`` and booking's daily trigger."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from booking.services import reminders
from booking.services.confirm import cancel_booking
from booking.services.context import Ctx
from booking.services.inventory import rebuild_inventory
from booking.settings import BookingSettings, reminder_at
from booking.store.pg_reminders import JST, TOPIC
from machiai.config import SettingsError
from tests.booking.factory import World, make_slot
from tests.booking.helpers import book, resident, web


async def seeded(ctx: Ctx, db: asyncpg.Pool, world: World) -> date:
    """Bookings around one day: confirmed and cancelled ones on it, others on the day
    after it, one of the other municipality on it. Returns the run day (the day before)."""
    async with db.acquire() as conn:
        near = [await make_slot(conn, world.clinic_id, world.event_id, 5, days=2) for _ in "ab"]
        far = await make_slot(conn, world.clinic_id, world.event_id, 5, days=5)
        other = await make_slot(conn, world.other_clinic_id, world.other_event_id, 5, days=2)
        made_at = await conn.fetchval("SELECT starts_at FROM slots WHERE id = $1::uuid", near[0])
        # Every "near" slot at 10:00 on one Japan day (make_slot spreads starts by minutes).
        local = made_at.astimezone(JST)
        starts = datetime(local.year, local.month, local.day, 10, tzinfo=JST)
        for i, slot_id in enumerate([*near, other]):
            await conn.execute(
                "UPDATE slots SET starts_at = $2 WHERE id = $1::uuid",
                slot_id,
                starts + timedelta(minutes=i),
            )
    await rebuild_inventory(ctx)
    actor = web(world.municipality, world.event_id)
    made = []
    for n in range(1, 7):
        made.append(await book(ctx, actor, resident(world.municipality, n), near[n % 2]))
    await book(ctx, actor, resident(world.municipality, 7), far)
    other_actor = web(world.other_municipality, world.other_event_id)
    await book(ctx, other_actor, resident(world.other_municipality, 1), other)
    gone = made[0]["booking"]["booking_id"]
    await cancel_booking(ctx, actor, gone, resident(world.municipality, 1).voucher)
    return starts.date() - timedelta(days=1)


async def expected(db: asyncpg.Pool, municipality: str, day: date) -> set[str]:
    """Confirmed bookings of ``municipality`` whose appointment is on ``day`` + 1, from the
    rows themselves (computed here, not assumed)."""
    rows = await db.fetch(
        "SELECT id::text, slot_starts_at FROM bookings "
        "WHERE municipality_code = $1 AND status = 'confirmed'",
        municipality,
    )
    return {
        r["id"] for r in rows if r["slot_starts_at"].astimezone(JST).date() == day + timedelta(1)
    }


async def reminded(db: asyncpg.Pool) -> list[dict[str, object]]:
    rows = await db.fetch("SELECT payload::text FROM outbox WHERE topic = $1 ORDER BY id", TOPIC)
    return [json.loads(r["payload"]) for r in rows]


async def test_one_reminder_per_confirmed_booking_of_the_next_day_and_a_second_run_writes_none(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    day = await seeded(ctx, db, world)
    want = await expected(db, world.municipality, day)
    assert len(want) == 5  # six booked on the day, one cancelled
    [done] = await reminders.remind(db, day, world.municipality)
    assert done.result.claimed and done.result.written == len(want)
    rows = await reminded(db)
    assert {str(p["booking_id"]) for p in rows} == want
    booking = rows[0]
    assert booking["municipality_code"] == world.municipality
    assert booking["status"] == "confirmed" and booking["confirmation_code"]
    assert {"clinic_name_ja", "starts_at", "dose_number", "slot_id"} <= set(booking)
    # Again (and for every municipality): this one's day was written, nothing twice.
    again = await reminders.remind(db, day)
    mine = [r for r in again if r.municipality == world.municipality]
    assert [(r.result.claimed, r.result.written) for r in mine] == [(False, 0)]
    theirs = [r for r in again if r.municipality == world.other_municipality]
    assert [(r.result.claimed, r.result.written) for r in theirs] == [(True, 1)]
    assert len(await reminded(db)) == len(want) + 1
    # The day before: nothing is due tomorrow (the bookings are two days out).
    [earlier] = await reminders.remind(db, day - timedelta(days=1), world.municipality)
    assert (earlier.result.claimed, earlier.result.written) == (True, 0)


async def test_concurrent_runs_write_each_reminder_once(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    day = await seeded(ctx, db, world)
    want = await expected(db, world.municipality, day)
    results = await asyncio.gather(
        *(reminders.remind_day(db, world.municipality, day) for _ in range(8))
    )
    assert sorted(r.claimed for r in results) == [False] * 7 + [True]
    assert sum(r.written for r in results) == len(want)
    payloads = await reminded(db)
    assert sorted(str(p["booking_id"]) for p in payloads) == sorted(want)
    assert await db.fetchval(
        "SELECT reminders FROM reminder_runs WHERE municipality_code = $1 AND day = $2",
        world.municipality,
        day,
    ) == len(want)


async def test_the_daily_trigger_runs_after_its_time_once_per_day(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    day = await seeded(ctx, db, world)
    at = 17 * 60
    before = datetime(day.year, day.month, day.day, 16, 59, tzinfo=JST)
    done: set[tuple[str, date]] = set()
    assert await reminders.remind_when_due(db, before.astimezone(UTC), at, done) == []
    assert await reminders.remind_when_due(db, before, None, done) == []  # off
    assert await reminded(db) == []
    after = before + timedelta(minutes=1)
    first = await reminders.remind_when_due(db, after, at, done)
    assert {r.municipality for r in first} == {world.municipality, world.other_municipality}
    count = len(await reminded(db))
    assert count == len(await expected(db, world.municipality, day)) + 1
    # Later the same day, another process (a fresh memory) finds the days written.
    assert await reminders.remind_when_due(db, after + timedelta(hours=2), at, set()) == []
    assert await reminders.remind_when_due(db, after + timedelta(hours=3), at, done) == []
    assert len(await reminded(db)) == count


def test_reminder_time_setting(env_vars: dict[str, str]) -> None:
    assert reminder_at("17:00") == 17 * 60
    assert reminder_at(" 08:05 ") == 8 * 60 + 5
    assert reminder_at("off") is None
    for bad in ("24:00", "7", "7:5", "seven", "１７:００", ""):
        with pytest.raises(SettingsError, match="BOOKING_REMINDER_AT"):
            reminder_at(bad)
    assert (
        BookingSettings.from_env({**env_vars, "BOOKING_REMINDER_AT": "08:30"}).reminder_at_min
        == 510
    )
    env = {**env_vars, "BOOKING_REMINDER_AT": "25:00"}
    with pytest.raises(SettingsError, match="BOOKING_REMINDER_AT"):
        BookingSettings.from_env(env)


async def test_machiai_remind_on_the_command_line(
    ctx: Ctx, db: asyncpg.Pool, world: World, database_url: str, tmp_path: object
) -> None:
    day = await seeded(ctx, db, world)
    want = await expected(db, world.municipality, day)
    env = {**os.environ, "DATABASE_URL": database_url, "MACHIAI_DATA_DIR": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "machiai.cli", "remind", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = await asyncio.to_thread(
        run, "--day", day.isoformat(), "--municipality", world.municipality
    )
    assert first.returncode == 0, first.stderr
    assert f"{world.municipality} {day}: {len(want)} reminders" in first.stdout
    again = await asyncio.to_thread(
        run, "--day", day.isoformat(), "--municipality", world.municipality
    )
    assert again.returncode == 0 and "written before" in again.stdout
    unknown = await asyncio.to_thread(run, "--municipality", "999999")
    assert unknown.returncode == 2 and "999999" in unknown.stderr
    assert len(await reminded(db)) == len(want)
