"""The lean generator: its HTTP client, and a small city-opening run judged end to end."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from loadtests.lean import client
from loadtests.lean.client import Lane, Origin
from loadtests.lean.run import polls_per_second
from loadtests.profiles import PROFILES, ProfileError, with_overrides

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BODY = b'{"n": 123}'
OK = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Origin]:
    """A raw TCP server on loopback running ``handler`` per connection, all closed at exit."""
    tasks: set[asyncio.Task[object]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield Origin("127.0.0.1", server.sockets[0].getsockname()[1], "")
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def test_a_request_on_a_connection_the_server_closed_is_sent_again() -> None:
    connections = 0

    async def hang_up_on_the_second_request(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # As a server closing an idle keep-alive connection just as a request comes in.
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await read_request(reader)
        writer.close()

    async with serving(hang_up_on_the_second_request) as origin:
        lane = Lane(origin)
        first = await lane.send(origin.request("GET", "/x", ""))
        second = await lane.send(origin.request("GET", "/x", ""))
        lane.close()
    assert (first.status, first.json()) == (200, {"n": 123})
    assert second.status == 200
    assert (lane.resent, lane.connects, connections) == (1, 2, 2)


async def test_a_connection_closed_while_idle_is_replaced_before_sending() -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        writer.close()

    async with serving(answer_once) as origin:
        lane = Lane(origin)
        await lane.send(origin.request("GET", "/x", ""))
        await asyncio.sleep(0.05)
        second = await lane.send(origin.request("GET", "/x", ""))
        lane.close()
    assert second.status == 200
    assert (lane.resent, lane.connects) == (0, 2)


async def test_a_request_without_a_reply_in_time_is_not_sent_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client, "TIMEOUT_S", 0.2)
    seen = 0

    async def answer_then_go_silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal seen
        await read_request(reader)
        writer.write(OK)
        while True:
            await read_request(reader)
            seen += 1

    async with serving(answer_then_go_silent) as origin:
        lane = Lane(origin)
        assert (await lane.send(origin.request("GET", "/x", ""))).status == 200
        # On a reused connection, as a stale one would be: still not sent again.
        sending = asyncio.create_task(lane.send(origin.request("POST", "/join", "")))
        await asyncio.sleep(0.3)
        lane.expire(time.monotonic())  # the engine's clock does this every second
        reply = await asyncio.wait_for(sending, 1)
        lane.close()
    assert reply == client.NO_REPLY
    assert (seen, lane.resent, lane.connects) == (1, 0, 1)


async def test_a_refused_connection_is_no_reply() -> None:
    async def nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serving(nothing) as origin:
        pass
    assert await Lane(origin).send(origin.request("GET", "/", "")) == client.NO_REPLY


def test_the_formula_is_the_waitroom_readmes() -> None:
    # waitroom/README.md: for N = 1,000,000, 3,375 polls/s at 100/min, 3,751 at 1,000/min,
    # 5,839 at 6,000/min (split 5, 2 s to 300 s).
    for rate, told in ((100, 3375), (1000, 3751), (6000, 5839)):
        assert round(polls_per_second(1_000_000, rate, 5, 2, 300)) == told
    # A short line all polls every min_s.
    assert polls_per_second(100, 6000, 5, 2, 300) == 50


def test_lean_only_settings_are_refused_for_locust_profiles() -> None:
    with pytest.raises(ProfileError):
        with_overrides(PROFILES["smoke"], ["book_share=0.5"])
    with pytest.raises(ProfileError):
        with_overrides(PROFILES["city-opening"], ["operators=2"])
    with pytest.raises(ProfileError):
        with_overrides(PROFILES["city-opening"], ["pass_share=1.5"])


RESIDENTS = 300
SMALL_CITY = [
    f"residents={RESIDENTS}",
    # Arrivals for 30 s; the event opens 20 s after seeding (the services start in between),
    # so the first ones wait in the pre-queue and the others join an open line; admitted at
    # the arrival rate, the line the pre-queue left stays: residents wait and poll as told.
    "spawn_per_s=10",
    "prequeue_s=20",
    "admit_per_minute=600",
    "duration_s=120",
    "slots=40",
    "book_share=0.3",
    "pass_share=0.5",
]
ENDPOINTS = (
    "POST waitroom join",
    "GET waitroom status",
    "POST waitroom enter",
    "POST booking session",
    "GET booking search",
    "POST booking hold",
    "POST booking confirm",
    "DELETE booking end session",
)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_small_city_opening_is_played_recorded_and_judged(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "machiai.cli", "loadtest", "city-opening"]
    argv += ["--report-dir", str(tmp_path)]
    for setting in SMALL_CITY:
        argv += ["--set", setting]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=360)
    reports = list(tmp_path.iterdir())
    assert len(reports) == 1, result.stdout + result.stderr
    out = reports[0]
    verdict = json.loads((out / "verdict.json").read_text("utf-8"))
    assert verdict["violations"] == {name: 0 for name in verdict["violations"]}, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdict["failed_requests"] == 0, (out / "lean_failures.csv").read_text()

    # One record per resident, each journey to its end: admitted (then gone in, or left at
    # the turn), or given up while waiting; the bookings they were told are Postgres's.
    records = [json.loads(line) for path in (out / "records").glob("*.jsonl") for line in
               path.read_text("utf-8").splitlines()]  # fmt: skip
    residents = [r for r in records if "voucher" in r]
    assert len({r["voucher"] for r in residents}) == len(residents) == RESIDENTS
    assert all(r.get("joined_at") and r.get("left_at") for r in residents)
    assert all(r.get("admitted_at") or r.get("abandoned") == "waiting" for r in residents)
    assert any(r["prequeue"] for r in residents) and not all(r["prequeue"] for r in residents)
    assert any(r.get("first_estimate_s") is not None for r in residents)
    codes = [r["confirmation_code"] for r in residents if r.get("confirmation_code")]
    assert len(codes) == verdict["confirmed"] > 0
    assert verdict["joined"] == RESIDENTS

    with (out / "lean_stats.csv").open(encoding="utf-8") as fh:
        counts = {f"{row['Type']} {row['Name']}": int(row["Request Count"]) for row in
                  csv.DictReader(fh)}  # fmt: skip
    assert counts["POST waitroom join"] == RESIDENTS
    assert counts["GET waitroom status"] > RESIDENTS
    for endpoint in ENDPOINTS:
        assert verdict["latency_ms"][endpoint]["requests"] > 0, endpoint

    # The report's own figures: every process's memory, the generator's CPU, the polling load.
    generator = verdict["generator"]
    assert generator["name"] == "lean"
    memory = generator["memory_peak_bytes"]
    for name in ("generator", "waitroom", "booking", "redis", "postgres"):
        assert memory[name]["rss"] > 0 and memory[name]["tree_pss"] > 0, name
    assert memory["postgres"]["processes"] > 1
    assert verdict["cpu_s"]["lean"] > 0
    assert sum(w["polls_per_s"] for w in generator["windows"]) > 0
    assert any(w["formula_per_s"] > 0 for w in generator["windows"])
    summary = (out / "summary.md").read_text("utf-8")
    assert "formula" in summary and "memory, peak" in summary
    assert (out / "polls.png").exists()
