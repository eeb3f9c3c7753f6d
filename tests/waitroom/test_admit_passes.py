"""admit_next-10's passes: expired ones leave, redeemed ones enter, as admit_next-9's scan
decided, at a cost that follows the redemptions since the last call (real Redis, injected
clock). admit_next-9 and issue_pass-8 (``legacy/``, as they were) still run here: in a
rolling upgrade the old processes call them on the same keys.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machiai import keys as shared
from tests.waitroom.conftest import T0_MS
from waitroom.errors import ScriptError
from waitroom.store import keys
from waitroom.store.redis_store import (
    REDEMPTION_LOOKBACK_MS,
    EventConfig,
    LiveState,
    RedisStore,
    ScriptRefused,
)

LEGACY = Path(__file__).parent / "legacy"
HOLD_MS = 120_000
RETENTION_S = 720
GRACE_MS = 10**9  # turns never expire here: the passes are under test
TICKETS = 8


@pytest.fixture
async def store(redis: aioredis.Redis, redis_prefix: str) -> AsyncIterator[RedisStore]:
    opened = RedisStore(redis, redis_prefix)
    try:
        yield opened
    finally:
        await opened.aclose()


class Event:
    """One open event whose first ``TICKETS`` tickets ("t0".."t7", index = number) are
    admitted, driven through the wrappers (new scripts) or the legacy texts (old ones)."""

    def __init__(self, redis: aioredis.Redis, store: RedisStore) -> None:
        self.redis = redis
        self.store = store
        self.id = f"ev-{uuid.uuid4().hex[:8]}"
        p = store.prefix
        self.used = shared.used_passes(p, self.id)
        self.tickets_key = keys.pass_tickets(p, self.id)
        self.entered_key = keys.entered(p, self.id)

    async def open(self) -> None:
        await self.store.load_event(
            EventConfig(
                self.id,
                "131001",
                "予約",
                "Booking",
                "open",
                rate=600_000,
                cap=100_000,
                prequeue_at_ms=T0_MS - 60_000,
                opens_at_ms=T0_MS,
                closes_at_ms=T0_MS + 30 * 86_400_000,
            )  # fmt: skip
        )
        await self.store.join_line(self.id, TICKETS, "00", T0_MS)
        assert (await self.admit(T0_MS)).admitted == TICKETS

    async def admit(self, now_ms: int, lookback_ms: int = REDEMPTION_LOOKBACK_MS) -> LiveState:
        return await self.store.admit_next(
            self.id, seed_hex="ab" * 16, hold_ms=HOLD_MS, retention_s=RETENTION_S,
            since_s=0, target_p95_ms=800, recover_per_s=0.05, load_stale_ms=30_000,
            lookback_ms=lookback_ms, now_ms=now_ms,
        )  # fmt: skip

    async def issue(self, ticket: int, now_ms: int, ttl_ms: int) -> tuple[str, int] | None:
        """(pass id, expiry ms) of a new pass; None when the script gave none."""
        pass_id = uuid.uuid4().hex
        try:
            got = await self.store.issue_pass(
                self.id, ticket_id=f"t{ticket}", line_index=ticket, pass_id=pass_id,
                issued_s=now_ms // 1000, pass_ttl_ms=ttl_ms, grace_ms=GRACE_MS,
                hold_ms=HOLD_MS, now_ms=now_ms,
            )  # fmt: skip
        except ScriptRefused as refused:
            assert refused.code is ScriptError.ALREADY_ENTERED
            return None
        return (pass_id, got.expires_ms) if got.new else None

    async def redeem(self, pass_id: str, score_ms: int) -> None:
        """What booking's open_session-2 writes (ZADD NX: a pass is redeemed once)."""
        await self.redis.zadd(self.used, {pass_id: score_ms}, nx=True)

    def _keys(self, ticket: int) -> list[str]:
        p, e = self.store.prefix, self.id
        return [
            keys.event(p, e), keys.batches(p, e), shared.used_passes(p, e),
            keys.ticket_pass(p, e, f"t{ticket}"), keys.issued(p, e), keys.passes(p, e),
            keys.entered(p, e), keys.grace_ext(p, e),
        ]  # fmt: skip

    async def legacy_issue(self, ticket: int, now_ms: int, ttl_ms: int) -> tuple[str, int] | None:
        """issue_pass-8 (an old process): the pass goes into passes, not into pass-tickets."""
        pass_id = uuid.uuid4().hex
        reply = await self.redis.eval(
            (LEGACY / "issue_pass-8.lua").read_text(), 8, *self._keys(ticket),
            f"t{ticket}", ticket, pass_id, now_ms // 1000, ttl_ms, GRACE_MS, HOLD_MS,
            now_ms, 0,
        )  # fmt: skip
        if isinstance(reply, int):
            assert reply == ScriptError.ALREADY_ENTERED
            return None
        return (pass_id, int(reply[4])) if int(reply[0]) == 0 else None

    async def legacy_admit(self, now_ms: int) -> int:
        """admit_next-9 (an old process): the scan; returns its outstanding."""
        p, e = self.store.prefix, self.id
        reply = await self.redis.eval(
            (LEGACY / "admit_next-9.lua").read_text(), 9,
            keys.event(p, e), keys.batches(p, e), shared.booking_sessions(p, e),
            shared.used_passes(p, e), shared.event_inventory(p, e), shared.booking_load(p, e),
            keys.issued(p, e), keys.passes(p, e), keys.entered(p, e),
            now_ms, "ab" * 16, HOLD_MS, RETENTION_S, 0, 800, "0.05", 30_000, 20_000,
        )  # fmt: skip
        fields = reply[1]
        return int(dict(zip(fields[::2], fields[1::2], strict=True))[b"outstanding"])

    async def entered(self) -> dict[str, int]:
        rows = await self.redis.zrange(self.entered_key, 0, -1, withscores=True)
        return {
            member.decode(): int(score) for member, score in cast(list[tuple[bytes, float]], rows)
        }


