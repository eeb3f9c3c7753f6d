"""The pre-queue shuffle: a bijection, uniform, ahead of later arrivals, auditable."""

from __future__ import annotations

import random

import asyncpg
from hypothesis import given, settings
from hypothesis import strategies as st

from machiai.tokens import Tokens
from tests.waitroom.conftest import T0_MS, AppFactory, FakeClock, add_event, line_of, running
from waitroom.services.estimate_wait import poll_interval_s, polls_per_second
from waitroom.services.prequeue_shuffle import permute
from waitroom.settings import WaitroomSettings

JSON = {"accept": "application/json", "cookie": "x=1"}
# Chi-square critical value, 7 degrees of freedom, p = 0.001.
CHI2_7_P001 = 24.322


@given(
    n=st.integers(min_value=1, max_value=3000),
    seed=st.binary(min_size=1, max_size=32).map(bytes.hex),
)
@settings(max_examples=60, deadline=None)
def test_permutation_is_a_bijection(n: int, seed: str) -> None:
    assert sorted(permute(i, n, seed) for i in range(n)) == list(range(n))


def test_shuffle_places_are_uniform_chi_square() -> None:
    n, runs = 8, 4000
    rng = random.Random(20260401)  # fixed seeds: the test is deterministic, not flaky
    counts = [[0] * n for _ in range(n)]
    for _ in range(runs):
        seed = rng.randbytes(16).hex()
        for p in range(n):
            counts[p][permute(p, n, seed)] += 1
    expected = runs / n
    for p in range(n):
        chi2 = sum((c - expected) ** 2 / expected for c in counts[p])
        assert chi2 < CHI2_7_P001, (p, counts[p], chi2)


async def test_prequeue_tickets_are_shuffled_ahead_of_later_arrivals(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock, tokens: Tokens
) -> None:
    opens = T0_MS + 60_000
    event_id = await add_event(
        db, state="scheduled", prequeue_at_ms=T0_MS, opens_at_ms=opens, rate=6
    )
    app = make_app()
    async with running(app) as client:
        early = [
            (await client.post(f"/events/{event_id}/join", headers=JSON)).json() for _ in range(30)
        ]
        assert {e["state"] for e in early} == {"prequeue"}
        assert all(e["position"] is None and e["opens_in_s"] == 60 for e in early)
        seed_before = await client.get(f"/events/{event_id}/prequeue-seed")
        assert seed_before.status_code == 409
        clock.now = opens
        late = [
            (await client.post(f"/events/{event_id}/join", headers=JSON)).json() for _ in range(10)
        ]
        await line_of(app).refresh(event_id)

        snap = line_of(app).cached(event_id)
        assert snap is not None
        admitted = snap.live.admitted
        assert admitted == 1  # the bucket's first second at 6/min

        async def index_of(ticket: str) -> int:
            """The line index the status reveals (admitted ones: below the counter)."""
            body = (await client.get(f"/events/{event_id}/status", params={"t": ticket})).json()
            if body["state"] == "admitted":
                return -1
            return int(body["ahead"]) + admitted

        early_idx = [await index_of(e["ticket"]) for e in early]
        late_idx = [await index_of(e["ticket"]) for e in late]
        assert sorted(early_idx) == [-1, *range(1, 30)]  # a permutation of the first 30 places
        assert late_idx == list(range(30, 40))  # later arrivals behind, in arrival order
        assert early_idx != sorted(early_idx)  # shuffled (fails with probability 1/30!)
        audit = (await client.get(f"/events/{event_id}/prequeue-seed")).json()
        assert audit["prequeue_count"] == 30 and audit["seed"] == snap.live.seed
        # Anyone can recompute every place from the published seed.
        for e, shown in zip(early, early_idx, strict=True):
            t = tokens.load_ticket(e["ticket"], 60, event_id)
            index = permute(t.arrival_no, audit["prequeue_count"], audit["seed"])
            assert index == shown or (shown == -1 and index < admitted)


@given(
    ahead=st.integers(min_value=0, max_value=10_000_000),
    more=st.integers(min_value=0, max_value=10_000_000),
    rate_per_min=st.floats(min_value=1, max_value=1_000_000),
)
def test_poll_interval_grows_with_distance_and_stays_in_bounds(
    ahead: int, more: int, rate_per_min: float
) -> None:
    s = WaitroomSettings.from_env(
        {
            "REDIS_URL": "redis://x",
            "DATABASE_URL": "postgresql://x/y",
            "MACHIAI_SECRET_KEYS": "k" * 40,
        }
    )
    near = poll_interval_s(ahead, rate_per_min / 60, s)
    far = poll_interval_s(ahead + more, rate_per_min / 60, s)
    assert s.poll_min_s <= near <= far <= s.poll_max_s


def test_polls_per_second_matches_the_sum_over_positions() -> None:
    s = WaitroomSettings.from_env(
        {
            "REDIS_URL": "redis://x",
            "DATABASE_URL": "postgresql://x/y",
            "MACHIAI_SECRET_KEYS": "k" * 40,
        }
    )
    for n, rate in ((10, 60), (5_000, 600), (200_000, 1000)):
        exact = sum(1 / poll_interval_s(a, rate / 60, s) for a in range(n))
        assert abs(polls_per_second(n, rate, s) - exact) / exact < 0.02
    # Bounded by the admission rate, not the line: 10x the line, well under 10x the polls.
    small, big = polls_per_second(100_000, 1000, s), polls_per_second(1_000_000, 1000, s)
    assert big < 10 * small / 2
