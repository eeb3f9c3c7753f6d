"""Concurrent callers for one key share one fetch; different keys and later calls do not."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machiai.single_flight import SingleFlight


class Source:
    """A slow fetch that counts how often it really ran, per key."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.gate = asyncio.Event()

    async def fetch(self, key: str) -> str:
        self.calls[key] = self.calls.get(key, 0) + 1
        await self.gate.wait()
        if key.startswith("bad"):
            raise LookupError(key)
        return f"value of {key} #{self.calls[key]}"


async def test_a_crowd_for_one_key_makes_one_fetch() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    source = Source()
    waiters = [asyncio.create_task(flight.run("s", lambda: source.fetch("s"))) for _ in range(200)]
    await asyncio.sleep(0)
    source.gate.set()
    results = await asyncio.gather(*waiters)
    assert source.calls == {"s": 1} and flight.started == 1
    assert set(results) == {"value of s #1"}
    assert len(flight) == 0


async def test_after_a_fetch_finished_the_next_caller_fetches_again() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    source = Source()
    source.gate.set()
    assert await flight.run("s", lambda: source.fetch("s")) == "value of s #1"
    assert await flight.run("s", lambda: source.fetch("s")) == "value of s #2"


async def test_every_waiter_gets_the_fetchs_exception() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    source = Source()
    waiters = [
        asyncio.create_task(flight.run("bad", lambda: source.fetch("bad"))) for _ in range(5)
    ]
    await asyncio.sleep(0)
    source.gate.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(o, LookupError) for o in outcomes)
    assert source.calls == {"bad": 1}


async def test_a_cancelled_waiter_leaves_the_fetch_to_the_others() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    source = Source()
    first = asyncio.create_task(flight.run("s", lambda: source.fetch("s")))
    second = asyncio.create_task(flight.run("s", lambda: source.fetch("s")))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    source.gate.set()
    assert await second == "value of s #1"
    assert source.calls == {"s": 1}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "bad"]), min_size=1, max_size=60))
def test_one_fetch_per_key_in_flight(keys: list[str]) -> None:
    async def scenario() -> None:
        flight: SingleFlight[str, str] = SingleFlight()
        source = Source()
        waiters = [
            asyncio.create_task(flight.run(k, lambda k=k: source.fetch(k)))  # type: ignore[misc]
            for k in keys
        ]
        await asyncio.sleep(0)
        source.gate.set()
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert source.calls == {k: 1 for k in set(keys)}
        for key, outcome in zip(keys, outcomes, strict=True):
            if key == "bad":
                assert isinstance(outcome, LookupError)
            else:
                assert outcome == f"value of {key} #1"
        assert len(flight) == 0

    asyncio.run(scenario())


async def test_a_caller_asking_before_a_finished_fetch_gets_its_result() -> None:
    """A caller that learnt it lacked the thing before the last fetch finished (its answer
    was delayed while that fetch ran) takes that fetch's result; one that asks after it
    starts a new fetch."""
    flight: SingleFlight[str, int] = SingleFlight()
    fetched = 0

    async def fetch() -> int:
        nonlocal fetched
        fetched += 1
        await asyncio.sleep(0)
        return fetched

    asked_early = time.monotonic()
    assert await flight.run("slot", fetch, asked_early) == 1
    assert await flight.run("slot", fetch, asked_early) == 1  # late answer: no new fetch
    assert flight.started == 1
    assert await flight.run("slot", fetch, time.monotonic()) == 2  # asked after it: fetch
    assert await flight.run("slot", fetch) == 3  # without asked_at: as before
    assert flight.started == 3
