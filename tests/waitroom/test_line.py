"""The line under load: arrival order, none twice or skipped, restarts, two admitters."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from machiai import keys as shared
from machiai.tokens import Ticket, Tokens
from tests.waitroom.conftest import (
    AppFactory,
    FakeClock,
    add_event,
    line_of,
    parts,
    running,
    store_of,
)
from waitroom.errors import ScriptError, StoreUnavailable
from waitroom.services.estimate_wait import Phase, line_index, ticket_status
from waitroom.services.line import MAX_RELOADS
from waitroom.store.redis_store import EventConfig, ScriptRefused

JSON = {"accept": "application/json"}


async def join_many(client: httpx.AsyncClient, event_id: str, n: int) -> list[str]:
    async def one() -> str:
        # An explicit Cookie header keeps the jar's ticket out: each join is a new resident.
        r = await client.post(f"/events/{event_id}/join", headers={**JSON, "cookie": "x=1"})
        assert r.status_code == 201, r.text
        return str(r.json()["ticket"])

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def test_5000_concurrent_joins_admitted_in_arrival_order(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock, tokens: Tokens
) -> None:
    event_id = await add_event(db, rate=60_000, cap=1_000_000)
    # 5,000 requests at once keep this one event loop busy for seconds: no timeouts for that.
    app = make_app(redis_timeout_s=60.0)
    async with running(app) as client:
        wr = parts(app)
        raw = await join_many(client, event_id, 5000)
        tickets = [tokens.load_ticket(t, 3600, event_id) for t in raw]
        numbers = sorted(t.arrival_no for t in tickets)
        assert numbers == list(range(5000))  # nobody twice, nobody skipped
        assert wr.batcher.calls < 5000 / 10  # joins shared round trips

        admitted_round: dict[int, int] = {}
        rounds = 0
        while len(admitted_round) < 5000:
            rounds += 1
            assert rounds < 100
            clock.advance(1)
            snap = await line_of(app).refresh(event_id)
            for ticket in tickets:
                status = ticket_status(ticket, snap, wr.settings, clock)
                if status.phase is Phase.ADMITTED:
                    admitted_round.setdefault(ticket.arrival_no, rounds)
                else:
                    assert ticket.arrival_no not in admitted_round  # never un-admitted
        # Admission order = arrival order: a later number is never admitted in an earlier round.
        by_number = [admitted_round[n] for n in range(5000)]
        assert by_number == sorted(by_number)
        # 1,000 per second at 60,000/min; the safety net let the first 1,000 in while joining.
        assert rounds == 4


async def test_join_batches_hand_out_numbers_in_call_order(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    event_id = await add_event(db)
    app = make_app()
    async with running(app):
        batcher = parts(app).batcher
        numbers = await asyncio.gather(*(batcher.take_number(event_id) for _ in range(300)))
        assert [n.number for n in numbers] == list(range(300))


async def test_rejoin_with_valid_ticket_keeps_place(db: asyncpg.Pool, make_app: AppFactory) -> None:
    event_id = await add_event(db)
    async with running(make_app()) as client:
        first = await client.post(f"/events/{event_id}/join", headers=JSON)
        # The cookie travels back: same ticket, same place, 200 not 201.
        again = await client.post(f"/events/{event_id}/join", headers=JSON)
        assert again.status_code == 200 and again.json()["ticket"] == first.json()["ticket"]
        await join_many(client, event_id, 5)
        body = await client.post(
            f"/events/{event_id}/join",
            json={"ticket": first.json()["ticket"]},
            headers={"cookie": "x=1"},
        )
        assert body.status_code == 200 and body.json()["position"] == 1


async def test_restart_mid_line_keeps_every_place(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock, tokens: Tokens
) -> None:
    event_id = await add_event(db, rate=600)
    first = make_app()
    async with running(first) as client:
        raw = await join_many(client, event_id, 200)
        for _ in range(5):
            clock.advance(1)
            await line_of(first).refresh(event_id)
        before = {
            t: (await client.get(f"/events/{event_id}/status", params={"t": t})).json() for t in raw
        }
    # A new process on the same Redis: same answers for every ticket, and the line goes on.
    second = make_app()
    async with running(second) as client:
        after = {
            t: (await client.get(f"/events/{event_id}/status", params={"t": t})).json() for t in raw
        }
        for t in raw:
            assert (after[t]["state"], after[t]["position"]) == (
                before[t]["state"],
                before[t]["position"],
            )
        # 10 through the safety net while joining, then 10 per second for 5 s (600/min).
        assert sum(1 for v in after.values() if v["state"] == "admitted") == 60
        clock.advance(1)
        await line_of(second).refresh(event_id)
        for t in raw:
            now = (await client.get(f"/events/{event_id}/status", params={"t": t})).json()
            if before[t]["state"] == "admitted" or before[t]["position"] <= 10:
                assert now["state"] == "admitted"
            else:
                assert now["position"] == before[t]["position"] - 10
        ticket = tokens.load_ticket(raw[0], 3600, event_id)
        snap = line_of(second).cached(event_id)
        assert snap is not None and line_index(ticket, snap) == ticket.arrival_no


async def test_two_processes_admitting_never_exceed_rate_or_cap(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock, redis: aioredis.Redis
) -> None:
    rate, cap = 120, 25  # 2 per second
    event_id = await add_event(db, rate=rate, cap=cap)
    one, two = make_app(hold_s=30), make_app(hold_s=30)
    async with running(one) as client, running(two):
        await join_many(client, event_id, 400)
        admitted_at_start = (await line_of(one).refresh(event_id)).live.admitted
        elapsed_s = 0.0
        for _ in range(120):
            clock.advance(0.25)
            elapsed_s += 0.25
            a, b = await asyncio.gather(
                line_of(one).refresh(event_id), line_of(two).refresh(event_id)
            )
            for snap in (a, b):
                assert snap.live.active <= cap
                budget = rate * elapsed_s / 60 + max(1, rate / 60)
                assert snap.live.admitted - admitted_at_start <= budget
        # Sessions in booking count as active too: the cap holds with them.
        now = clock.now
        await redis.zadd(
            shared.booking_sessions(store_of(one).prefix, event_id),
            {f"s{i}": now + 600_000 for i in range(cap)},
        )
        clock.advance(60)
        stalled = await line_of(one).refresh(event_id)
        clock.advance(60)
        still = await line_of(two).refresh(event_id)
        assert still.live.admitted == stalled.live.admitted
        assert still.live.active >= cap


async def test_status_needs_no_redis_round_trip(
    db: asyncpg.Pool, make_app: AppFactory, redis: aioredis.Redis
) -> None:
    event_id = await add_event(db)
    app = make_app()
    async with running(app) as client:
        [ticket] = await join_many(client, event_id, 1)
        store = store_of(app)
        calls: list[str] = []
        run = store._run

        async def counting(name: str, *args: object) -> object:
            calls.append(name)
            return await run(name, *args)  # type: ignore[arg-type]

        store._run = counting  # type: ignore[assignment,method-assign]
        for _ in range(20):
            r = await client.get(f"/events/{event_id}/status", params={"t": ticket})
            assert r.status_code == 200
        assert calls == []


async def test_ticket_beyond_the_line_is_unknown(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A valid ticket whose number the line never reached (Redis lost it): refused with a code;
    a fresh one triggers one refresh (another process may have made it), an old one none."""
    event_id = await add_event(db)
    app = make_app()
    async with running(app) as client:
        await join_many(client, event_id, 2)
        fresh = tokens.dump_ticket(Ticket(event_id, 50, "f" * 32, False))
        an_hour_ago = time.time() - 3600
        with monkeypatch.context() as m:
            m.setattr("itsdangerous.timed.time.time", lambda: an_hour_ago)
            old = tokens.dump_ticket(Ticket(event_id, 50, "o" * 32, False))
        store = store_of(app)
        calls: list[str] = []
        run = store._run

        async def counting(name: str, *args: object) -> object:
            calls.append(name)
            return await run(name, *args)  # type: ignore[arg-type]

        store._run = counting  # type: ignore[assignment,method-assign]
        for token, expected_calls in ((old, []), (fresh, ["admit_next"])):
            calls.clear()
            r = await client.get(f"/events/{event_id}/status", headers={"x-machiai-ticket": token})
            assert r.status_code == 409 and r.json()["error"]["code"] == "ticket_unknown"
            assert calls == expected_calls


