"""Redis and Postgres paused (SIGSTOP) for 10 s in the middle of a booking surge, then
resumed: both services answer fast all along (the waitroom's status from its snapshot,
everything else "busy" with Retry-After), nothing piles up without bound, both recover by
themselves, nothing confirmed is lost and nothing is oversold.

Own servers (the pause must not stop anybody else's tests), real HTTP, one event loop for
the services and the residents: the loop's task count is what piles up when a call has no
deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from booking.app import create_app as booking_app
from booking.settings import BookingSettings
from machiai.embedded import EmbeddedPostgres, EmbeddedRedis, PostgresTuning
from machiai.migrate import apply_migrations
from tests import report
from tests.booking.client import mint_pass
from tests.booking.factory import BIRTH, make_slot, make_world, voucher
from tests.servers import serving
from waitroom.app import create_app as waitroom_app
from waitroom.settings import WaitroomSettings

PAUSE_S = 10.0
DEADLINE_S = 1.0  # every Redis and Postgres deadline of both services in this test
RESIDENTS = 60
SLOTS, CAPACITY = 3, 10
# Open-loop status polls and holds: they keep coming whatever happens.
ARRIVALS_PER_S = 40
# Idle connections are dropped by the client before uvicorn's keep-alive timeout (5 s) does:
# a request on a connection the server is closing would fail on the client's side.
UNLIMITED = httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=2)


@contextlib.contextmanager
def paused(*pids: int) -> Iterator[None]:
    """SIGSTOP each server and every process under it (a Postgres backend is a child of the
    postmaster: stopping the postmaster alone leaves running queries answering)."""
    procs = []
    for pid in pids:
        root = psutil.Process(pid)
        procs += [root, *root.children(recursive=True)]
    for proc in procs:
        proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGCONT)


@dataclass
class Record:
    """Every answer the residents got: when, what, how long it took."""

    answers: list[tuple[float, str, int, float]] = field(default_factory=list)
    confirmed: dict[str, str] = field(default_factory=dict)  # resident voucher -> booking id
    bad: list[str] = field(default_factory=list)

    def note(self, started: float, what: str, r: httpx.Response) -> None:
        took = time.monotonic() - started
        self.answers.append((started, what, r.status_code, took))
        if r.status_code >= 500:
            body: Any = r.json() if r.headers.get("content-type", "").endswith("json") else {}
            error = body.get("error", {}) if isinstance(body, dict) else {}
            if (
                r.status_code != 503
                or error.get("code") != "busy"
                or "retry-after" not in r.headers
            ):
                self.bad.append(f"{what}: {r.status_code} {r.text[:200]}")
        elif r.status_code not in (200, 201, 409):
            self.bad.append(f"{what}: {r.status_code} {r.text[:200]}")


async def book(
    client: httpx.AsyncClient, auth: dict[str, str], slots: list[str], who: str, rec: Record
) -> None:
    """One resident: hold a slot with places, confirm it (again with the same key after a
    "busy": the answer that went missing is replayed, never booked twice)."""
    rng = random.Random(who)
    key = f"k-{uuid.uuid4().hex}"
    full: set[str] = set()
    while len(full) < len(slots):
        slot = rng.choice([s for s in slots if s not in full])
        t = time.monotonic()
        held = await client.post("/api/holds", json={"slot_id": slot}, headers=auth)
        rec.note(t, "hold", held)
        if held.status_code == 503:
            await asyncio.sleep(0.2)
            continue
        if held.status_code == 409:
            if held.json()["error"]["code"] == "slot_full":
                full.add(slot)
            elif held.json()["error"]["code"] == "hold_exists":
                pass  # an earlier hold whose answer went missing: confirm it below
            else:
                await asyncio.sleep(0.2)
                continue
        hold_id = held.json()["hold_id"] if held.status_code == 201 else None
        if hold_id is None and held.status_code != 409:
            continue
        if hold_id is None:
            mine = await client.get("/api/bookings", headers=auth)
            if mine.status_code != 200 or not mine.json().get("hold"):
                continue
            hold_id = mine.json()["hold"]["hold_id"]
        while True:
            t = time.monotonic()
            done = await client.post(
                "/api/bookings", json={"hold_id": hold_id}, headers={**auth, "Idempotency-Key": key}
            )
            rec.note(t, "confirm", done)
            if done.status_code == 201:
                rec.confirmed[who] = done.json()["booking"]["booking_id"]
                return
            if done.status_code != 503:
                break  # the hold ran out or the place went: choose again
            await asyncio.sleep(0.2)
        key = f"k-{uuid.uuid4().hex}"


async def arrivals(
    waitroom: httpx.AsyncClient,
    booking: httpx.AsyncClient,
    event_id: str,
    tickets: list[str],
    auth: dict[str, str],
    slot: str,
    rec: Record,
    stop: asyncio.Event,
) -> None:
    """Open loop: a status poll and a hold attempt every 1/ARRIVALS_PER_S s, not waiting for
    earlier ones to be answered (what a crowd does)."""

    async def poll(ticket: str) -> None:
        t = time.monotonic()
        r = await waitroom.get(f"/events/{event_id}/status", headers={"x-machiai-ticket": ticket})
        rec.note(t, "status", r)

    async def hold() -> None:
        t = time.monotonic()
        rec.note(t, "hold", await booking.post("/api/holds", json={"slot_id": slot}, headers=auth))

    sent: list[asyncio.Task[None]] = []  # all kept: a failure in any one fails the test
    i = 0
    while not stop.is_set():
        sent += [asyncio.create_task(poll(tickets[i % len(tickets)])), asyncio.create_task(hold())]
        i += 1
        await asyncio.sleep(1 / ARRIVALS_PER_S)
    await asyncio.gather(*sent)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, EmbeddedPostgres]]:
    redis_server = EmbeddedRedis(tmp_path / "redis", persistent=False).start()
    try:
        postgres = EmbeddedPostgres(tmp_path / "pg", tuning=PostgresTuning(fsync=False)).start()
        try:
            yield redis_server, postgres
        finally:
            postgres.stop()
    finally:
        redis_server.stop()


async def test_paused_redis_and_postgres_mid_surge(
    servers: tuple[EmbeddedRedis, EmbeddedPostgres], tmp_path: Path
) -> None:
    redis_server, postgres = servers
    await apply_migrations(postgres.url)
    db = await asyncpg.connect(postgres.url)
    try:
        world = await make_world(db, residents=RESIDENTS)
        slots = [
            await make_slot(db, world.clinic_id, world.event_id, CAPACITY, days=2 + i)
            for i in range(SLOTS)
        ]
        # Where the crowd's holds go (one resident's: it holds one place, then is told
        # "you hold one already", through Redis each time): apart from the places contested.
        crowd_slot = await make_slot(db, world.clinic_id, world.event_id, 1, days=9)
        # The line: admission far faster than this test, so status answers come from a
        # snapshot that would move if Redis answered.
        await db.execute(
            "UPDATE events SET admit_per_minute = 6000, max_active = 1000 WHERE id = $1",
            world.event_id,
        )
    finally:
        await db.close()
    env = {
        "MACHIAI_ENV": "development",
        "MACHIAI_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": postgres.url,
        "MACHIAI_SECRET_KEYS": "hung-" + uuid.uuid4().hex + uuid.uuid4().hex,
        "WAITROOM_REDIS_TIMEOUT_S": str(DEADLINE_S),
        "WAITROOM_DB_TIMEOUT_S": str(DEADLINE_S),
        "WAITROOM_JOIN_PER_MINUTE": "0",
        "BOOKING_REDIS_TIMEOUT_S": str(DEADLINE_S),
        "BOOKING_DB_TIMEOUT_S": str(DEADLINE_S),
        "BOOKING_THROTTLE_CLIENT_LIMIT": "1000000",
    }
    booking_settings = BookingSettings.from_env(env)
    rec = Record()
    async with (
        serving(waitroom_app(WaitroomSettings.from_env(env))) as waitroom_url,
        serving(booking_app(booking_settings)) as booking_url,
        # No connection limit in the clients: the crowd's requests must reach the servers.
        httpx.AsyncClient(base_url=waitroom_url, timeout=60, limits=UNLIMITED) as waitroom,
        httpx.AsyncClient(base_url=booking_url, timeout=60, limits=UNLIMITED) as booking,
    ):
        tickets = []
        for _ in range(20):
            r = await waitroom.post(
                f"/events/{world.event_id}/join", headers={"accept": "application/json"}
            )
            assert r.status_code == 201, r.text
            tickets.append(str(r.json()["ticket"]))
            waitroom.cookies.clear()  # the next join is somebody else
        sessions = {}
        for n in range(RESIDENTS):
            r = await booking.post(
                "/api/sessions",
                json={
                    "pass": mint_pass(booking_settings, world.event_id),
                    "voucher": voucher(n),
                    "birth_date": BIRTH.isoformat(),
                },
            )
            assert r.status_code == 201, r.text
            sessions[voucher(n)] = {"Authorization": f"Bearer {r.json()['session']}"}
        # The open-loop holds come from one more resident, who never confirms.
        spare = next(iter(sessions.values()))

        process = psutil.Process()
        samples: list[tuple[float, int, int]] = []  # (time, tasks, rss)
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                samples.append(
                    (time.monotonic(), len(asyncio.all_tasks()), process.memory_info().rss)
                )
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample())
        crowd = asyncio.create_task(
            arrivals(waitroom, booking, world.event_id, tickets, spare, crowd_slot, rec, stop)
        )
        residents = [
            asyncio.create_task(book(booking, auth, slots, who, rec))
            for who, auth in list(sessions.items())[1:]
        ]
        await asyncio.sleep(2)
        with paused(redis_server.pid or 0, postgres.pid or 0):
            pause_at = time.monotonic()
            await asyncio.sleep(PAUSE_S)
        resumed_at = time.monotonic()
        done, waiting = await asyncio.wait(residents, timeout=60)
        recovered_at = time.monotonic()
        stop.set()
        await crowd
        await sampler
        for task in done:
            task.result()
        assert not waiting, f"{len(waiting)} residents never got through after the pause"

    # Nothing but 200/201/409 and 503 busy with Retry-After.
    assert rec.bad == []
    # Fail fast: nothing asked during the pause waits for its end (each call has a
    # deadline; the margin is for a loaded machine, not a figure to meet).
    slow_start, slow_what, _, slowest = max(rec.answers, key=lambda a: a[3])
    waited = [
        (start, what, took)
        for start, what, _, took in rec.answers
        if pause_at <= start < resumed_at - 5 and start + took >= resumed_at
    ]
    assert waited == [], waited[:5]
    during = [a for a in rec.answers if pause_at <= a[0] < resumed_at]
    by_kind = collections.Counter((what, code) for _, what, code, _ in during)
    # The waitroom tells places from its snapshot; booking says "busy".
    assert by_kind[("status", 503)] == 0 and by_kind[("status", 200)] > 0, by_kind
    assert by_kind[("hold", 503)] > 0, by_kind
    # Nothing piles up: while paused, the tasks in flight stay within what the deadline
    # lets in (arrivals x deadline, twice, plus the residents' own), and they go again.
    base = max(n for t, n, _ in samples if t < pause_at)
    peak = max(n for t, n, _ in samples if pause_at <= t < resumed_at + 2)
    bound = base + 2 * (2 * ARRIVALS_PER_S * 2 * DEADLINE_S)
    assert peak <= bound, (base, peak)
    after = [n for t, n, _ in samples if t > recovered_at - 1]
    assert min(after) <= base, (base, after)
    rss = [m for t, _, m in samples]
    assert max(rss) - rss[0] < 200 * 2**20

    # Nothing confirmed lost, nothing oversold: every 201 is a booking in Postgres, and
    # the places taken are exactly the places there were (more residents than places).
    db = await asyncpg.connect(postgres.url)
    try:
        rows = await db.fetch(
            "SELECT id::text, voucher_number FROM bookings WHERE status = 'confirmed'"
        )
        booked = await db.fetch(
            "SELECT booked, capacity FROM slots WHERE id = ANY($1::uuid[])", slots
        )
    finally:
        await db.close()
    in_postgres = {r["voucher_number"]: r["id"] for r in rows}
    lost = [who for who, booking_id in rec.confirmed.items() if in_postgres.get(who) != booking_id]
    oversold = sum(max(0, r["booked"] - r["capacity"]) for r in booked)
    report.record(
        report.Fault(
            f"Redis and Postgres paused (SIGSTOP) {PAUSE_S:g} s mid-surge",
            f"status 200 from the snapshot ({by_kind[('status', 200)]}); holds and confirms "
            f"503 busy + Retry-After ({by_kind[('hold', 503)] + by_kind[('confirm', 503)]}); "
            f"slowest answer {slowest:.1f} s; tasks {base} → peak {peak}",
            str(len(lost)),
            str(oversold),
            f"{recovered_at - resumed_at:.1f} s until all {RESIDENTS - 1} residents got through",
        )
    )
    assert lost == [] and oversold == 0
    assert {v: in_postgres.get(v) for v in rec.confirmed} == rec.confirmed
    assert sum(r["booked"] for r in booked) == len(rows) == SLOTS * CAPACITY
