"""Every Lua script through its wrapper: each return code, and expiry via injected time."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from booking.domain import Channel, HoldRef, Refusal, Resident, SlotState
from booking.errors import Busy
from booking.store import keys
from booking.store.redis_store import RedisStore, ScriptRefused
from machiai import keys as shared_keys
from tests.booking.helpers import command_stats, master_count

T0 = 1_800_000_000_000  # an injected clock (ms)
WHO = Resident("131001", "0000000001")


def state(
    slot_id: str, *, cap: int = 2, booked: int = 0, closed: bool = False, ver: int = 1
) -> SlotState:
    return SlotState(slot_id, ver, cap, booked, closed, T0 - 1000, T0 + 3_600_000)


def open_now(slot_id: str, *, cap: int = 2, booked: int = 0, ver: int = 1) -> SlotState:
    """A slot bookable at any time these tests run (for counts read on Redis's own clock)."""
    return SlotState(slot_id, ver, cap, booked, False, 0, 4_000_000_000_000)


def new_slot() -> str:
    return str(uuid.uuid4())


def hold(slot_id: str, n: int = 1) -> HoldRef:
    return HoldRef(slot_id, f"{n:032x}")


async def hold_code(store: RedisStore, ref: HoldRef, now_ms: int, who: Resident = WHO) -> int:
    """Places left, or the refusal's code."""
    try:
        return await store.hold_slot(ref, who, 1000, now_ms)
    except ScriptRefused as refused:
        return int(refused.code)


async def test_hold_slot_codes(store: RedisStore) -> None:
    sid = new_slot()
    assert await hold_code(store, hold(sid, 1), T0) == Refusal.NOT_LOADED
    assert await store.apply_slot(state(sid, cap=2))
    assert await hold_code(store, hold(sid, 1), T0 - 5000) == Refusal.NOT_OPEN
    assert await hold_code(store, hold(sid, 1), T0 + 3_600_000) == Refusal.ENDED
    assert await hold_code(store, hold(sid, 1), T0) == 1
    assert await hold_code(store, hold(sid, 2), T0) == 0
    assert await hold_code(store, hold(sid, 3), T0 + 999) == Refusal.FULL
    # Expired holds give their place back, lazily, in the same script.
    assert await hold_code(store, hold(sid, 3), T0 + 1000) == 1
    assert await store.apply_slot(state(sid, cap=2, closed=True, ver=2))
    assert await hold_code(store, hold(sid, 4), T0 + 1000) == Refusal.CLOSED


async def test_hold_slot_same_hold_is_not_counted_twice(store: RedisStore) -> None:
    sid = new_slot()
    await store.apply_slot(state(sid, cap=1))
    assert await hold_code(store, hold(sid), T0) == 0
    assert await hold_code(store, hold(sid), T0 + 10) == 0
    # The same token for another resident is another hold.
    assert await hold_code(store, hold(sid), T0 + 10, Resident("131001", "0000000002")) == (
        Refusal.FULL
    )


async def test_booked_places_count_against_capacity(store: RedisStore) -> None:
    sid = new_slot()
    await store.apply_slot(state(sid, cap=3, booked=2))
    assert await hold_code(store, hold(sid, 1), T0) == 0
    assert await hold_code(store, hold(sid, 2), T0) == Refusal.FULL


async def test_places_left_count_only_what_can_be_held_now(store: RedisStore) -> None:
    """Closed, not yet open or past its window: no place to offer (the hold would refuse)."""
    free, closed, early, late, gone = (new_slot() for _ in range(5))
    now = await store.now_ms()
    await store.apply_slot(open_now(free, cap=3, booked=1))
    await store.apply_slot(SlotState(closed, 1, 3, 0, True, 0, 4_000_000_000_000))
    await store.apply_slot(SlotState(early, 1, 3, 0, False, now + 60_000, now + 120_000))
    await store.apply_slot(SlotState(late, 1, 3, 0, False, now - 120_000, now - 60_000))
    await store.hold_slot(hold(free), WHO, 60_000)
    left = await store.slot_left([free, closed, early, late, gone])
    assert left == {free: 1, closed: 0, early: 0, late: 0, gone: None}


async def test_claim_hold_extends_and_expires(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    sid = new_slot()
    await store.apply_slot(state(sid))
    assert (await store.claim_hold(hold(sid, 9), WHO, 500, now_ms=T0)).left_ms is None
    await store.hold_slot(hold(sid), WHO, 1000, T0)
    assert (await store.claim_hold(hold(sid), WHO, 5000, now_ms=T0 + 100)).left_ms == 5000
    # Never shortened by a smaller grace.
    assert (await store.claim_hold(hold(sid), WHO, 10, now_ms=T0 + 200)).left_ms == 4900
    assert (await store.claim_hold(hold(sid), WHO, 10, now_ms=T0 + 5100)).left_ms is None
    member = hold(sid).member(WHO)
    assert await redis.zscore(keys.slot_holds(redis_prefix, sid), member) is None


async def test_claim_hold_brings_the_session_expiry_along(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    sid = new_slot()
    await store.apply_slot(state(sid))
    await store.hold_slot(hold(sid), WHO, 1000, T0)
    await redis.zadd(shared_keys.booking_sessions(redis_prefix, "ev"), {"s1": T0 + 60_000})
    claim = await store.claim_hold(hold(sid), WHO, 500, session=("ev", "s1"), now_ms=T0)
    assert (claim.left_ms, claim.session_expiry_ms) == (1000, T0 + 60_000)
    gone = await store.claim_hold(hold(sid), WHO, 500, session=("ev", "nope"), now_ms=T0)
    assert (gone.left_ms, gone.session_expiry_ms) == (1000, None)


async def test_apply_slot_newest_version_wins(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    sid = new_slot()
    assert await store.apply_slot(state(sid, cap=5, booked=1, ver=3))
    assert not await store.apply_slot(state(sid, cap=5, booked=0, ver=2))
    assert not await store.apply_slot(state(sid, cap=5, booked=0, ver=3))
    inv = keys.slot_inventory(redis_prefix, sid)
    assert await redis.hget(inv, "booked") == b"1"
    await store.hold_slot(hold(sid), WHO, 1000, T0)
    # A stale version still drops the confirmed hold (and the pointer).
    await store.finish_confirm([state(sid, cap=5, booked=2, ver=1)], hold(sid), WHO)
    assert await redis.zscore(keys.slot_holds(redis_prefix, sid), hold(sid).member(WHO)) is None
    assert await redis.hget(inv, "booked") == b"1"
    assert await store.apply_slot(state(sid, cap=5, booked=2, ver=4))
    assert await redis.hget(inv, "booked") == b"2"


async def test_give_back_returns_the_place_and_the_pointer(store: RedisStore) -> None:
    sid = new_slot()
    await store.apply_slot(open_now(sid, cap=1))
    first = await store.claim_resident_and_hold(WHO, hold(sid), 60_000)
    assert first.pointer_taken and first.left == 0
    await store.give_back(hold(sid), WHO, pointer=False)
    assert await store.resident_hold(WHO) == hold(sid)
    assert (await store.slot_left([sid]))[sid] == 1
    # A pointer is dropped only if it still names this hold (compare-and-delete).
    await store.give_back(hold(sid, 2), WHO)
    assert await store.resident_hold(WHO) == hold(sid)
    await store.give_back(hold(sid), WHO)
    assert await store.resident_hold(WHO) is None


async def test_resident_pointer_one_live_hold_expiring_with_it(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    sid = new_slot()
    await store.apply_slot(state(sid, cap=5))
    taken = await store.claim_resident_and_hold(WHO, hold(sid, 1), 60_000, now_ms=T0)
    assert taken.pointer_taken and taken.existing is None
    refused = await store.claim_resident_and_hold(WHO, hold(sid, 2), 60_000, now_ms=T0)
    assert not refused.pointer_taken and refused.existing == hold(sid, 1)
    ttl = await redis.pttl(keys.resident_hold(redis_prefix, WHO.municipality, WHO.voucher))
    assert 0 < ttl <= 60_000
    await store.give_back(hold(sid, 2), WHO, pointer=False)
    # The pointer expires on its own (PX = hold time).
    other = Resident("131001", "0000000009")
    assert (await store.claim_resident_and_hold(other, hold(sid, 3), 1)).pointer_taken
    await asyncio.sleep(0.01)
    assert (await store.claim_resident_and_hold(other, hold(sid, 4), 60_000)).pointer_taken


async def test_open_session_redeems_pass_once(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    ev = "ev-" + uuid.uuid4().hex[:6]
    assert await store.open_session(ev, "p1", "s1", 60_000, 600_000, T0) == 1
    with pytest.raises(ScriptRefused) as used:
        await store.open_session(ev, "p1", "s2", 60_000, 600_000, T0)
    assert used.value.code is Refusal.PASS_USED
    assert await store.pass_used(ev, "p1")
    assert await store.open_session(ev, "p2", "s2", 60_000, 600_000, T0 + 1) == 2
    assert await store.session_expiry_ms(ev, "s1") == T0 + 60_000
    # A later session prunes lapsed ones.
    assert await store.open_session(ev, "p3", "s3", 60_000, 600_000, T0 + 60_000) == 2
    await store.end_session(ev, "s2")
    assert await store.session_expiry_ms(ev, "s2") is None
    assert await redis.zscore(shared_keys.used_passes(redis_prefix, ev), "p1") == T0


async def test_attempt_counters_count_in_a_window(store: RedisStore) -> None:
    first = await store.client_attempts("127.0.0.1", 60_000)
    assert first.count == 1 and 0 < first.ttl_ms <= 60_000
    assert (await store.client_attempts("127.0.0.1", 60_000)).count == 2
    who = Resident("131001", uuid.uuid4().hex[:10])
    assert (await store.voucher_failures(who, 60_000, commit=False)).count == 0
    assert (await store.voucher_failures(who, 60_000, commit=True)).count == 1
    assert (await store.voucher_failures(who, 60_000, commit=False)).count == 1
    await store.client_attempts("10.0.0.1", 1)
    await asyncio.sleep(0.01)
    assert (await store.client_attempts("10.0.0.1", 60_000)).count == 1


async def test_epoch_and_event_status(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    assert await store.epoch() is None
    await store.set_epoch("e1")
    assert await store.epoch() == "e1"
    ev = "ev-" + uuid.uuid4().hex[:6]
    now = await store.now_ms()
    await store.open_session(ev, "p1", "s1", 60_000, 600_000)
    await store.open_session(ev, "p2", "s2", 1, 600_000, now - 10_000)
    await store.publish_event_status(ev, 7, 12.5, now)
    inv = await redis.hgetall(shared_keys.event_inventory(redis_prefix, ev))
    assert inv[b"remaining"] == b"7"
    load = await redis.hgetall(shared_keys.booking_load(redis_prefix, ev))
    assert load == {b"p95_ms": b"12.5", b"updated_ms": str(now).encode()}
    # Lapsed sessions are pruned on the way.
    assert await redis.zcard(shared_keys.booking_sessions(redis_prefix, ev)) == 1


async def script_commands(redis: aioredis.Redis) -> int:
    """SCRIPT subcommands served so far (Redis 6 counts them as one, Redis 7 apart)."""
    stats = await command_stats(redis)
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_script"))


async def test_finish_confirm_in_one_round_trip_and_after_redis_lost_its_scripts(
    store: RedisStore, redis: aioredis.Redis
) -> None:
    # The first round loads whatever script this Redis has not seen yet; then measure.
    for round_, flush_scripts in enumerate((False, False, True)):
        sid = new_slot()
        who = Resident("990001", uuid.uuid4().hex[:10])
        await store.apply_slot(open_now(sid, cap=2))
        attempt = await store.claim_resident_and_hold(who, hold(sid), 60_000)
        assert attempt.pointer_taken and attempt.left == 1
        if flush_scripts:
            await redis.script_flush()  # as after a Redis restart: every script is gone
        before = await script_commands(redis)
        await store.finish_confirm([open_now(sid, cap=2, booked=1, ver=2)], hold(sid), who)
        after = await script_commands(redis)
        # No SCRIPT EXISTS first; a SCRIPT LOAD only when Redis had lost the scripts (on a
        # cluster, on every master: each may hold keys the script is called on).
        if round_:
            assert after - before == (2 * master_count(redis) if flush_scripts else 0)
        # The booking is mirrored, the hold is gone, and so is the resident's pointer.
        assert (await store.slot_left([sid]))[sid] == 1
        assert await store.resident_hold(who) is None


async def test_claim_resident_and_hold_in_one_round_trip(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    """Both halves and the session's expiry come back together; a Redis error in either
    half gives the other back; scripts Redis lost are loaded again."""
    sid = new_slot()
    await store.apply_slot(SlotState(sid, 1, 1, 0, False, 0, 4_000_000_000_000))
    who = Resident("131001", "0000000101")
    first = await store.claim_resident_and_hold(who, hold(sid, 1), 60_000)
    assert (first.pointer_taken, first.left, first.session_expiry_ms) == (True, 0, None)
    again = await store.claim_resident_and_hold(who, hold(sid, 2), 60_000)
    assert (again.pointer_taken, again.existing, again.left, again.refusal) == (
        False,
        hold(sid, 1),
        None,
        Refusal.FULL,
    )

    sessions = shared_keys.booking_sessions(redis_prefix, "ev")
    await redis.zadd(sessions, {"s1": 4_000_000_000_000})
    other = new_slot()
    await store.apply_slot(SlotState(other, 1, 2, 0, False, 0, 4_000_000_000_000))
    checked = await store.claim_resident_and_hold(
        Resident("131001", "0000000102"), hold(other, 3), 60_000, session=("ev", "s1")
    )
    assert (checked.pointer_taken, checked.left) == (True, 1)
    assert checked.session_expiry_ms == 4_000_000_000_000
    unknown = await store.claim_resident_and_hold(
        Resident("131001", "0000000103"), hold(other, 4), 60_000, session=("ev", "nope")
    )
    assert (unknown.pointer_taken, unknown.left, unknown.session_expiry_ms) == (True, 0, None)

    broken = new_slot()
    await redis.set(keys.slot_inventory(redis_prefix, broken), "not a hash")
    victim = Resident("131001", "0000000104")
    with pytest.raises(Busy):
        await store.claim_resident_and_hold(victim, hold(broken, 5), 60_000)
    assert await store.resident_hold(victim) is None

    await redis.script_flush()
    third = new_slot()
    await store.apply_slot(SlotState(third, 1, 1, 0, False, 0, 4_000_000_000_000))
    late = Resident("131001", "0000000105")
    reloaded = await store.claim_resident_and_hold(late, hold(third, 6), 60_000)
    assert (reloaded.pointer_taken, reloaded.left) == (True, 0)
    assert await store.resident_hold(late) == hold(third, 6)


async def test_a_hold_is_extended_once_and_only_while_it_is_the_residents(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    sid = new_slot()
    await store.apply_slot(open_now(sid, cap=2))
    taken = await store.claim_resident_and_hold(WHO, hold(sid), 1000)
    assert taken.pointer_taken
    assert await store.extend_hold(hold(sid), WHO, 60_000) > 50_000
    pointer = keys.resident_hold(redis_prefix, WHO.municipality, WHO.voucher)
    assert 50_000 < await redis.pttl(pointer) <= 60_000
    assert 50_000 < (await store.hold_left_ms(hold(sid), WHO) or 0) <= 60_000
    with pytest.raises(ScriptRefused) as again:
        await store.extend_hold(hold(sid), WHO, 60_000)
    assert again.value.code is Refusal.EXTENDED_BEFORE
    with pytest.raises(ScriptRefused) as other:
        await store.extend_hold(hold(sid, 2), WHO, 60_000)
    assert other.value.code is Refusal.HOLD_EXPIRED
    # Refused extensions kept nothing longer.
    assert await redis.zscore(keys.slot_holds(redis_prefix, sid), hold(sid, 2).member(WHO)) is None
    # The next hold of the resident may be extended once again.
    await store.give_back(hold(sid), WHO)
    assert await store.hold_left_ms(hold(sid), WHO) is None
    assert (await store.claim_resident_and_hold(WHO, hold(sid, 3), 1000)).pointer_taken
    assert await store.extend_hold(hold(sid, 3), WHO, 60_000) > 50_000


# -- the phone share (hold_slot-3, claim_hold-2, release_hold-2, apply_slot-3) -------------
RELEASE = T0 + 60_000
HOLD_MS = 600_000  # outlives RELEASE
PHONE = Channel.OPERATOR


def shared(
    slot_id: str, *, cap: int = 5, booked: int = 0, phone: int = 0, kept: int = 2, ver: int = 1
) -> SlotState:
    """A slot keeping ``kept`` places for the phone until RELEASE (window T0 - 1 s .. T0 + 1 h)."""
    return SlotState(
        slot_id, ver, cap, booked, False, T0 - 1000, T0 + 3_600_000, phone, kept, RELEASE
    )


async def channel_code(
    store: RedisStore, ref: HoldRef, now_ms: int, channel: Channel, who: Resident = WHO
) -> int:
    try:
        return await store.hold_slot(ref, who, HOLD_MS, now_ms, channel=channel)
    except ScriptRefused as refused:
        return int(refused.code)


async def test_web_holds_never_take_the_phone_share_before_its_release(store: RedisStore) -> None:
    """5 places, 2 kept: the web gets 3 (the hold answers what the web has left), the phone
    the other 2; at the release time the kept places are the web's at once, no job."""
    sid = new_slot()
    await store.apply_slot(shared(sid))
    web = [await channel_code(store, hold(sid, n), T0, Channel.WEB) for n in range(4)]
    assert web == [2, 1, 0, Refusal.FULL]
    # An operator still finds the kept places (and is told every place left).
    assert await channel_code(store, hold(sid, 10), T0, PHONE) == 1
    # One millisecond before the release the last kept place is still the phone's...
    assert await channel_code(store, hold(sid, 4), RELEASE - 1, Channel.WEB) == Refusal.FULL
    # ...and from the release on it is anyone's.
    assert await channel_code(store, hold(sid, 4), RELEASE, Channel.WEB) == 0
    assert await channel_code(store, hold(sid, 11), RELEASE, PHONE) == Refusal.FULL


async def test_phone_holds_overflow_into_the_web_pool(store: RedisStore) -> None:
    sid = new_slot()
    await store.apply_slot(shared(sid))
    assert [await channel_code(store, hold(sid, n), T0, PHONE) for n in range(3)] == [4, 3, 2]
    # The phone occupies 3 (its 2 kept and 1 of the web's): the web has 2.
    assert [await channel_code(store, hold(sid, n), T0, Channel.WEB) for n in (3, 4, 5)] == [
        1,
        0,
        Refusal.FULL,
    ]
    assert await channel_code(store, hold(sid, 6), T0, PHONE) == Refusal.FULL
    # A phone hold again is one hold (renewed), not one more place.
    assert await channel_code(store, hold(sid, 0), T0 + 10, PHONE) == 0


async def test_bookings_count_in_their_pool(store: RedisStore) -> None:
    """Booked 3 of 5, 1 by phone, 2 kept: the phone occupies 2, the web has 5 - 2 - 2 = 1."""
    sid = new_slot()
    await store.apply_slot(shared(sid, booked=3, phone=1))
    assert await channel_code(store, hold(sid, 1), T0, Channel.WEB) == 0
    assert await channel_code(store, hold(sid, 2), T0, Channel.WEB) == Refusal.FULL
    assert await channel_code(store, hold(sid, 3), T0, PHONE) == 0
    # Expired holds of either channel give their place back.
    assert await channel_code(store, hold(sid, 4), T0 + HOLD_MS, PHONE) == 1


async def test_a_mirror_without_phone_fields_keeps_nothing(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    """An inventory written before the phone share existed: every place is the web's."""
    sid = new_slot()
    await redis.hset(
        keys.slot_inventory(redis_prefix, sid),
        mapping={"ver": 1, "cap": 2, "booked": 0, "closed": 0, "from_ms": 0, "until_ms": T0 * 2},
    )
    assert [await channel_code(store, hold(sid, n), T0, Channel.WEB) for n in range(3)] == [
        1,
        0,
        Refusal.FULL,
    ]


async def test_phone_holds_are_claimed_released_and_dropped_like_web_ones(
    store: RedisStore, redis: aioredis.Redis, redis_prefix: str
) -> None:
    sid = new_slot()
    await store.apply_slot(shared(sid, cap=3, kept=3))
    phone_holds = keys.slot_phone_holds(redis_prefix, sid)
    assert await channel_code(store, hold(sid, 1), T0, PHONE) == 2
    assert await redis.zscore(phone_holds, hold(sid, 1).member(WHO)) == T0 + HOLD_MS
    assert await redis.zcard(keys.slot_holds(redis_prefix, sid)) == 0
    # Claimed (extended) wherever it is, whoever confirms it.
    claim = await store.claim_hold(hold(sid, 1), WHO, HOLD_MS, now_ms=T0 + 1000)
    assert claim.left_ms == HOLD_MS
    assert await redis.zscore(phone_holds, hold(sid, 1).member(WHO)) == T0 + 1000 + HOLD_MS
    # Given back at once.
    await store.give_back(hold(sid, 1), WHO, pointer=False)
    assert await redis.zcard(phone_holds) == 0
    assert (await store.claim_hold(hold(sid, 1), WHO, 10, now_ms=T0)).left_ms is None
    # Dropped by the mirror of its confirm, with the slot's phone count and share.
    assert await channel_code(store, hold(sid, 2), T0, PHONE) == 2
    await store.finish_confirm(
        [shared(sid, cap=3, kept=3, booked=1, phone=1, ver=2)], hold(sid, 2), WHO
    )
    assert await redis.zcard(phone_holds) == 0
    inv = await redis.hgetall(keys.slot_inventory(redis_prefix, sid))
    assert (inv[b"booked"], inv[b"phone"], inv[b"kept"], inv[b"release_ms"]) == (
        b"1",
        b"1",
        b"3",
        str(RELEASE).encode(),
    )


async def test_places_left_per_channel(store: RedisStore) -> None:
    """Residents are shown the web pool's places, operators every place; a share whose
    release has passed keeps nothing."""
    kept, released = new_slot(), new_slot()
    now = await store.now_ms()
    far = 4_000_000_000_000
    await store.apply_slot(SlotState(kept, 1, 10, 2, False, 0, far, 1, 3, far))
    await store.apply_slot(SlotState(released, 1, 10, 2, False, 0, far, 1, 3, now - 1))
    await store.hold_slot(hold(kept, 1), WHO, 60_000, channel=PHONE)
    await store.hold_slot(hold(kept, 2), WHO, 60_000)
    # kept: web 10 - (2 - 1) - 1 - max(1 + 1, 3) = 5; operators 10 - 2 - 2 = 6.
    assert await store.slot_left([kept, released]) == {kept: 5, released: 8}
    assert await store.slot_left([kept, released], PHONE) == {kept: 6, released: 8}