async def test_events_are_isolated(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock, tokens: Tokens
) -> None:
    """One city's surge and pause do not touch another's line."""
    busy = await add_event(db, rate=60)
    calm = await add_event(db, rate=120, municipality="271004")
    app = make_app()
    async with running(app) as client:
        surge = await join_many(client, busy, 300)
        few = await join_many(client, calm, 5)
        for _ in range(3):
            clock.advance(1)
            await asyncio.gather(line_of(app).refresh(busy), line_of(app).refresh(calm))
        b, c = line_of(app).cached(busy), line_of(app).cached(calm)
        assert b is not None and c is not None
        assert (b.live.arrivals, c.live.arrivals) == (300, 5)
        assert c.live.admitted == 5 and b.live.admitted == 4  # 1 at join + 1 per second
        for ticket in few:
            assert tokens.load_ticket(ticket, 60, calm).arrival_no < 5
        assert len(surge) == 300


async def test_made_up_event_ids_do_not_hammer_postgres(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    app = make_app()
    async with running(app) as client:
        line = line_of(app)
        looked_up: list[str] = []
        load = line.load_config

        async def counting(event_id: str) -> object:
            looked_up.append(event_id)
            return await load(event_id)

        line.load_config = counting  # type: ignore[assignment]
        codes = [(await client.get(f"/events/made-up-{i}/wait")).status_code for i in range(80)]
        again = await client.get("/events/made-up-0/wait")
        assert again.status_code == 404
        # A burst of 50 lookups, then "busy" (503) instead of a query per made-up id.
        assert codes.count(404) == len(looked_up) <= 55 and codes.count(503) >= 25
        assert looked_up.count("made-up-0") == 1  # unknown ids are remembered a while


async def test_refresh_answers_busy_when_redis_keeps_losing_the_event(
    db: asyncpg.Pool, make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """admit_next answering NOT_LOADED again and again: reloaded from Postgres a bounded
    number of times, then StoreUnavailable (busy), no recursion."""
    event_id = await add_event(db)
    app = make_app()
    async with running(app):
        line = line_of(app)
        await line.refresh(event_id)
        calls: list[str] = []
        loads: list[str] = []
        load = line.load_config

        async def not_loaded(*args: object, **kwargs: object) -> object:
            calls.append("admit_next")
            raise ScriptRefused(ScriptError.NOT_LOADED)

        async def counting(event_id: str) -> EventConfig | None:
            loads.append(event_id)
            return await load(event_id)

        monkeypatch.setattr(store_of(app), "admit_next", not_loaded)
        monkeypatch.setattr(line, "load_config", counting)
        with pytest.raises(StoreUnavailable):
            await line.refresh(event_id)
        assert len(calls) == 1 + MAX_RELOADS and loads == [event_id] * MAX_RELOADS
