"""The resident flow over HTTP: session → search → hold → confirm → my booking → cancel/change."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import asyncpg
import pytest
import redis.asyncio as aioredis

from booking.domain import Resident
from booking.services import availability
from booking.services.inventory import load_slot
from booking.settings import BookingSettings
from booking.store import keys
from machiai import keys as shared_keys
from machiai.client_address import parse_trusted_proxies
from tests.booking.client import code, mint_pass, open_session, running
from tests.booking.factory import BIRTH, World, make_slot, voucher
from tests.booking.helpers import command_stats, counting_wire


async def test_resident_books_and_cancels(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        slot = await make_slot(conn, world.clinic_id, world.event_id, 2)
    async with running(settings) as (_, client):
        auth = await open_session(client, settings, world.event_id, voucher(1), BIRTH.isoformat())
        found = (await client.get("/api/slots", headers=auth)).json()["slots"]
        assert [s["remaining"] for s in found if s["slot_id"] == slot] == [2]
        r = await client.post("/api/holds", json={"slot_id": slot}, headers=auth)
        assert r.status_code == 201, r.text
        hold_id = r.json()["hold_id"]
        assert r.json()["remaining"] == 1
        idem = {**auth, "Idempotency-Key": "k-" + uuid.uuid4().hex}
        first = await client.post("/api/bookings", json={"hold_id": hold_id}, headers=idem)
        assert first.status_code == 201, first.text
        again = await client.post("/api/bookings", json={"hold_id": hold_id}, headers=idem)
        assert again.status_code == 201 and again.json() == first.json()
        other = await client.post(
            "/api/bookings", json={"hold_id": f"{slot}.{'0' * 32}"}, headers=idem
        )
        assert other.status_code == 422 and code(other) == "idempotency_key_reused"
        booking = first.json()["booking"]
        assert len(booking["confirmation_code"]) == 8 and booking["channel"] == "web"
        mine = (await client.get("/api/bookings", headers=auth)).json()
        assert [b["booking_id"] for b in mine["bookings"]] == [booking["booking_id"]]
        assert mine["hold"] is None
        # A second booking for the same dose is refused in Postgres.
        r = await client.post("/api/holds", json={"slot_id": slot}, headers=auth)
        dup = await client.post(
            "/api/bookings", json={"hold_id": r.json()["hold_id"]}, headers=auth
        )
        assert dup.status_code == 409 and code(dup) == "already_booked"
        cancel = await client.post(f"/api/bookings/{booking['booking_id']}/cancel", headers=auth)
        assert cancel.status_code == 200 and cancel.json()["booking"]["status"] == "cancelled"
        again_cancel = await client.post(
            f"/api/bookings/{booking['booking_id']}/cancel", headers=auth
        )
        assert code(again_cancel) == "booking_state"
        found = (await client.get("/api/slots", headers=auth)).json()["slots"]
        assert [s["remaining"] for s in found if s["slot_id"] == slot] == [2]
    assert await db.fetchval("SELECT booked FROM slots WHERE id = $1::uuid", slot) == 0
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["booking.booking.confirmed", "booking.booking.cancelled"]
    assert await db.fetchval("SELECT count(*) FROM outbox") == 2


async def test_pass_opens_one_session_and_identity_has_no_oracle(
    settings: BookingSettings, world: World, redis: aioredis.Redis, redis_prefix: str
) -> None:
    async with running(settings) as (_, client):
        token = mint_pass(settings, world.event_id)
        refusals = []
        for v, born in (
            ("9999999999", BIRTH.isoformat()),  # unknown voucher
            (voucher(2), "1960-01-01"),  # wrong birth date
            (voucher(900_000), BIRTH.isoformat()),  # ineligible group
        ):
            r = await client.post(
                "/api/sessions",
                json={"pass": token, "voucher": v, "birth_date": born},
                headers={"Accept-Language": "en"},
            )
            refusals.append((r.status_code, r.json()))
        assert len({str(x) for x in refusals}) == 1 and refusals[0][0] == 403
        assert refusals[0][1]["error"]["code"] == "identity_refused"
        assert "verified" in refusals[0][1]["error"]["message"]
        ok = await client.post(
            "/api/sessions",
            json={"pass": token, "voucher": voucher(2), "birth_date": BIRTH.isoformat()},
        )
        assert ok.status_code == 201
        used = await client.post(
            "/api/sessions",
            json={"pass": token, "voucher": voucher(3), "birth_date": BIRTH.isoformat()},
        )
        assert used.status_code == 409 and code(used) == "pass_used"
        assert "入場券" in used.json()["error"]["message"]
        assert await redis.zcard(shared_keys.booking_sessions(redis_prefix, world.event_id)) == 1
        bad = await client.post(
            "/api/sessions",
            json={"pass": token + "x", "voucher": voucher(3), "birth_date": BIRTH.isoformat()},
        )
        assert code(bad) == "pass_invalid"
        auth = {"Authorization": f"Bearer {ok.json()['session']}"}
        assert (await client.get("/api/bookings", headers=auth)).status_code == 200
        assert (await client.delete("/api/sessions", headers=auth)).status_code == 200
        ended = await client.get("/api/bookings", headers=auth)
        assert ended.status_code == 401 and code(ended) == "session_expired"


async def test_identity_attempts_are_throttled(settings: BookingSettings, world: World) -> None:
    async with running(settings) as (_, client):
        statuses = []
        for _ in range(settings.throttle_voucher_limit + 1):
            r = await client.post(
                "/api/sessions",
                json={
                    "pass": mint_pass(settings, world.event_id),
                    "voucher": voucher(4),
                    "birth_date": "1999-01-01",
                },
            )
            statuses.append(r.status_code)
        assert statuses[-1] == 429 and int(r.headers["Retry-After"]) >= 1
        assert statuses[:-1] == [403] * settings.throttle_voucher_limit
        # Even the right birth date is refused while throttled: no guessing through it.
        r = await client.post(
            "/api/sessions",
            json={
                "pass": mint_pass(settings, world.event_id),
                "voucher": voucher(4),
                "birth_date": BIRTH.isoformat(),
            },
        )
        assert r.status_code == 429
        for _ in range(settings.throttle_client_limit):
            r = await client.post(
                "/api/sessions",
                json={
                    "pass": mint_pass(settings, world.event_id),
                    "voucher": voucher(5),
                    "birth_date": BIRTH.isoformat(),
                },
            )
        assert r.status_code == 429 and code(r) == "too_many_attempts"


# The test client's peer (192.0.2.10) stands for the proxy in front, 10.0.0.1 for the LB.
PROXIES = parse_trusted_proxies("BOOKING_TRUSTED_PROXIES", "192.0.2.10, 10.0.0.0/8")


async def test_client_throttle_trusts_forwarded_only_when_told(
    settings: BookingSettings, world: World
) -> None:
    """Behind a load balancer residents differ only by X-Forwarded-For; a spoofed header
    must not buy extra attempts from a service that was not told to trust its peer."""

    async def attempts(s: BookingSettings, addresses: list[str]) -> list[int]:
        async with running(s) as (_, client):
            return [
                (
                    await client.post(
                        "/api/staff/login",
                        json={"login": "nobody", "password": "wrong"},
                        headers={"X-Forwarded-For": f"{address}, 10.0.0.1"},
                    )
                ).status_code
                for address in addresses
            ]

    small = replace(settings, throttle_client_limit=2)
    spoofed = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
    assert await attempts(small, spoofed) == [401, 401, 429]
    trusted = replace(small, trusted_proxies=PROXIES)
    # Fresh addresses each get their own budget; one address still runs out of it.
    assert await attempts(trusted, ["203.0.113.1", "203.0.113.2", "203.0.113.3"]) == [401] * 3
    assert await attempts(trusted, ["203.0.113.9"] * 3) == [401, 401, 429]


async def test_made_up_forwarded_for_entries_buy_no_staff_logins(
    settings: BookingSettings,
) -> None:
    """Issue 16: eight wrong staff logins through the trusted proxies, each with a new
    made-up first X-Forwarded-For entry, are one client (the address the LB saw) and are
    throttled once the budget is spent."""
    behind_proxies = replace(settings, throttle_client_limit=5, trusted_proxies=PROXIES)
    async with running(behind_proxies) as (_, client):
        statuses = [
            (
                await client.post(
                    "/api/staff/login",
                    json={"login": "nobody", "password": "wrong"},
                    headers={"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.50, 10.0.0.1"},
                )
            ).status_code
            for i in range(8)
        ]
    assert statuses == [401] * 5 + [429] * 3


async def test_hold_rules_change_and_dose_rules(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        a = await make_slot(conn, world.clinic_id, world.event_id, 3, days=2)
        b = await make_slot(conn, world.clinic_id, world.event_id, 3, days=4)
        dose2_soon = await make_slot(conn, world.clinic_id, world.event_id, 3, days=10, dose=2)
        dose2_late = await make_slot(conn, world.clinic_id, world.event_id, 3, days=30, dose=2)
        closed = await make_slot(conn, world.clinic_id, world.event_id, 3, closed=True)
    async with running(settings) as (_, client):
        auth = await open_session(client, settings, world.event_id, voucher(6), BIRTH.isoformat())
        early = await client.post("/api/holds", json={"slot_id": dose2_late}, headers=auth)
        rule = await client.post(
            "/api/bookings", json={"hold_id": early.json()["hold_id"]}, headers=auth
        )
        assert code(rule) == "dose_rule"
        assert code(await client.post("/api/holds", json={"slot_id": closed}, headers=auth)) == (
            "slot_closed"
        )
        h1 = (await client.post("/api/holds", json={"slot_id": a}, headers=auth)).json()
        exists = await client.post("/api/holds", json={"slot_id": b}, headers=auth)
        assert code(exists) == "hold_exists"
        assert exists.json()["error"]["detail"]["hold_id"] == h1["hold_id"]
        first = await client.post("/api/bookings", json={"hold_id": h1["hold_id"]}, headers=auth)
        booking_id = first.json()["booking"]["booking_id"]
        soon = (await client.post("/api/holds", json={"slot_id": dose2_soon}, headers=auth)).json()
        too_soon = await client.post(
            "/api/bookings", json={"hold_id": soon["hold_id"]}, headers=auth
        )
        assert code(too_soon) == "dose_rule"
        # Change: the new slot is held first, then one transaction moves the booking.
        h2 = (await client.post("/api/holds", json={"slot_id": b}, headers=auth)).json()
        moved = await client.post(
            f"/api/bookings/{booking_id}/change", json={"hold_id": h2["hold_id"]}, headers=auth
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["booking"]["slot_id"] == b
        late = (await client.post("/api/holds", json={"slot_id": dose2_late}, headers=auth)).json()
        second = await client.post("/api/bookings", json={"hold_id": late["hold_id"]}, headers=auth)
        assert second.status_code == 201 and second.json()["booking"]["dose_number"] == 2
        first_booking = moved.json()["booking"]["booking_id"]
        blocked = await client.post(f"/api/bookings/{first_booking}/cancel", headers=auth)
        assert code(blocked) == "dose_rule"
        h3 = (await client.post("/api/holds", json={"slot_id": a}, headers=auth)).json()
        assert (await client.delete(f"/api/holds/{h3['hold_id']}", headers=auth)).status_code == 200
        gone = await client.delete(f"/api/holds/{h3['hold_id']}", headers=auth)
        assert code(gone) == "hold_expired"
    rows = await db.fetch(
        "SELECT slot_id::text, status::text FROM bookings WHERE voucher_number = $1 "
        "ORDER BY created_at",
        voucher(6),
    )
    assert [(r["slot_id"], r["status"]) for r in rows] == [
        (a, "cancelled"),
        (b, "confirmed"),
        (dose2_late, "confirmed"),
    ]
    counts = {
        r["id"]: r["booked"]
        for r in await db.fetch(
            "SELECT id::text, booked FROM slots WHERE id = ANY($1::uuid[])", [a, b, dose2_soon]
        )
    }
    assert counts == {a: 0, b: 1, dose2_soon: 0}


async def test_window_and_past_enforced_by_server(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    async with db.acquire() as conn:
        later = await make_slot(
            conn, world.clinic_id, world.event_id, 3, publish_from=now + timedelta(days=1)
        )
        over = await make_slot(
            conn,
            world.clinic_id,
            world.event_id,
            3,
            publish_from=now - timedelta(days=2),
            publish_until=now - timedelta(days=1),
        )
        past = await make_slot(conn, world.clinic_id, world.event_id, 3, days=-1)
    async with running(settings) as (_, client):
        auth = await open_session(client, settings, world.event_id, voucher(7), BIRTH.isoformat())
        for sid in (later, over, past):
            r = await client.post("/api/holds", json={"slot_id": sid}, headers=auth)
            assert r.status_code == 409 and code(r) == "slot_not_bookable", r.text
        other_tenant = await client.post(
            "/api/holds", json={"slot_id": str(uuid.uuid4())}, headers=auth
        )
        assert other_tenant.status_code == 404
    assert await db.fetchval("SELECT count(*) FROM bookings") == 0


async def test_session_ended_by_another_process_is_refused_after_recheck(
    settings: BookingSettings, world: World, redis: aioredis.Redis, redis_prefix: str
) -> None:
    async with running(settings) as (app, client):
        auth = await open_session(client, settings, world.event_id, voucher(12), BIRTH.isoformat())
        assert (await client.get("/api/bookings", headers=auth)).status_code == 200
        # Another booking process ends it: the shared ZSET loses the member.
        await redis.delete(shared_keys.booking_sessions(redis_prefix, world.event_id))
        # This process trusted the session for at most SESSION_RECHECK_S; when that lapses:
        for session_id in list(app.state.ctx.live_sessions):
            app.state.ctx.live_sessions[session_id] = 0.0
        r = await client.get("/api/bookings", headers=auth)
        assert r.status_code == 401 and code(r) == "session_expired"


async def test_a_token_once_verified_does_not_vouch_for_a_tampered_one(
    settings: BookingSettings, world: World
) -> None:
    """The signature check is skipped only for the very string that passed it."""
    async with running(settings) as (app, client):
        auth = await open_session(client, settings, world.event_id, voucher(24), BIRTH.isoformat())
        assert (await client.get("/api/bookings", headers=auth)).status_code == 200
        token = auth["Authorization"].removeprefix("Bearer ")
        assert set(app.state.ctx.verified_tokens) == {token}  # minted here: trusted
        payload, _, signed = token.partition(".")
        other = await open_session(client, settings, world.event_id, voucher(25), BIRTH.isoformat())
        other_payload = other["Authorization"].removeprefix("Bearer ").partition(".")[0]
        trusted = dict(app.state.ctx.verified_tokens)
        # The MAC's first character: all its bits count (the last one's low bits do not).
        stamp, _, mac = signed.partition(".")
        flipped = f"{stamp}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"
        for forged in (f"{payload}.{flipped}", f"{other_payload}.{signed}", token + "x"):
            r = await client.post(
                "/api/holds",
                json={"slot_id": str(uuid.uuid4())},
                headers={"Authorization": f"Bearer {forged}"},
            )
            assert r.status_code == 401 and code(r) == "session_expired", (forged, r.text)
        assert app.state.ctx.verified_tokens == trusted
        # Another worker process knows neither: it checks the signature and Redis itself.
        app.state.ctx.verified_tokens.clear()
        app.state.ctx.live_sessions.clear()
        assert (await client.get("/api/bookings", headers=auth)).status_code == 200
        assert set(app.state.ctx.verified_tokens) == {token}


async def test_hold_and_confirm_check_the_session_in_their_own_first_round_trip(
    settings: BookingSettings,
    db: asyncpg.Pool,
    world: World,
    redis: aioredis.Redis,
    redis_prefix: str,
) -> None:
    """A due liveness check rides with the pointer claim (hold) and the hold claim
    (confirm); a session ended elsewhere still holds and books nothing."""
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 2)
    sessions_key = shared_keys.booking_sessions(redis_prefix, world.event_id)
    async with running(settings) as (app, client):
        ctx = app.state.ctx
        counting = counting_wire(redis)
        await ctx.redis.wire.aclose()
        ctx.redis.wire = counting

        def forget() -> None:  # as after SESSION_RECHECK_S: the next request asks Redis
            for session_id in list(ctx.live_sessions):
                ctx.live_sessions[session_id] = 0.0

        auth = await open_session(client, settings, world.event_id, voucher(21), BIRTH.isoformat())
        assert await load_slot(ctx, sid)  # mirrored in Redis before counting
        await ctx.redis.load_scripts()  # as after start, whatever ran before in this Redis
        forget()
        counting.trips = 0
        held = await client.post("/api/holds", json={"slot_id": sid}, headers=auth)
        assert held.status_code == 201, held.text
        assert counting.trips == 1  # session + pointer + slot, one pipeline
        forget()
        counting.trips = 0
        booked = await client.post(
            "/api/bookings", json={"hold_id": held.json()["hold_id"]}, headers=auth
        )
        assert booked.status_code == 201, booked.text
        assert counting.trips == 2  # (session + hold claim), tidy-up

        # Ended by another process: refused at the next check, and nothing is left behind.
        other = await open_session(client, settings, world.event_id, voucher(22), BIRTH.isoformat())
        held = await client.post("/api/holds", json={"slot_id": sid}, headers=other)
        assert held.status_code == 201, held.text
        await redis.delete(sessions_key)
        forget()
        r = await client.post(
            "/api/bookings", json={"hold_id": held.json()["hold_id"]}, headers=other
        )
        assert r.status_code == 401 and code(r) == "session_expired", r.text
        r = await client.post("/api/holds", json={"slot_id": sid}, headers=other)
        assert r.status_code == 401 and code(r) == "session_expired", r.text
        third = await open_session(client, settings, world.event_id, voucher(23), BIRTH.isoformat())
        await redis.delete(sessions_key)
        forget()
        r = await client.post("/api/holds", json={"slot_id": sid}, headers=third)
        assert r.status_code == 401 and code(r) == "session_expired", r.text
        pointer = await ctx.redis.resident_hold(Resident(world.municipality, voucher(23)))
        assert pointer is None  # the pointer claimed alongside the check was given back
        holders = await redis.zrange(keys.slot_holds(redis_prefix, sid), 0, -1)
        assert [m for m in holders if voucher(23) in str(m)] == []  # and the place
        await counting.aclose()
    assert await db.fetchval("SELECT count(*) FROM bookings") == 1


async def test_searches_at_once_share_one_read_of_the_counts(
    settings: BookingSettings, db: asyncpg.Pool, world: World, redis: aioredis.Redis
) -> None:
    """At opening every admitted resident searches the same slots: the counts are read from
    Redis once per interval and shared, not once per search; a count shown is a guide only
    (the hold still decides)."""
    async with db.acquire() as conn:
        slots = [await make_slot(conn, world.clinic_id, world.event_id, 2) for _ in range(5)]
    async with running(settings) as (_, client):
        auth = await open_session(client, settings, world.event_id, voucher(3), BIRTH.isoformat())
        await client.get("/api/slots", headers=auth)  # the slot list itself is cached too
        before = await command_stats(redis)
        responses = await asyncio.gather(
            *[client.get("/api/slots", headers=auth) for _ in range(20)]
        )
        after = await command_stats(redis)
    assert all(r.status_code == 200 for r in responses)
    for r in responses:
        assert sorted(s["remaining"] for s in r.json()["slots"]) == [2] * len(slots)
    calls = after.get("cmdstat_hmget", {}).get("calls", 0) - before.get("cmdstat_hmget", {}).get(
        "calls", 0
    )
    # One read of each slot at most (two if the interval turned over during the burst).
    assert calls <= 2 * len(slots)


async def test_search_lists_slots_with_places_left_soonest_first(
    settings: BookingSettings,
    db: asyncpg.Pool,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Full slots are left out before the list is cut, so later free slots are never hidden
    behind a page of full ones; a cut list says there is more."""
    monkeypatch.setattr(availability, "MAX_RESULTS", 2)
    async with db.acquire() as conn:
        slots = [
            await make_slot(conn, world.clinic_id, world.event_id, 1, days=3 + 2 * n)
            for n in range(4)
        ]
        last_day = await conn.fetchval(
            "SELECT (starts_at AT TIME ZONE 'Asia/Tokyo')::date FROM slots WHERE id = $1::uuid",
            slots[3],
        )
    async with running(settings) as (_, client):
        first = await open_session(client, settings, world.event_id, voucher(4), BIRTH.isoformat())
        held = await client.post("/api/holds", json={"slot_id": slots[0]}, headers=first)
        assert held.status_code == 201, held.text
        booked = await client.post(
            "/api/bookings", json={"hold_id": held.json()["hold_id"]}, headers=first
        )
        assert booked.status_code == 201, booked.text
        second = await open_session(client, settings, world.event_id, voucher(5), BIRTH.isoformat())
        found = (await client.get("/api/slots", headers=second)).json()
        assert [s["slot_id"] for s in found["slots"]] == slots[1:3]
        assert found["more"] is True
        narrowed = await client.get(
            "/api/slots", params={"date": last_day.isoformat()}, headers=second
        )
        assert [s["slot_id"] for s in narrowed.json()["slots"]] == [slots[3]]
        assert narrowed.json()["more"] is False


