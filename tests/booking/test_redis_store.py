"""Every Lua script through its wrapper: each return code, and expiry via injected time."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from booking.errors import Busy
from booking.store import keys
from booking.store.redis_store import Code, RedisStore, SlotState
from machiai import keys as shared_keys

T0 = 1_800_000_000_000  # an injected clock (ms)


def state(
    slot_id: str, *, cap: int = 2, booked: int = 0, closed: bool = False, ver: int = 1
) -> SlotState:
    return SlotState(slot_id, ver, cap, booked, closed, T0 - 1000, T0 + 3_600_000)


async def test_hold_slot_codes(store: RedisStore) -> None:
    sid = uuid.uuid4().hex
    assert await store.hold_slot(sid, "h1", 1000, T0) == Code.NOT_LOADED
    assert await store.apply_slot(state(sid, cap=2))
    assert await store.hold_slot(sid, "h1", 1000, T0 - 5000) == Code.NOT_OPEN
    assert await store.hold_slot(sid, "h1", 1000, T0 + 3_600_000) == Code.ENDED
    assert await store.hold_slot(sid, "h1", 1000, T0) == 1
    assert await store.hold_slot(sid, "h2", 1000, T0) == 0
    assert await store.hold_slot(sid, "h3", 1000, T0 + 999) == Code.FULL
    # Expired holds give their place back, lazily, in the same script.
    assert await store.hold_slot(sid, "h3", 1000, T0 + 1000) == 1
    assert await store.apply_slot(state(sid, cap=2, closed=True, ver=2))
    assert await store.hold_slot(sid, "h4", 1000, T0 + 1000) == Code.CLOSED


async def test_hold_slot_same_id_is_not_counted_twice(store: RedisStore) -> None:
    sid = uuid.uuid4().hex
    await store.apply_slot(state(sid, cap=1))
    assert await store.hold_slot(sid, "h1", 1000, T0) == 0
    assert await store.hold_slot(sid, "h1", 1000, T0 + 10) == 0


async def test_booked_places_count_against_capacity(store: RedisStore) -> None:
    sid = uuid.uuid4().hex
    await store.apply_slot(state(sid, cap=3, booked=2))
    assert await store.hold_slot(sid, "h1", 1000, T0) == 0
    assert await store.hold_slot(sid, "h2", 1000, T0) == Code.FULL
    assert (await store.slot_left([sid]))[sid] is not None


async def test_claim_hold_extends_and_expires(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    sid = uuid.uuid4().hex
    await store.apply_slot(state(sid))
    assert await store.claim_hold(sid, "nope", 500, T0) == Code.HOLD_EXPIRED
    await store.hold_slot(sid, "h1", 1000, T0)
    assert await store.claim_hold(sid, "h1", 5000, T0 + 100) == 5000
    # Never shortened by a smaller grace.
    assert await store.claim_hold(sid, "h1", 10, T0 + 200) == 4900
    assert await store.claim_hold(sid, "h1", 10, T0 + 5100) == Code.HOLD_EXPIRED
    assert await redis.zscore(keys.slot_holds(redis_prefix, sid), "h1") is None


async def test_apply_slot_newest_version_wins(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    sid = uuid.uuid4().hex
    assert await store.apply_slot(state(sid, cap=5, booked=1, ver=3))
    assert not await store.apply_slot(state(sid, cap=5, booked=0, ver=2))
    assert not await store.apply_slot(state(sid, cap=5, booked=0, ver=3))
    inv = keys.slot_inventory(redis_prefix, sid)
    assert await redis.hget(inv, "booked") == b"1"
    await store.hold_slot(sid, "h1", 1000, T0)
    # A stale version still drops the named hold.
    assert not await store.apply_slot(state(sid, cap=5, booked=2, ver=1), drop_hold="h1")
    assert await redis.zscore(keys.slot_holds(redis_prefix, sid), "h1") is None
    assert await store.apply_slot(state(sid, cap=5, booked=2, ver=4))
    assert await redis.hget(inv, "booked") == b"2"


async def test_release_hold(store: RedisStore) -> None:
    sid = uuid.uuid4().hex
    await store.apply_slot(state(sid, cap=1))
    await store.hold_slot(sid, "h1", 1000, T0)
    assert await store.release_hold(sid, "h1")
    assert not await store.release_hold(sid, "h1")
    assert await store.hold_slot(sid, "h2", 1000, T0) == 0


async def test_resident_pointer_claim_release_extend(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    assert await store.claim_resident("131001", "0000000001", "h1|s1", 60_000) == (0, "h1|s1")
    assert await store.claim_resident("131001", "0000000001", "h2|s2", 60_000) == (
        Code.HOLD_EXISTS,
        "h1|s1",
    )
    assert await store.resident_pointer("131001", "0000000001") == "h1|s1"
    assert not await store.release_resident("131001", "0000000001", "h2|s2")
    assert await store.release_resident("131001", "0000000001", "h1|s1", extend_ms=120_000)
    ttl = await redis.pttl(keys.resident_hold(redis_prefix, "131001", "0000000001"))
    assert 60_000 < ttl <= 120_000
    assert await store.release_resident("131001", "0000000001", "h1|s1")
    assert await store.resident_pointer("131001", "0000000001") is None
    # The pointer expires on its own (PX).
    assert (await store.claim_resident("131001", "0000000001", "h3|s3", 1))[0] == 0
    await redis.delete(keys.resident_hold(redis_prefix, "131001", "0000000001"))
    assert (await store.claim_resident("131001", "0000000001", "h4|s4", 60_000))[0] == 0


async def test_open_session_redeems_pass_once(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    ev = "ev-" + uuid.uuid4().hex[:6]
    assert await store.open_session(ev, "p1", "s1", 60_000, 600_000, T0) == 1
    assert await store.open_session(ev, "p1", "s2", 60_000, 600_000, T0) == Code.PASS_USED
    assert await store.pass_used(ev, "p1")
    assert await store.open_session(ev, "p2", "s2", 60_000, 600_000, T0 + 1) == 2
    assert await store.session_expiry_ms(ev, "s1") == T0 + 60_000
    # A later session prunes lapsed ones.
    assert await store.open_session(ev, "p3", "s3", 60_000, 600_000, T0 + 60_000) == 2
    await store.end_session(ev, "s2")
    assert await store.session_expiry_ms(ev, "s2") is None
    assert await redis.zscore(shared_keys.used_passes(redis_prefix, ev), "p1") == T0


async def test_hit_counter_window(store: RedisStore, redis_prefix: str) -> None:
    key = keys.throttle_client(redis_prefix, "127.0.0.1")
    assert (await store.hit_counter(key, 60_000, 2, commit=False)).count == 0
    first = await store.hit_counter(key, 60_000, 2, commit=True)
    assert first.count == 1 and 0 < first.ttl_ms <= 60_000
    assert (await store.hit_counter(key, 60_000, 2, commit=True)).count == 2
    assert (await store.hit_counter(key, 60_000, 2, commit=False)).count == 2
    short = keys.throttle_client(redis_prefix, "10.0.0.1")
    await store.hit_counter(short, 1, 2, commit=True)
    import asyncio

    await asyncio.sleep(0.01)
    assert (await store.hit_counter(short, 1, 2, commit=False)).count == 0


async def test_epoch_and_event_status(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    assert await store.epoch() is None
    await store.set_epoch("e1")
    assert await store.epoch() == "e1"
    ev = "ev-" + uuid.uuid4().hex[:6]
    now = await store.now_ms()
    await store.open_session(ev, "p1", "s1", 60_000, 600_000)
    assert await store.publish_event_status(ev, 7, 0, 12.5, now) == 1
    inv = await redis.hgetall(shared_keys.event_inventory(redis_prefix, ev))
    assert inv[b"remaining"] == b"7"
    load = await redis.hgetall(shared_keys.booking_load(redis_prefix, ev))
    assert load[b"active_sessions"] == b"1" and load[b"p95_ms"] == b"12.5"


async def script_commands(redis: aioredis.Redis) -> int:
    """SCRIPT subcommands served so far (Redis 6 counts them as one, Redis 7 apart)."""
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_script"))


async def test_finish_confirm_in_one_round_trip_and_after_redis_lost_its_scripts(
    store: RedisStore, redis: aioredis.Redis
) -> None:
    # The first round loads whatever script this Redis has not seen yet; then measure.
    for round_, flush_scripts in enumerate((False, False, True)):
        sid = uuid.uuid4().hex
        voucher = uuid.uuid4().hex[:10]
        await store.apply_slot(state(sid, cap=2))
        assert await store.hold_slot(sid, "h1", 60_000, T0) == 1
        assert await store.claim_resident("990001", voucher, f"{sid}.h1", 60_000) == (
            0,
            f"{sid}.h1",
        )
        if flush_scripts:
            await redis.script_flush()  # as after a Redis restart: every script is gone
        before = await script_commands(redis)
        await store.finish_confirm(
            [state(sid, cap=2, booked=1, ver=2)], sid, "h1", "990001", voucher, f"{sid}.h1"
        )
        after = await script_commands(redis)
        # No SCRIPT EXISTS first; a SCRIPT LOAD only when Redis had lost the scripts.
        if round_:
            assert after - before == (2 if flush_scripts else 0)
        # The booking is mirrored, the hold is gone, and so is the resident's pointer.
        assert (await store.slot_left([sid]))[sid] == 1
        assert await store.resident_pointer("990001", voucher) is None


async def test_claim_resident_and_hold_in_one_round_trip(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    """Both halves and the session's expiry come back together; a Redis error in either
    half gives the other back; scripts Redis lost are loaded again."""
    sid = uuid.uuid4().hex
    await store.apply_slot(SlotState(sid, 1, 1, 0, False, 0, 4_000_000_000_000))
    who = ("131001", "0000000101")
    first = await store.claim_resident_and_hold(who, f"{sid}.a", sid, "a:r", 60_000)
    assert (first.pointer_code, first.left, first.session_expiry_ms) == (0, 0, None)
    again = await store.claim_resident_and_hold(who, f"{sid}.b", sid, "b:r", 60_000)
    assert (again.pointer_code, again.current_pointer, again.left) == (
        Code.HOLD_EXISTS,
        f"{sid}.a",
        Code.FULL,
    )

    sessions = shared_keys.booking_sessions(redis_prefix, "ev")
    await redis.zadd(sessions, {"s1": 4_000_000_000_000})
    other = uuid.uuid4().hex
    await store.apply_slot(SlotState(other, 1, 2, 0, False, 0, 4_000_000_000_000))
    checked = await store.claim_resident_and_hold(
        ("131001", "0000000102"), f"{other}.c", other, "c:r", 60_000, session=("ev", "s1")
    )
    assert (checked.pointer_code, checked.left) == (0, 1)
    assert checked.session_expiry_ms == 4_000_000_000_000
    unknown = await store.claim_resident_and_hold(
        ("131001", "0000000103"), f"{other}.d", other, "d:r", 60_000, session=("ev", "nope")
    )
    assert (unknown.pointer_code, unknown.left, unknown.session_expiry_ms) == (0, 0, None)

    broken = uuid.uuid4().hex
    await redis.set(keys.slot_inventory(redis_prefix, broken), "not a hash")
    with pytest.raises(Busy):
        await store.claim_resident_and_hold(
            ("131001", "0000000104"), f"{broken}.e", broken, "e:r", 60_000
        )
    assert await store.resident_pointer("131001", "0000000104") is None

    await redis.script_flush()
    third = uuid.uuid4().hex
    await store.apply_slot(SlotState(third, 1, 1, 0, False, 0, 4_000_000_000_000))
    reloaded = await store.claim_resident_and_hold(
        ("131001", "0000000105"), f"{third}.f", third, "f:r", 60_000
    )
    assert (reloaded.pointer_code, reloaded.left) == (0, 0)
    assert await store.resident_pointer("131001", "0000000105") == f"{third}.f"
