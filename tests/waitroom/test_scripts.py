"""Every Lua script through its wrapper, for every return code (real Redis, injected clock)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from machiai import keys as shared
from tests.waitroom.conftest import T0_MS
from waitroom.errors import ScriptError
from waitroom.store import keys
from waitroom.store.redis_store import (
    SCRIPTS,
    EventConfig,
    LineKind,
    LiveState,
    PassResult,
    RedisStore,
    ScriptRefused,
)

HOLD_MS = 120_000
GRACE_MS = 600_000


def config(event_id: str, **changes: object) -> EventConfig:
    base = {
        "event_id": event_id, "municipality": "131001", "name_ja": "予約", "name_en": "Booking",
        "state": "scheduled", "rate": 60, "cap": 10, "prequeue_at_ms": T0_MS,
        "opens_at_ms": T0_MS + 60_000, "closes_at_ms": T0_MS + 3600_000,
    }  # fmt: skip
    base.update(changes)
    return EventConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
async def store(redis: aioredis.Redis, redis_prefix: str) -> AsyncIterator[RedisStore]:
    opened = RedisStore(redis, redis_prefix)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def event_id() -> str:
    return f"ev-{uuid.uuid4().hex[:8]}"


async def admit(store: RedisStore, event_id: str, now_ms: int, since_s: int = 0) -> LiveState:
    return await store.admit_next(
        event_id, seed_hex="ab" * 16, hold_ms=HOLD_MS, retention_s=720, since_s=since_s,
        target_p95_ms=800, recover_per_s=0.05, load_stale_ms=30_000, now_ms=now_ms,
    )  # fmt: skip


async def test_load_event_loads_once(store: RedisStore, event_id: str) -> None:
    assert await store.load_event(config(event_id)) is True
    assert await store.load_event(config(event_id, rate=5)) is False
    live = await admit(store, event_id, T0_MS - 1)
    assert live.rate == 60 and live.state == "scheduled"


async def test_load_event_refuses_odd_arguments(store: RedisStore, event_id: str) -> None:
    with pytest.raises(ScriptRefused) as refused:
        await store._run("load_event", [keys.event(store.prefix, event_id)], ["state"])
    assert refused.value.code is ScriptError.INVALID_ARGUMENT


async def test_scripts_refuse_unloaded_event(store: RedisStore, event_id: str) -> None:
    calls = [
        store.join_line(event_id, 1, "00", T0_MS),
        admit(store, event_id, T0_MS),
        store.set_event(event_id, action="pause", now_ms=T0_MS),
        store.issue_pass(
            event_id,
            ticket_id="t",
            line_index=0,
            pass_id="p",
            issued_s=1,
            pass_ttl_ms=1000,
            grace_ms=GRACE_MS,
            hold_ms=HOLD_MS,
            now_ms=T0_MS,
        ),  # fmt: skip
    ]
    for call in calls:
        with pytest.raises(ScriptRefused) as refused:
            await call
        assert refused.value.code is ScriptError.NOT_LOADED


async def test_join_line_phases(store: RedisStore, event_id: str) -> None:
    await store.load_event(config(event_id))
    with pytest.raises(ScriptRefused) as refused:
        await store.join_line(event_id, 1, "00", T0_MS - 1)
    assert refused.value.code is ScriptError.NOT_OPEN_YET
    with pytest.raises(ScriptRefused) as refused:
        await store.join_line(event_id, 0, "00", T0_MS)
    assert refused.value.code is ScriptError.INVALID_ARGUMENT
    first = await store.join_line(event_id, 3, "00", T0_MS)
    assert (first.kind, first.first, first.n_pre) == (LineKind.PREQUEUE, 0, None)
    second = await store.join_line(event_id, 2, "00", T0_MS + 1)
    assert (second.kind, second.first) == (LineKind.PREQUEUE, 3)
    # The first join at or after opening freezes the pre-queue (5) and records the seed.
    opened = await store.join_line(event_id, 4, "c0ffee", T0_MS + 60_000)
    assert (opened.kind, opened.first, opened.n_pre) == (LineKind.ARRIVAL, 0, 5)
    live = await admit(store, event_id, T0_MS + 60_000)
    assert (live.state, live.n_pre, live.seed, live.arrivals) == ("open", 5, "c0ffee", 4)
    with pytest.raises(ScriptRefused) as refused:
        await store.join_line(event_id, 1, "00", T0_MS + 3600_000)
    assert refused.value.code is ScriptError.CLOSED


async def test_admit_next_opens_and_respects_rate_cap_and_line(
    store: RedisStore, event_id: str
) -> None:
    await store.load_event(config(event_id, rate=120, cap=5))
    await store.join_line(event_id, 3, "00", T0_MS)
    before = await admit(store, event_id, T0_MS + 59_999)
    assert before.state == "prequeue" and before.admitted == 0 and before.n_pre is None
    opened = await admit(store, event_id, T0_MS + 60_000)
    # Bucket starts full with one second of budget (2 at 120/min); line has 3.
    assert (opened.state, opened.n_pre, opened.seed, opened.admitted) == ("open", 3, "ab" * 16, 2)
    assert opened.active == 2 and opened.fresh == 2
    nothing = await admit(store, event_id, T0_MS + 60_000)
    assert nothing.admitted_now == 0
    later = await admit(store, event_id, T0_MS + 70_000)
    assert later.admitted == 3  # never beyond the line
    await store.join_line(event_id, 10, "00", T0_MS + 70_000)
    capped = await admit(store, event_id, T0_MS + 80_000)
    # Only 2 more fit: 3 admitted still inside their hold + 2 = cap 5.
    assert capped.admitted == 5 and capped.active == 5
    # Holds lapse (abandoned turns), the cap frees without anyone entering.
    freed = await admit(store, event_id, T0_MS + 60_000 + HOLD_MS + 30_000)
    assert freed.admitted == 7 and freed.fresh == 2
    assert [c for _, c in freed.batches] == [2, 3, 5, 7]


async def test_admit_next_counts_sessions_and_stops_when_sold_out(
    redis: aioredis.Redis, store: RedisStore, event_id: str
) -> None:
    p = store.prefix
    await store.load_event(config(event_id, rate=600, cap=4, state="open", opens_at_ms=T0_MS))
    await store.join_line(event_id, 20, "00", T0_MS)
    now = T0_MS + HOLD_MS * 10
    await redis.zadd(
        shared.booking_sessions(p, event_id), {"s1": now + 5000, "s2": now + 1, "s3": now - 1}
    )
    live = await admit(store, event_id, now)
    assert live.sessions == 2 and live.admitted == 2 and live.active == 4
    await redis.hset(
        shared.event_inventory(p, event_id), mapping={"remaining": 0, "updated_ms": now}
    )
    sold = await admit(store, event_id, now + 10_000)
    assert sold.remaining == 0 and sold.admitted == 2
    await redis.hset(shared.event_inventory(p, event_id), "remaining", 7)
    back = await admit(store, event_id, now + 20_000)
    assert back.remaining == 7 and back.admitted > 2


async def test_admit_next_backpressure(
    redis: aioredis.Redis, store: RedisStore, event_id: str
) -> None:
    p = store.prefix
    await store.load_event(config(event_id, rate=6000, cap=100000, state="open", opens_at_ms=T0_MS))
    await store.join_line(event_id, 100000, "00", T0_MS)
    await admit(store, event_id, T0_MS)
    load = shared.booking_load(p, event_id)
    await redis.hset(load, mapping={"p95_ms": 3200, "updated_ms": T0_MS + 1000})
    slow = await admit(store, event_id, T0_MS + 1000)
    assert slow.factor == pytest.approx(0.25)
    # A stale report is ignored; recovery is gradual (0.05 per second).
    healed = await admit(store, event_id, T0_MS + 1000 + 31_000)
    assert healed.factor == 1.0
    await redis.hset(load, mapping={"p95_ms": 200, "updated_ms": T0_MS + 40_000})
    await redis.hset(load, mapping={"p95_ms": 8000, "updated_ms": T0_MS + 40_000})
    down = await admit(store, event_id, T0_MS + 40_000)
    assert down.factor == pytest.approx(0.1)
    await redis.hset(load, mapping={"p95_ms": 100, "updated_ms": T0_MS + 42_000})
    up = await admit(store, event_id, T0_MS + 42_000)
    assert up.factor == pytest.approx(0.2)


async def test_issue_pass_codes(redis: aioredis.Redis, store: RedisStore, event_id: str) -> None:
    p = store.prefix
    await store.load_event(config(event_id, rate=60, state="open", opens_at_ms=T0_MS))
    await store.join_line(event_id, 1, "00", T0_MS)
    await admit(store, event_id, T0_MS)  # index 0 admitted, the whole line

    async def issue(index: int, ticket: str, now: int, pass_id: str = "") -> PassResult:
        return await store.issue_pass(
            event_id, ticket_id=ticket, line_index=index, pass_id=pass_id or uuid.uuid4().hex,
            issued_s=now // 1000 - 7, pass_ttl_ms=300_000, grace_ms=GRACE_MS,
            hold_ms=HOLD_MS, now_ms=now,
        )  # fmt: skip

    with pytest.raises(ScriptRefused) as refused:
        await issue(1, "t1", T0_MS)
    assert refused.value.code is ScriptError.NOT_ADMITTED
    first = await issue(0, "t0", T0_MS + 1000, "pass-a")
    again = await issue(0, "t0", T0_MS + 2000, "pass-b")
    assert first.new and not again.new
    # The live pass again, with its own issue time (the caller's second, not Redis TIME).
    assert (first.pass_id, first.issued_s) == ("pass-a", (T0_MS + 1000) // 1000 - 7)
    assert again == PassResult(False, "pass-a", first.issued_s, T0_MS, T0_MS + 301_000)
    record = await redis.get(keys.ticket_pass(p, event_id, "t0"))
    assert record == f"pass-a|{T0_MS + 301_000}|{first.issued_s}".encode()  # no token kept
    live = await admit(store, event_id, T0_MS + 2000)
    assert (live.fresh, live.outstanding) == (0, 1)
    # The pass expires unredeemed: a new one within the grace period.
    renewed = await issue(0, "t0", T0_MS + 302_000, "pass-c")
    assert renewed.new and renewed.pass_id == "pass-c"
    assert renewed.issued_s == (T0_MS + 302_000) // 1000 - 7
    await redis.zadd(shared.used_passes(p, event_id), {"pass-c": T0_MS + 303_000})
    with pytest.raises(ScriptRefused) as refused:
        await issue(0, "t0", T0_MS + 304_000)
    assert refused.value.code is ScriptError.ALREADY_ENTERED
    with pytest.raises(ScriptRefused) as refused:
        await issue(0, "t-late", T0_MS + GRACE_MS + 1000)
    assert refused.value.code is ScriptError.TURN_EXPIRED
    await store.set_event(event_id, action="close", now_ms=T0_MS + 305_000)
    with pytest.raises(ScriptRefused) as refused:
        await issue(0, "t9", T0_MS + 306_000)
    assert refused.value.code is ScriptError.CLOSED


async def test_set_event_transitions(store: RedisStore, event_id: str) -> None:
    await store.load_event(config(event_id))
    paused = await store.set_event(event_id, action="pause", rate=30, now_ms=T0_MS + 1)
    assert (paused.old_state, paused.new_state, paused.old_rate) == ("scheduled", "paused", 60)
    with pytest.raises(ScriptRefused) as refused:
        await store.set_event(event_id, action="pause", now_ms=T0_MS + 2)
    assert refused.value.code is ScriptError.BAD_TRANSITION
    resumed = await store.set_event(event_id, action="resume", now_ms=T0_MS + 3)
    assert resumed.new_state == "prequeue"
    with pytest.raises(ScriptRefused) as refused:
        await store.set_event(event_id, action="resume", now_ms=T0_MS + 4)
    assert refused.value.code is ScriptError.BAD_TRANSITION
    with pytest.raises(ScriptRefused) as refused:
        await store.set_event(event_id, action="explode", now_ms=T0_MS + 4)
    assert refused.value.code is ScriptError.BAD_TRANSITION
    changed = await store.set_event(event_id, cap=3, now_ms=T0_MS + 5)
    assert changed.old_cap == 10 and changed.new_state == "prequeue"
    closed = await store.set_event(event_id, action="close", now_ms=T0_MS + 6)
    assert closed.new_state == "closed"
    with pytest.raises(ScriptRefused) as refused:
        await store.set_event(event_id, action="resume", now_ms=T0_MS + 7)
    assert refused.value.code is ScriptError.CLOSED
    live = await admit(store, event_id, T0_MS + 8)
    assert (live.state, live.rate, live.cap) == ("closed", 30, 3)


async def test_every_key_carries_prefix_and_event_tag(
    redis: aioredis.Redis, store: RedisStore, event_id: str
) -> None:
    await store.load_event(config(event_id, state="open", opens_at_ms=T0_MS))
    await store.join_line(event_id, 2, "00", T0_MS)
    await admit(store, event_id, T0_MS)
    await store.issue_pass(
        event_id, ticket_id="t0", line_index=0, pass_id="p0", issued_s=1, pass_ttl_ms=1000,
        grace_ms=GRACE_MS, hold_ms=HOLD_MS, now_ms=T0_MS,
    )  # fmt: skip
    found = [k.decode() async for k in redis.scan_iter(match=f"*{event_id}*")]
    assert len(found) >= 4
    assert all(k.startswith(f"{store.prefix}{{ev:{event_id}}}:") for k in found)


async def test_issue_pass_record_expires_after_grace_and_pass(
    redis: aioredis.Redis, store: RedisStore, event_id: str
) -> None:
    await store.load_event(config(event_id, state="open", opens_at_ms=T0_MS))
    await store.join_line(event_id, 1, "00", T0_MS)
    await admit(store, event_id, T0_MS)
    await store.issue_pass(
        event_id, ticket_id="t0", line_index=0, pass_id="p0", issued_s=1, pass_ttl_ms=300_000,
        grace_ms=GRACE_MS, hold_ms=HOLD_MS, now_ms=T0_MS + 5000,
    )  # fmt: skip
    ttl_ms = await redis.pttl(keys.ticket_pass(store.prefix, event_id, "t0"))
    # Kept until the grace period ends (600 s after the turn) plus a minute, not forever.
    assert GRACE_MS - 5000 + 60_000 - 1000 <= ttl_ms <= GRACE_MS - 5000 + 60_000


async def test_a_ticket_enters_once_even_after_booking_forgets_the_pass(
    redis: aioredis.Redis, store: RedisStore, event_id: str
) -> None:
    p = store.prefix
    await store.load_event(config(event_id, state="open", opens_at_ms=T0_MS))
    await store.join_line(event_id, 1, "00", T0_MS)
    await admit(store, event_id, T0_MS)

    async def issue(now: int, pass_id: str) -> PassResult:
        return await store.issue_pass(
            event_id, ticket_id="t0", line_index=0, pass_id=pass_id, issued_s=now // 1000,
            pass_ttl_ms=60_000, grace_ms=GRACE_MS, hold_ms=HOLD_MS, now_ms=now,
        )  # fmt: skip

    await issue(T0_MS + 1000, "pass-a")
    await redis.zadd(shared.used_passes(p, event_id), {"pass-a": T0_MS + 2000})
    live = await admit(store, event_id, T0_MS + 3000)  # the refresher sees the redemption
    assert live.outstanding == 0
    # Booking prunes its used passes after a while; the ticket still cannot mint another.
    await redis.delete(shared.used_passes(p, event_id))
    with pytest.raises(ScriptRefused) as refused:
        await issue(T0_MS + 200_000, "pass-b")
    assert refused.value.code is ScriptError.ALREADY_ENTERED


async def test_issue_pass_reads_a_record_left_in_the_older_form(
    redis: aioredis.Redis, store: RedisStore, event_id: str
) -> None:
    """A record written before issued_s was stored ("pass_id|expires_ms|token") is still the
    ticket's live pass, issued when it was recorded (expiry - pass ttl)."""
    await store.load_event(config(event_id, state="open", opens_at_ms=T0_MS))
    await store.join_line(event_id, 1, "00", T0_MS)
    await admit(store, event_id, T0_MS)
    record = keys.ticket_pass(store.prefix, event_id, "t0")
    await redis.set(record, f"old-pass|{T0_MS + 301_500}|eyJh.b2xk.c2ln", px=600_000)
    again = await store.issue_pass(
        event_id, ticket_id="t0", line_index=0, pass_id="new-pass", issued_s=9,
        pass_ttl_ms=300_000, grace_ms=GRACE_MS, hold_ms=HOLD_MS, now_ms=T0_MS + 2000,
    )  # fmt: skip
    assert again == PassResult(False, "old-pass", (T0_MS + 1500) // 1000, T0_MS, T0_MS + 301_500)


async def test_scripts_work_again_after_redis_forgets_them(
    redis: aioredis.Redis, store: RedisStore, event_id: str
) -> None:
    """After SCRIPT FLUSH (a restart, a new node) each script meets NOSCRIPT once, is loaded
    again, and the call goes through."""
    await store.load_event(config(event_id, state="open", opens_at_ms=T0_MS))
    await redis.script_flush()
    assert (await store.join_line(event_id, 2, "00", T0_MS)).first == 0
    await redis.script_flush()
    assert (await admit(store, event_id, T0_MS)).admitted == 1
    assert await redis.script_exists(SCRIPTS["admit_next"].sha) == [True]


async def test_admit_next_counts_turns_that_took_no_pass_as_dormant(
    store: RedisStore, event_id: str
) -> None:
    await store.load_event(config(event_id, rate=600, cap=100, state="open", opens_at_ms=T0_MS))
    await store.join_line(event_id, 10, "00", T0_MS)
    first = await admit(store, event_id, T0_MS)
    assert first.admitted == 10 and (first.matured, first.dormant) == (0, 0)
    for index in range(3):  # three residents take their pass within seconds
        await store.issue_pass(
            event_id, ticket_id=f"t{index}", line_index=index, pass_id=f"p{index}",
            issued_s=T0_MS // 1000 + 5, pass_ttl_ms=300_000, grace_ms=GRACE_MS,
            hold_ms=HOLD_MS, now_ms=T0_MS + 5000,
        )  # fmt: skip
    young = await admit(store, event_id, T0_MS + 10_000)  # 10 s: too soon to tell
    assert (young.matured, young.dormant) == (0, 0)
    later = await admit(store, event_id, T0_MS + 25_000)  # 25 s: seven took no pass
    assert (later.matured, later.dormant) == (10, 7) and later.fresh == 7
    gone = await admit(store, event_id, T0_MS + HOLD_MS + 2000)  # their hold is over
    assert (gone.matured, gone.dormant, gone.fresh) == (0, 0, 0)