async def test_a_second_hold_is_refused_and_takes_no_place_even_for_a_moment_after(
    settings: BookingSettings,
    db: asyncpg.Pool,
    world: World,
    redis: aioredis.Redis,
    redis_prefix: str,
) -> None:
    """The pointer and the slot hold travel together; a refused pointer gives its slot
    hold back before the answer, so a resident racing holds on many slots ends with one
    hold and every other place free."""
    async with db.acquire() as conn:
        slots = [await make_slot(conn, world.clinic_id, world.event_id, 1) for _ in range(8)]
    async with running(settings) as (_, client):
        auth = await open_session(client, settings, world.event_id, voucher(31), BIRTH.isoformat())
        responses = await asyncio.gather(
            *[client.post("/api/holds", json={"slot_id": sid}, headers=auth) for sid in slots * 5]
        )
        won = [r for r in responses if r.status_code == 201]
        assert len(won) == 1, [r.text for r in responses if r.status_code != 409]
        assert all(code(r) == "hold_exists" for r in responses if r.status_code != 201)
        held_slot = won[0].json()["slot_id"]
        live = {sid: await redis.zcard(keys.slot_holds(redis_prefix, sid)) for sid in slots}
        assert live == {sid: int(sid == held_slot) for sid in slots}
        # Every other slot's one place is there for someone else at once.
        other = await open_session(client, settings, world.event_id, voucher(32), BIRTH.isoformat())
        free = next(sid for sid in slots if sid != held_slot)
        r = await client.post("/api/holds", json={"slot_id": free}, headers=other)
        assert r.status_code == 201, r.text
        r = await client.post("/api/holds", json={"slot_id": held_slot}, headers=other)
        assert r.status_code == 409 and code(r) == "hold_exists", r.text