@dataclass
class Model:
    """admit_next-9's semantics, in plain Python."""

    passes: dict[str, tuple[str, int]] = field(default_factory=dict)  # pass -> ticket, expiry
    used: set[str] = field(default_factory=set)
    entered: dict[str, int] = field(default_factory=dict)  # ticket -> ms seen

    def admit(self, now_ms: int) -> int:
        # Expired first (a pass redeemed after it expired never enters), then the redeemed.
        self.passes = {p: v for p, v in self.passes.items() if v[1] > now_ms}
        for pass_id, (ticket, _) in list(self.passes.items()):
            if pass_id in self.used:
                del self.passes[pass_id]
                self.entered[ticket] = now_ms
        horizon = now_ms - RETENTION_S * 1000
        self.entered = {t: ms for t, ms in self.entered.items() if ms > horizon}
        return len(self.passes)


async def test_passes_redeemed_expired_and_waiting(
    redis: aioredis.Redis, store: RedisStore
) -> None:
    """Redemptions scored at the last call's very ms, or a little before it (a clock
    that stepped back, within the lookback), are seen; a pass redeemed after it expired,
    before any call saw the redemption, leaves as expired (as the scan decided)."""
    event = Event(redis, store)
    await event.open()
    t1 = T0_MS + 1000
    await event.admit(t1)  # the first call of this version: the one-off scan (of nothing)
    issued = {}
    for ticket, ttl_ms in ((0, 60_000), (1, 60_000), (2, 60_000), (3, 2000), (4, 60_000)):
        got = await event.issue(ticket, t1, ttl_ms)
        assert got is not None
        issued[ticket] = got[0]
    await event.redeem(issued[0], t1)  # the same ms as the last call
    await event.redeem(issued[1], t1 - REDEMPTION_LOOKBACK_MS // 2)  # skew, within lookback
    t2 = t1 + 250
    live = await event.admit(t2)
    assert live.outstanding == 3
    assert await event.entered() == {"t0": t2, "t1": t2}
    await event.redeem(issued[2], t2 + 100)
    await event.redeem(issued[3], t1 + 2500)  # after its expiry at t1 + 2000
    t3 = t1 + 3000
    live = await event.admit(t3)
    assert live.outstanding == 1
    assert await event.entered() == {"t0": t2, "t1": t2, "t2": t3}
    # pass-tickets holds exactly the waiting pass: kept in step with passes.
    assert await redis.hgetall(event.tickets_key) == {issued[4].encode(): b"t4"}
    # Tickets whose pass was redeemed get no other (t3: issue_pass reads its record).
    assert await event.issue(0, t3, 60_000) is None
    assert await event.issue(3, t3, 60_000) is None
    assert await event.issue(5, t3, 60_000) is not None
    assert (await event.admit(t3 + 250)).outstanding == 2


async def test_a_redemption_scored_before_the_lookback_waits_for_its_expiry(
    redis: aioredis.Redis, store: RedisStore
) -> None:
    """The limit of the design, stated: a redemption scored further back than the lookback
    before the last call (a clock step larger than it) is not looked up; its pass counts
    as active until it expires, as one never redeemed would."""
    event = Event(redis, store)
    await event.open()
    t1 = T0_MS + 1000
    got = await event.issue(0, t1, 10_000)
    assert got is not None
    await event.admit(t1)
    await event.redeem(got[0], t1 - REDEMPTION_LOOKBACK_MS - 1)
    assert (await event.admit(t1 + 250)).outstanding == 1
    assert (await event.admit(t1 + 10_000)).outstanding == 0
    assert await event.entered() == {}


async def test_passes_of_a_rolling_upgrade_are_scanned_once_then_followed(
    redis: aioredis.Redis, store: RedisStore
) -> None:
    """Passes issued by issue_pass-8 have no pass-tickets entry: the first admit_next-10
    (no "passes_ms" yet) scans them all, as admit_next-9 did, and maps the waiting ones;
    a call after admit_next-9 ran (it keeps no map) scans again; then redemptions of old
    and new passes alike are followed without a scan."""
    event = Event(redis, store)
    await event.open()
    t1 = T0_MS + 1000
    old = [await event.legacy_issue(ticket, t1, 60_000) for ticket in range(3)]
    assert all(old)
    old_ids = [got[0] for got in old if got]
    await event.redeem(old_ids[0], t1 + 10)
    assert await event.legacy_admit(t1 + 250) == 2
    await event.redeem(old_ids[1], t1 + 300)
    new = await event.issue(3, t1 + 300, 60_000)
    assert new is not None
    live = await event.admit(t1 + 500)  # first call of admit_next-10: the scan
    assert live.outstanding == 2
    assert await event.entered() == {"t0": t1 + 250, "t1": t1 + 500}
    assert await redis.hlen(event.tickets_key) == 2
    # An old process still issues and refreshes between two new calls.
    extra = await event.legacy_issue(4, t1 + 600, 60_000)
    assert extra is not None
    await event.redeem(new[0], t1 + 650)
    assert await event.legacy_admit(t1 + 700) == 2  # t2 and t4 wait
    await event.redeem(extra[0], t1 + 720)
    live = await event.admit(t1 + 750)
    assert live.outstanding == 1
    assert await event.entered() == {
        "t0": t1 + 250, "t1": t1 + 500, "t3": t1 + 700, "t4": t1 + 750,
    }  # fmt: skip
    await event.redeem(old_ids[2], t1 + 800)
    assert (await event.admit(t1 + 1000)).outstanding == 0
    assert (await event.entered())["t2"] == t1 + 1000


async def zscores_and_commands(redis: aioredis.Redis) -> tuple[int, int]:
    """(ZSCORE calls, all calls) the server has counted so far."""
    stats = await redis.info("commandstats")
    rows = {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}
    return rows.get("zscore", 0), sum(rows.values())


@pytest.mark.single_redis(reason="INFO commandstats counts one server's commands")
async def test_a_refresh_without_redemptions_does_not_look_at_every_pass(
    redis: aioredis.Redis, store: RedisStore
) -> None:
    """5,000 passes waiting and nothing redeemed: admit_next-10 looks up no pass (a handful
    of commands in all), where admit_next-9 looked up each one (5,000 ZSCORE)."""
    event = Event(redis, store)
    await event.open()
    t1 = T0_MS + 1000
    await event.admit(t1)
    n = 5000
    admitted = await store.join_line(event.id, n, "00", t1)
    assert (await event.admit(t1 + 1000)).admitted == TICKETS + n
    for i in range(n):
        await store.issue_pass(
            event.id, ticket_id=f"x{i}", line_index=admitted.first + i,
            pass_id=uuid.uuid4().hex, issued_s=1, pass_ttl_ms=600_000, grace_ms=GRACE_MS,
            hold_ms=HOLD_MS, now_ms=t1 + 1000,
        )  # fmt: skip

    async def cost(call_ms: int, legacy: bool = False) -> tuple[int, int]:
        zscore0, all0 = await zscores_and_commands(redis)
        if legacy:
            assert await event.legacy_admit(call_ms) == n
        else:
            assert (await event.admit(call_ms)).outstanding == n
        zscore1, all1 = await zscores_and_commands(redis)
        return zscore1 - zscore0, all1 - all0 - 1  # less one INFO

    await event.admit(t1 + 1250)
    zscores, commands = await cost(t1 + 1500)
    assert zscores == 0 and commands < 40, (zscores, commands)
    assert (await cost(t1 + 1750, legacy=True))[0] == n  # the old script: the scan
    # After an old process refreshed, one scan rebuilds the map; then none again.
    assert (await cost(t1 + 2000))[0] == n
    assert (await cost(t1 + 2250)) == (zscores, commands)


# One step of a random history: (what, ticket or pass number, ms).
Step = tuple[str, int, int]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.integers(0, TICKETS - 1), st.integers(500, 4000)),
        st.tuples(st.just("legacy_issue"), st.integers(0, TICKETS - 1), st.integers(500, 4000)),
        st.tuples(st.just("redeem"), st.integers(0, 30), st.integers(0, REDEMPTION_LOOKBACK_MS)),
        st.tuples(st.just("advance"), st.just(0), st.integers(0, 3000)),
        st.tuples(st.just("admit"), st.just(0), st.just(0)),
        st.tuples(st.just("legacy_admit"), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@given(steps=STEPS, legacy=st.booleans())
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
async def test_admit_next_agrees_with_the_scan_model(
    redis: aioredis.Redis, store: RedisStore, steps: list[Step], legacy: bool
) -> None:
    """Any history of passes issued (by issue_pass-9, or -8 of an old process), redeemed
    (scored at the clock, or up to the lookback before it), expiring as the clock moves, and
    refreshes (admit_next-10, or -9 of an old process): outstanding and the entered tickets
    (with the ms each was seen) are what admit_next-9's scan gives, in plain Python."""
    event = Event(redis, store)
    await event.open()
    model = Model()
    issued: list[str] = []
    now = T0_MS + 1000
    for what, number, ms in steps:
        if what == "legacy_issue" and not legacy:
            what = "issue"
        if what == "legacy_admit" and not legacy:
            what = "admit"
        if what in ("issue", "legacy_issue"):
            issue = event.issue if what == "issue" else event.legacy_issue
            got = await issue(number, now, ms)
            if got is not None:
                model.passes[got[0]] = (f"t{number}", got[1])
                issued.append(got[0])
        elif what == "redeem" and issued:
            pass_id = issued[number % len(issued)]
            await event.redeem(pass_id, now - ms)
            model.used.add(pass_id)
        elif what == "advance":
            now += ms
        elif what == "admit":
            live = await event.admit(now)
            assert live.outstanding == model.admit(now)
            assert await event.entered() == model.entered
        elif what == "legacy_admit":
            assert await event.legacy_admit(now) == model.admit(now)
            assert await event.entered() == model.entered
    live = await event.admit(now)
    assert live.outstanding == model.admit(now)
    assert await event.entered() == model.entered
