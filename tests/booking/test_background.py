"""The background loop: the waitroom handoff refreshed at once after a change, but not once
per change; audit rows sealed about every second."""

from __future__ import annotations

import asyncio
from collections import deque

import asyncpg
import pytest

from booking import background
from booking.services.context import Ctx


async def test_a_burst_of_changes_refreshes_a_few_times_not_once_each(
    ctx: Ctx, monkeypatch: pytest.MonkeyPatch
) -> None:
    refreshed: list[float] = []
    real_refresh = background.refresh_once

    async def counting(ctx: Ctx, samples: deque[tuple[float, float]]) -> None:
        refreshed.append(asyncio.get_running_loop().time())
        await real_refresh(ctx, samples)

    monkeypatch.setattr(background, "refresh_once", counting)
    stop = asyncio.Event()
    loop_task = asyncio.create_task(background.refresh_forever(ctx, deque(), stop))
    await asyncio.sleep(0.1)
    first = len(refreshed)
    began = asyncio.get_running_loop().time()
    # A surge: a booking changes the inventory every 2 ms for one second.
    for _ in range(500):
        ctx.inventory_changed.set()
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.3)  # the last change is picked up after it
    elapsed = asyncio.get_running_loop().time() - began
    stop.set()
    ctx.inventory_changed.set()
    await asyncio.wait_for(loop_task, 5)
    during = refreshed[first:]
    # One refresh per 0.2 s at most (not one per change: 500 of them), however long the
    # burst took on a busy machine.
    assert 3 <= len(during) <= elapsed / 0.18 + 2, (elapsed, during)
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert all(gap >= 0.18 for gap in gaps), gaps


async def test_audit_rows_are_sealed_about_every_second(ctx: Ctx, db: asyncpg.Pool) -> None:
    stop = asyncio.Event()
    loop_task = asyncio.create_task(background.refresh_forever(ctx, deque(), stop))
    clock = asyncio.get_running_loop()
    try:
        for _ in range(2):  # the first right at the start, the next a second later
            row_id = await db.fetchval(
                "INSERT INTO audit_log (actor_kind, actor_id, action) "
                "VALUES ('system', 'test', 'booking.slot.closed') RETURNING id"
            )
            written = clock.time()
            while not await db.fetchval(
                "SELECT EXISTS (SELECT FROM audit_seals WHERE audit_id = $1)", row_id
            ):
                assert clock.time() - written < background.SEAL_EVERY_S + 2
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        ctx.inventory_changed.set()
        await asyncio.wait_for(loop_task, 5)