async def test_searches_start_past_the_filled_slots_and_see_a_place_come_back(
    settings: BookingSettings,
    db: asyncpg.Pool,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Searches skip the leading slots the shared counts say are full (a surge fills the
    soonest first), and a place given back there is offered again once counts refresh."""
    monkeypatch.setattr(availability, "LIVE_COUNTS_S", 0.2)
    async with db.acquire() as conn:
        slots = [
            await make_slot(conn, world.clinic_id, world.event_id, 1, days=2 + n / 10)
            for n in range(12)
        ]
    async with running(settings) as (app, client):
        bookings = []
        for n, sid in enumerate(slots[:10]):
            who = await open_session(
                client, settings, world.event_id, voucher(30 + n), BIRTH.isoformat()
            )
            held = await client.post("/api/holds", json={"slot_id": sid}, headers=who)
            done = await client.post(
                "/api/bookings", json={"hold_id": held.json()["hold_id"]}, headers=who
            )
            bookings.append((who, done.json()["booking"]["booking_id"]))
        searcher = await open_session(
            client, settings, world.event_id, voucher(45), BIRTH.isoformat()
        )
        found = (await client.get("/api/slots", headers=searcher)).json()["slots"]
        assert [s["slot_id"] for s in found] == slots[10:]
        event = app.state.availability._slots[world.event_id][1]
        assert event.full_until == 10  # the next search starts past the ten full ones
        who, booking_id = bookings[3]
        cancelled = await client.post(f"/api/bookings/{booking_id}/cancel", headers=who)
        assert cancelled.status_code == 200
        await asyncio.sleep(0.5)
        again = (await client.get("/api/slots", headers=searcher)).json()["slots"]
        assert [s["slot_id"] for s in again] == [slots[3], *slots[10:]]
