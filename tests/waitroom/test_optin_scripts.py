"""The "your turn is near" scripts through their wrappers, for every return code (real
Redis, injected clock): opt_in-5, claim_optins-5, settle_optins-3, and issue_pass-9's
longer grace."""

from __future__ import annotations

import pytest

from tests.waitroom.conftest import T0_MS
from tests.waitroom.test_scripts import GRACE_MS, HOLD_MS, admit, config, event_id, store
from waitroom.errors import ScriptError
from waitroom.store import keys
from waitroom.store.redis_store import RedisStore, ScriptRefused

__all__ = ["event_id", "store"]  # the fixtures, shared with test_scripts

NOW = T0_MS + 120_000  # after opening (config: opens at T0 + 60 s)


async def line_of(store: RedisStore, event_id: str, n: int, rate: int = 60) -> None:
    """An open event with ``n`` joined and the first second's admissions made."""
    await store.load_event(config(event_id, rate=rate, cap=1000))
    await store.join_line(event_id, n, "ab" * 16, NOW)


async def test_opt_in_codes(store: RedisStore, event_id: str) -> None:
    with pytest.raises(ScriptRefused) as refused:
        await store.opt_in(event_id, "t1", 5, "ja|email|a@example.jp|tok")
    assert refused.value.code is ScriptError.NOT_LOADED
    await line_of(store, event_id, 10)
    live = await admit(store, event_id, NOW)
    assert live.admitted == 1  # one second of budget at 60/min
    with pytest.raises(ScriptRefused) as refused:
        await store.opt_in(event_id, "t0", 0, "ja|email|a@example.jp|tok")
    assert refused.value.code is ScriptError.ALREADY_ADMITTED
    assert await store.opt_in(event_id, "t5", 5, "ja|email|a@example.jp|tok") == 0
    assert await store.opt_in(event_id, "t5", 5, "en|webhook|line-1|tok") == 1  # replaced
    p = store.prefix
    assert await store.client.zscore(keys.grace_ext(p, event_id), "t5") == 5
    assert await store.client.hget(keys.optin_data(p, event_id), "t5") == b"5|en|webhook|line-1|tok"
    # Being written: kept as it is.
    _, taken = await store.claim_optins(event_id, lead=10, most=10, lease_ms=1000, now_ms=NOW)
    assert taken == [("t5", "5|en|webhook|line-1|tok")]
    assert await store.opt_in(event_id, "t5", 5, "ja|email|b@example.jp|tok") == 2
    await store.set_event(event_id, action="close", now_ms=NOW)
    with pytest.raises(ScriptRefused) as refused:
        await store.opt_in(event_id, "t6", 6, "ja|email|a@example.jp|tok")
    assert refused.value.code is ScriptError.CLOSED


async def test_claim_takes_the_near_ones_once_and_lapsed_leases_again(
    store: RedisStore, event_id: str
) -> None:
    with pytest.raises(ScriptRefused) as refused:
        await store.claim_optins(event_id, lead=1, most=1, lease_ms=1, now_ms=NOW)
    assert refused.value.code is ScriptError.NOT_LOADED
    await line_of(store, event_id, 20)
    await admit(store, event_id, NOW)  # admitted = 1
    for i in range(2, 12):
        await store.opt_in(event_id, f"t{i}", i, f"ja|email|r{i}@example.jp|tok{i}")
    admitted, taken = await store.claim_optins(
        event_id, lead=4, most=100, lease_ms=60_000, now_ms=NOW
    )
    assert admitted == 1 and [t for t, _ in taken] == ["t2", "t3", "t4"]  # index < 1 + 4
    _, none = await store.claim_optins(event_id, lead=4, most=100, lease_ms=60_000, now_ms=NOW)
    assert none == []  # taken once: a second notifier gets nothing
    _, capped = await store.claim_optins(event_id, lead=100, most=2, lease_ms=60_000, now_ms=NOW)
    assert [t for t, _ in capped] == ["t5", "t6"]
    # Back (a failed write): claimable again at once. Done: gone for good.
    assert await store.settle_optins(event_id, ["t5"], done=False) == 1
    assert await store.settle_optins(event_id, ["t6"], done=True) == 1
    assert await store.settle_optins(event_id, ["t6"], done=True) == 0
    _, again = await store.claim_optins(event_id, lead=6, most=100, lease_ms=60_000, now_ms=NOW)
    assert [t for t, _ in again] == ["t5"]
    # A dead notifier's claims (t2-t4, t5) come back once their lease lapsed.
    _, lapsed = await store.claim_optins(
        event_id, lead=0, most=100, lease_ms=60_000, now_ms=NOW + 60_001
    )
    assert sorted(t for t, _ in lapsed) == ["t2", "t3", "t4", "t5"]
    # Closing drops every opt-in, claimed or not (addresses are not kept past the line).
    await store.set_event(event_id, action="close", now_ms=NOW)
    assert await store.claim_optins(event_id, lead=100, most=100, lease_ms=1, now_ms=NOW) == (
        1,
        [],
    )
    # SCAN, not KEYS: on a cluster KEYS asks one node.
    assert [k async for k in store.client.scan_iter(f"{store.prefix}*optin*")] == []


async def test_issue_pass_gives_an_opted_in_turn_the_longer_grace(
    store: RedisStore, event_id: str
) -> None:
    await line_of(store, event_id, 5, rate=600)
    for i in (2, 3):
        await store.opt_in(event_id, f"t{i}", i, "ja|email|a@example.jp|tok")
    await admit(store, event_id, NOW)  # 10 admitted at NOW
    late = NOW + GRACE_MS + 30_000

    async def issue(ticket: str, index: int, extra_ms: int) -> object:
        return await store.issue_pass(
            event_id, ticket_id=ticket, line_index=index, pass_id=f"p-{ticket}", issued_s=1,
            pass_ttl_ms=1000, grace_ms=GRACE_MS, hold_ms=HOLD_MS, now_ms=late,
            extra_grace_ms=extra_ms,
        )  # fmt: skip

    with pytest.raises(ScriptRefused) as refused:
        await issue("t4", 4, 60_000)  # did not opt in
    assert refused.value.code is ScriptError.TURN_EXPIRED
    assert (await issue("t2", 2, 60_000)).new  # type: ignore[attr-defined]
    with pytest.raises(ScriptRefused) as refused:
        await issue("t3", 3, 0)  # the setting at 0: no longer grace
    assert refused.value.code is ScriptError.TURN_EXPIRED
