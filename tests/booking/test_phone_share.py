"""Promise "the phone keeps its share": web residents never take the places an event keeps
for its operators before the release; at the release they are the web's at once; the total
never exceeds capacity; Redis and Postgres agree throughout."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from booking import errors
from booking.domain import Actor, Channel
from booking.services.confirm import cancel_booking, confirm_booking
from booking.services.context import Ctx
from booking.services.hold import hold_slot
from booking.services.inventory import ensure_inventory, rebuild_inventory
from booking.settings import BookingSettings
from booking.store import keys, pg, pg_confirm
from tests.booking.client import open_session, running, staff_token
from tests.booking.factory import BIRTH, World, make_slot, make_staff, voucher
from tests.booking.helpers import book, counting_wire, operator, resident, web

PHONE = Channel.OPERATOR


async def keep_for_phone(
    db: asyncpg.Pool, event_id: str, pct: int, release_in_s: float | None = None
) -> datetime | None:
    """Keep ``pct`` % of every slot of the event for the phone, until ``release_in_s`` from
    now (Postgres's clock; None: until the event closes). Returns the release time."""
    released: datetime | None = await db.fetchval(
        "UPDATE events SET phone_share_pct = $2, phone_release_at = "
        "now() + make_interval(secs => $3::float8) WHERE id = $1 RETURNING phone_release_at",
        event_id,
        pct,
        release_in_s,
    )
    return released


async def pg_counts(db: asyncpg.Pool, slot_id: str) -> tuple[int, int, int]:
    """(booked, booked_phone, active operator bookings) in Postgres."""
    row = await db.fetchrow(
        "SELECT booked, booked_phone, (SELECT count(*) FROM bookings b WHERE b.slot_id = s.id "
        "AND b.status <> 'cancelled' AND b.channel = 'operator') AS phone_rows "
        "FROM slots s WHERE id = $1::uuid",
        slot_id,
    )
    assert row is not None
    return int(row["booked"]), int(row["booked_phone"]), int(row["phone_rows"])


async def redis_counts(ctx: Ctx, slot_id: str) -> tuple[int, int]:
    """(booked, phone) in Redis's mirror."""
    booked, phone = await ctx.redis.client.hmget(
        keys.slot_inventory(ctx.redis.prefix, slot_id), ["booked", "phone"]
    )
    assert booked is not None and phone is not None
    return int(booked), int(phone)


async def assert_agree(ctx: Ctx, db: asyncpg.Pool, slot_id: str) -> tuple[int, int]:
    """Postgres's counters match its rows and Redis's mirror; (booked, booked_phone)."""
    booked, booked_phone, phone_rows = await pg_counts(db, slot_id)
    assert booked_phone == phone_rows
    assert await redis_counts(ctx, slot_id) == (booked, booked_phone)
    return booked, booked_phone


async def attempt(ctx: Ctx, actor: Actor, n: int, slot_id: str) -> str:
    """Hold and confirm: "ok", the hold's refusal, or "confirm:" and the confirm's (Redis
    refuses first: a hold it grants, Postgres books)."""
    who = resident(actor.municipality, n)
    try:
        held = await hold_slot(ctx, actor, who, slot_id)
    except errors.AppError as exc:
        return exc.code
    try:
        await confirm_booking(ctx, actor, who, held.hold_id)
    except errors.AppError as exc:
        return f"confirm:{exc.code}"
    return "ok"


def request(world: World, slot_id: str, n: int, channel: Channel) -> pg_confirm.BookRequest:
    return pg_confirm.BookRequest(
        slot_id=uuid.UUID(slot_id),
        municipality=world.municipality,
        voucher=f"{2_000_000_000 + n:010d}",
        channel=channel.value,
        actor_kind="resident" if channel is Channel.WEB else "staff",
        actor_id="t",
        staff_id=None,
        replaces=None,
        idem=None,
    )


async def pg_book(db: asyncpg.Pool, req: pg_confirm.BookRequest) -> str:
    """The booking statement alone (no Redis in front): "ok" or the refusal's code."""
    try:
        async with db.acquire() as conn:
            await pg_confirm.book(conn, req, 10_000)
        return "ok"
    except errors.AppError as exc:
        return exc.code


@pytest.mark.slow
async def test_web_residents_racing_operators_never_take_the_phone_share(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """10 places, 30 % kept: 100 web residents and 20 operator callers through hold and
    confirm at once. The web gets at most its 7, operators fill the rest, 10 in all.
    One slot sees the web surge arrive first (without the share it would take all 10),
    the other a shuffled crowd."""
    async with db.acquire() as conn:
        surge = await make_slot(conn, world.clinic_id, world.event_id, 10)
        mixed = await make_slot(conn, world.clinic_id, world.event_id, 10, days=4)
    await keep_for_phone(db, world.event_id, 30)
    await rebuild_inventory(ctx)
    residents, phone = web(world.municipality, world.event_id), operator(world.municipality)

    def crowd(slot_id: str, base: int) -> list[tuple[Channel, Coroutine[Any, Any, str]]]:
        return [(Channel.WEB, attempt(ctx, residents, base + n, slot_id)) for n in range(100)] + [
            (PHONE, attempt(ctx, phone, base + 100 + n, slot_id)) for n in range(20)
        ]

    first = crowd(surge, 0)
    first = first[:50] + first[100:] + first[50:100]  # web, then the calls, then more web
    second = crowd(mixed, 1000)
    random.Random(18).shuffle(second)
    calls = first + second
    results = await asyncio.gather(*(c for _, c in calls))
    assert set(results) <= {"ok", "slot_full"}
    for slot_id, part in ((surge, slice(0, 120)), (mixed, slice(120, 240))):
        got = list(zip([ch for ch, _ in calls[part]], results[part], strict=True))
        web_ok = sum(1 for ch, r in got if ch is Channel.WEB and r == "ok")
        phone_ok = sum(1 for ch, r in got if ch is PHONE and r == "ok")
        assert web_ok <= 7 and web_ok + phone_ok == 10, (web_ok, phone_ok)
        assert await assert_agree(ctx, db, slot_id) == (10, phone_ok)
        assert await ctx.redis.slot_left([slot_id]) == {slot_id: 0}
        assert await ctx.redis.slot_left([slot_id], PHONE) == {slot_id: 0}


@pytest.mark.slow
async def test_postgres_guard_alone_keeps_the_phone_share(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """The booking statement with no Redis in front: the web surge first, operators among
    it; the web gets at most 7 of 10, the total is exactly 10."""
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 10)
    await keep_for_phone(db, world.event_id, 30)
    reqs = [request(world, sid, n, Channel.WEB) for n in range(100)]
    reqs = reqs[:50] + [request(world, sid, 100 + n, PHONE) for n in range(20)] + reqs[50:]
    results = await asyncio.gather(*(pg_book(db, r) for r in reqs))
    assert set(results) == {"ok", "slot_full"}
    web_ok = sum(1 for q, r in zip(reqs, results, strict=True) if q.channel == "web" and r == "ok")
    phone_ok = results.count("ok") - web_ok
    assert web_ok <= 7 and web_ok + phone_ok == 10, (web_ok, phone_ok)
    assert await pg_counts(db, sid) == (10, phone_ok, phone_ok)


@pytest.mark.slow
async def test_at_the_release_time_the_kept_places_are_the_webs_at_once(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """Before: the web is refused (Redis and Postgres) while kept places remain, and is not
    counted them; from the release time on, with nothing run in between, it books them."""
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 4)
    release = await keep_for_phone(db, world.event_id, 50, release_in_s=2.0)
    assert release is not None
    await rebuild_inventory(ctx)
    residents = web(world.municipality, world.event_id)
    assert [await attempt(ctx, residents, n, sid) for n in range(3)] == ["ok", "ok", "slot_full"]
    assert await pg_book(db, request(world, sid, 3, Channel.WEB)) == "slot_full"
    assert await ctx.redis.slot_left([sid]) == {sid: 0}
    assert await ctx.redis.slot_left([sid], PHONE) == {sid: 2}
    async with db.acquire() as conn:
        assert (await pg.event_remaining(conn))[world.event_id] == 0
        assert [d["remaining"] for d in await pg.public_summary(conn, world.event_id)] == [0]
    assert await assert_agree(ctx, db, sid) == (2, 0)

    await asyncio.sleep(max(0.0, release.timestamp() - datetime.now().timestamp()) + 0.05)
    # No job ran: Redis compares its clock with the release it was given, Postgres its own.
    assert await ctx.redis.slot_left([sid]) == {sid: 2}
    async with db.acquire() as conn:
        assert (await pg.event_remaining(conn))[world.event_id] == 2
        assert [d["remaining"] for d in await pg.public_summary(conn, world.event_id)] == [2]
    # Both confirmed by Postgres too: it had released them as well.
    assert [await attempt(ctx, residents, n, sid) for n in (4, 5, 6)] == ["ok", "ok", "slot_full"]
    async with db.acquire() as conn:
        assert (await pg.event_remaining(conn))[world.event_id] == 0
    assert await assert_agree(ctx, db, sid) == (4, 0)


async def test_a_changed_share_reaches_redis_at_the_next_refresh(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """An administrator sets a share, then releases it early (the release time moved into
    the past): Postgres applies each at once, Redis at its next refresh (one round trip
    when nothing changed)."""
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 4)
    await rebuild_inventory(ctx)
    counting = counting_wire(ctx.redis.client)
    await ctx.redis.wire.aclose()
    ctx.redis.wire = counting
    assert not await ensure_inventory(ctx)
    assert counting.trips == 1  # the epoch and the shares, nothing to mirror
    assert not ctx.inventory_changed.is_set()

    await keep_for_phone(db, world.event_id, 50)
    assert not await ensure_inventory(ctx)
    assert ctx.inventory_changed.is_set()
    # Mirrored before anyone books (the slot's version was bumped by the change).
    assert await ctx.redis.slot_left([sid]) == {sid: 2}
    residents = web(world.municipality, world.event_id)
    assert [await attempt(ctx, residents, n, sid) for n in range(3)] == ["ok", "ok", "slot_full"]

    await db.execute(
        "UPDATE events SET phone_release_at = now() - interval '1 second' WHERE id = $1",
        world.event_id,
    )
    counting.trips = 0
    assert not await ensure_inventory(ctx)
    assert counting.trips == 3  # look, mirror the event's slots, record the share
    assert await ctx.redis.slot_left([sid]) == {sid: 2}
    assert await pg_book(db, request(world, sid, 3, Channel.WEB)) == "ok"
    assert await attempt(ctx, residents, 4, sid) == "ok"
    assert await assert_agree(ctx, db, sid) == (4, 0)


async def test_change_and_cancel_give_the_place_back_to_its_pool(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """booked_phone follows the booking's channel, whoever cancels or changes it: an
    operator cancelling a web booking, a resident cancelling one an operator made, and
    changes across the two channels."""
    async with db.acquire() as conn:
        one = await make_slot(conn, world.clinic_id, world.event_id, 5)
        two = await make_slot(conn, world.clinic_id, world.event_id, 5, days=4)
    await keep_for_phone(db, world.event_id, 40)
    await rebuild_inventory(ctx)
    residents, phone = web(world.municipality, world.event_id), operator(world.municipality)
    by_phone = (await book(ctx, phone, resident(world.municipality, 1), one))["booking"]
    by_web = (await book(ctx, residents, resident(world.municipality, 2), one))["booking"]
    assert await assert_agree(ctx, db, one) == (2, 1)

    await cancel_booking(ctx, phone, by_web["booking_id"], None)
    assert await assert_agree(ctx, db, one) == (1, 1)
    await cancel_booking(ctx, residents, by_phone["booking_id"], voucher(1))
    assert await assert_agree(ctx, db, one) == (0, 0)

    who = resident(world.municipality, 3)
    first = (await book(ctx, residents, who, one))["booking"]
    # An operator moves the caller's web booking: the new one is the operator's.
    held = await hold_slot(ctx, phone, who, two)
    moved = await confirm_booking(ctx, phone, who, held.hold_id, replaces=first["booking_id"])
    assert moved["booking"]["channel"] == "operator"
    assert await assert_agree(ctx, db, one) == (0, 0)
    assert await assert_agree(ctx, db, two) == (1, 1)
    # The resident moves it back on the web.
    held = await hold_slot(ctx, residents, who, one)
    await confirm_booking(
        ctx, residents, who, held.hold_id, replaces=moved["booking"]["booking_id"]
    )
    assert await assert_agree(ctx, db, two) == (0, 0)
    assert await assert_agree(ctx, db, one) == (1, 0)

    # The schema keeps the counter honest whatever a statement does.
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE slots SET booked_phone = booked + 1 WHERE id = $1::uuid", one)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE slots SET booked_phone = -1 WHERE id = $1::uuid", one)


async def test_residents_are_shown_the_web_pool_and_operators_every_place(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 10)
        staff_id, _ = await make_staff(conn, world.municipality, "operator")
    await keep_for_phone(db, world.event_id, 30)
    staff = staff_token(settings, staff_id, world.municipality, "operator", None)

    async with running(settings) as (_, client):
        session = await open_session(client, settings, world.event_id, voucher(1), "1950-04-01")

        async def shown() -> tuple[list[int], list[int]]:
            await asyncio.sleep(1.05)  # past the searches' shared counts
            mine = (await client.get("/api/slots", headers=session)).json()["slots"]
            ops = await client.get(f"/api/operator/slots?event_id={world.event_id}", headers=staff)
            return [s["remaining"] for s in mine], [s["remaining"] for s in ops.json()["slots"]]

        assert await shown() == ([7], [10])
        held = await client.post("/api/holds", json={"slot_id": sid}, headers=session)
        assert held.status_code == 201 and held.json()["remaining"] == 6
        caller = {"voucher": voucher(2), "birth_date": BIRTH.isoformat()}
        by_phone = await client.post(
            "/api/operator/holds", json={**caller, "slot_id": sid}, headers=staff
        )
        assert by_phone.status_code == 201 and by_phone.json()["remaining"] == 8
        assert await shown() == ([6], [8])
