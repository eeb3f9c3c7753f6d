"""admit_next benchmark — one command, bounded in time, loopback only:

    .venv/bin/python -m benchmarks.waitroom.bench_admit_next [--calls 200]

Starts its own embedded Redis (machiai.embedded, no persistence) in a temporary directory
and measures the refresher's script, ``admit_next``, through its wrapper
(``waitroom.store.redis_store``), with an injected clock that moves 250 ms per call (one
process's refresh interval), for an event with 0, 1,000, 10,000 and 50,000 outstanding
passes (issued through ``issue_pass``, neither redeemed nor expired):

  idle    no pass redeemed between calls;
  steady  50 passes redeemed (booking's used-passes zset, scored at the call's clock) and
          50 new ones issued between calls: 12,000 admissions a minute, 4 refreshes a
          second, the outstanding count unchanged.

For every call it reads Redis's own time for the script (``INFO commandstats``,
``cmdstat_evalsha`` usec, before and after: what the script costs Redis's one thread,
whatever the machine's other load does to the round trip) and the round trip the caller
saw; it prints medians, as ratios to a trivial ``EVALSHA`` (``return 0``) and to the idle
0-pass case measured in the same run. Takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from machiai import keys as shared
from machiai.embedded import EmbeddedRedis
from waitroom.store import keys
from waitroom.store.redis_store import REDEMPTION_LOOKBACK_MS, EventConfig, RedisStore

PREFIX = "bench:"
SIZES = (0, 1_000, 10_000, 50_000)
STEP_MS = 250  # one refresher's interval
REDEEMED_PER_CALL = 50  # 12,000 admissions a minute seen 4 times a second
PASS_TTL_MS = 3_600_000  # nothing expires during the run
GRACE_MS = 3_600_000
HOLD_MS = 120_000
T0_MS = 1_800_000_000_000


@dataclass(frozen=True, slots=True)
class Figures:
    redis_us: float  # median Redis time per call (commandstats)
    rtt_us: float  # median round trip seen by the caller


async def evalsha_usec(client: aioredis.Redis) -> tuple[int, int]:
    stats = await client.info("commandstats")
    row = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(row["calls"]), int(row["usec"])


async def measured(client: aioredis.Redis, call: Awaitable[object]) -> tuple[int, int]:
    """(Redis usec, round-trip usec) of the one EVALSHA that ``call`` (not awaited yet) makes."""
    calls0, usec0 = await evalsha_usec(client)
    started = time.perf_counter()
    await call
    rtt = time.perf_counter() - started
    calls1, usec1 = await evalsha_usec(client)
    assert calls1 - calls0 == 1, "one EVALSHA per measured call"
    return usec1 - usec0, int(rtt * 1e6)


def summary(samples: list[tuple[int, int]]) -> Figures:
    return Figures(
        statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)
    )


class Bench:
    """Cases of one admit_next: the service's (``old_sha`` None) or admit_next-9's text,
    loaded as ``old_sha`` and sent with its nine keys and nine arguments."""

    def __init__(
        self,
        client: aioredis.Redis,
        store: RedisStore,
        calls: int,
        lookback_ms: int,
        old_sha: str | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.calls = calls
        self.lookback_ms = lookback_ms
        self.old_sha = old_sha

    async def admit(self, event_id: str, now_ms: int) -> int:
        if self.old_sha is not None:
            return await self.admit_old(self.old_sha, event_id, now_ms)
        live = await self.store.admit_next(
            event_id, seed_hex="ab" * 16, hold_ms=HOLD_MS, retention_s=720, since_s=0,
            target_p95_ms=800, recover_per_s=0.05, load_stale_ms=30_000,
            lookback_ms=self.lookback_ms, now_ms=now_ms,
        )  # fmt: skip
        return live.outstanding

    async def admit_old(self, sha: str, event_id: str, now_ms: int) -> int:
        p, e = PREFIX, event_id
        reply = await self.client.evalsha(
            sha, 9, keys.event(p, e), keys.batches(p, e), shared.booking_sessions(p, e),
            shared.used_passes(p, e), shared.event_inventory(p, e), shared.booking_load(p, e),
            keys.issued(p, e), keys.passes(p, e), keys.entered(p, e),
            str(now_ms), "ab" * 16, HOLD_MS, 720, 0, 800, "0.05", 30_000, 20_000,
        )  # fmt: skip
        fields = reply[1]
        return int(dict(zip(fields[::2], fields[1::2], strict=True))[b"outstanding"])

    async def issue(self, event_id: str, first: int, count: int, now_ms: int) -> list[str]:
        ids = [uuid.uuid4().hex for _ in range(count)]
        for start in range(0, count, 2000):
            await asyncio.gather(
                *(
                    self.store.issue_pass(
                        event_id,
                        ticket_id=f"t{first + i}",
                        line_index=first + i,
                        pass_id=ids[i],
                        issued_s=now_ms // 1000,
                        pass_ttl_ms=PASS_TTL_MS,
                        grace_ms=GRACE_MS,
                        hold_ms=HOLD_MS,
                        now_ms=now_ms,
                    )  # fmt: skip
                    for i in range(start, min(count, start + 2000))
                )
            )
        return ids

    async def event(self, outstanding: int, spare: int) -> tuple[str, list[str]]:
        """A fresh open event whose line (``outstanding + spare``) is all admitted, with
        ``outstanding`` passes issued."""
        event_id = f"bench-{uuid.uuid4().hex[:8]}"
        line = outstanding + spare
        await self.store.load_event(
            EventConfig(
                event_id,
                "131001",
                "予約",
                "Booking",
                "open",
                rate=60 * max(line, 1) * 2,
                cap=10 * max(line, 1),
                prequeue_at_ms=T0_MS - 60_000,
                opens_at_ms=T0_MS,
                closes_at_ms=T0_MS + 86_400_000,
            )  # fmt: skip
        )
        if line:
            await self.store.join_line(event_id, line, "00", T0_MS)
        await self.admit(event_id, T0_MS)
        ids = await self.issue(event_id, 0, outstanding, T0_MS + 1000)
        return event_id, ids

    async def idle(self, outstanding: int) -> Figures:
        event_id, _ = await self.event(outstanding, 0)
        now = T0_MS + 2000
        samples = []
        for _ in range(self.calls):
            now += STEP_MS
            samples.append(await measured(self.client, self.admit(event_id, now)))
        assert await self.admit(event_id, now) == outstanding
        return summary(samples)

    async def steady(self, outstanding: int) -> Figures:
        calls = self.calls // 2
        event_id, ids = await self.event(outstanding, REDEEMED_PER_CALL * calls)
        used = shared.used_passes(PREFIX, event_id)
        now = T0_MS + 2000
        await self.admit(event_id, now)
        samples = []
        for n in range(calls):
            now += STEP_MS
            first = outstanding + n * REDEEMED_PER_CALL
            fresh = await self.issue(event_id, first, REDEEMED_PER_CALL, now)
            ids = [*ids, *fresh]
            redeemed, ids = ids[:REDEEMED_PER_CALL], ids[REDEEMED_PER_CALL:]
            await self.client.zadd(used, dict.fromkeys(redeemed, now))
            samples.append(await measured(self.client, self.admit(event_id, now)))
        assert await self.admit(event_id, now) == outstanding
        return summary(samples)

    async def trivial(self) -> Figures:
        sha = await self.client.script_load("return 0")
        samples = [
            await measured(self.client, self.client.evalsha(sha, 0)) for _ in range(self.calls)
        ]
        return summary(samples)


async def run(url: str, calls: int, lookback_ms: int, old: Path | None) -> None:
    client = aioredis.Redis.from_url(url)
    store = RedisStore(client, PREFIX)
    benches = {"new": Bench(client, store, calls, lookback_ms)}
    if old is not None:
        old_sha = await client.script_load(old.read_text(encoding="utf-8"))
        benches["old"] = Bench(client, store, calls, lookback_ms, old_sha)
    load = os.getloadavg()[0]
    try:
        base = await benches["new"].trivial()
        rows = []
        for size in SIZES:  # interleaved: other work on the machine hits both alike
            for name, bench in benches.items():
                rows.append((name, size, await bench.idle(size), await bench.steady(size)))
        print(
            f"trivial EVALSHA: Redis {base.redis_us:.1f} us, round trip {base.rtt_us:.0f} us "
            f"(medians of {calls} calls; load average before: {load:.2f}; "
            f"lookback {lookback_ms} ms)"
        )
        print(
            f"{'script':<6} | {'outstanding':>11} | {'case':<6} | {'Redis us':>9} | "
            f"{'x trivial':>9} | {'x 0 passes':>10} | {'round trip us':>13}"
        )
        zero = {name: idle.redis_us for name, size, idle, _ in rows if size == 0}
        for name, size, idle, steady in sorted(rows, key=lambda r: (r[0] != "new", r[1])):
            for case, fig in (("idle", idle), ("steady", steady)):
                print(
                    f"{name:<6} | {size:>11,} | {case:<6} | {fig.redis_us:>9.1f} | "
                    f"{fig.redis_us / max(base.redis_us, 0.1):>9.1f} | "
                    f"{fig.redis_us / max(zero[name], 0.1):>10.2f} | {fig.rtt_us:>13.0f}"
                )
    finally:
        await store.aclose()
        await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="measured calls per case")
    parser.add_argument(
        "--lookback-ms",
        type=int,
        default=REDEMPTION_LOOKBACK_MS,
        help="admit_next's lookback for redemptions (default: the service's)",
    )
    parser.add_argument(
        "--old",
        type=Path,
        help="also measure this admit_next-9.lua (e.g. tests/waitroom/legacy/admit_next-9.lua, "
        "the script before the scan was removed), interleaved with the service's",
    )
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="machiai-bench-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", persistent=False).start()
        try:
            asyncio.run(run(server.url, max(10, opts.calls), opts.lookback_ms, opts.old))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
