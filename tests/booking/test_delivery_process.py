"""`machiai deliver` as a process: killed mid-batch it loses nothing (another worker takes
its claims when their lease ends, and the receiver drops the resends by key); stopped
with SIGTERM it finishes the batch in flight and leaves no claim behind."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import asyncpg
import psutil

from booking.delivery.worker import Worker
from machiai.embedded import free_port
from tests.booking.delivery_kit import (
    SECRET,
    Clock,
    Receiver,
    add_reminders,
    set_channels,
    states,
    worker_settings,
)
from tests.booking.factory import World

LEASE_S = 60


async def start_worker(env_vars: dict[str, str]) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        **env_vars,
        "MACHIAI_WEBHOOK_SECRET": SECRET,
        "MACHIAI_DELIVERY_BATCH": "40",
        "MACHIAI_DELIVERY_CONCURRENCY": "4",
        "MACHIAI_DELIVERY_TIMEOUT_S": "5",
        "MACHIAI_DELIVERY_LEASE_S": str(LEASE_S),
        "MACHIAI_DELIVERY_RATE_WEBHOOK": "0",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "machiai.cli",
        "deliver",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def until_accepted(receiver: Receiver, n: int, process: asyncio.subprocess.Process) -> None:
    """Until the receiver kept ``n`` messages (the worker is then inside its second batch)."""
    for _ in range(3000):
        if len(receiver.accepted) >= n:
            return
        if process.returncode is not None:
            err = await process.stderr.read() if process.stderr else b""
            raise AssertionError(f"the worker exited: {err.decode()}")
        await asyncio.sleep(0.01)
    raise AssertionError(f"the receiver kept only {len(receiver.accepted)}")


async def test_a_worker_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    db: asyncpg.Pool, env_vars: dict[str, str], world: World
) -> None:
    receiver = Receiver(delay_s=0.05)
    async with receiver.serving() as url:
        await set_channels(db, world.municipality, webhook=url)
        await add_reminders(db, world.municipality, 200)
        process = await start_worker(env_vars)
        try:
            await until_accepted(receiver, 50, process)
        finally:
            process.kill()
            await process.wait()
        # Killed with claims out: nothing records them; they stay leased.
        leased = await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE state = 'pending' AND leased_until IS NOT NULL"
        )
        assert leased > 0
        kept_before = len(receiver.accepted)
        # Another worker, once the lease has run out (its clock moved, not slept).
        clock = Clock()
        clock.advance(LEASE_S + 1)
        worker = Worker(db, worker_settings(), clock=clock)
        try:
            for _ in range(20):
                await worker.run_once()
                if await states(db) == {"sent": 200}:
                    break
        finally:
            await worker.aclose()
    assert await states(db) == {"sent": 200}
    keys = {r["idempotency_key"] for r in await db.fetch("SELECT idempotency_key FROM deliveries")}
    # Every message kept once; what the dead worker had sent in its last batch came again
    # under the same key and was dropped by the receiver.
    assert set(receiver.accepted) == keys and len(keys) == 200
    assert 0 < receiver.duplicates <= leased
    assert sum(receiver.tries.values()) == 200 + receiver.duplicates
    assert kept_before < 200


async def test_sigterm_finishes_the_batch_in_flight_then_exits(
    db: asyncpg.Pool, env_vars: dict[str, str], world: World
) -> None:
    receiver = Receiver(delay_s=0.05)
    async with receiver.serving() as url:
        await set_channels(db, world.municipality, webhook=url)
        await add_reminders(db, world.municipality, 200)
        process = await start_worker(env_vars)
        try:
            await until_accepted(receiver, 50, process)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert code == 0
    # The batch in flight was sent and recorded: no claim is left to run out.
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE leased_until IS NOT NULL") == 0
    sent = await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'sent'")
    assert sent == len(receiver.accepted) and sent % 40 == 0 and 80 <= sent < 200
    assert receiver.duplicates == 0


async def test_machiai_run_starts_a_worker_that_sends_and_stops_with_it(
    db: asyncpg.Pool, env_vars: dict[str, str], world: World
) -> None:
    env = {
        **os.environ,
        **env_vars,
        "WAITROOM_PORT": str(free_port("127.0.0.1")),
        "BOOKING_PORT": str(free_port("127.0.0.1")),
    }
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "machiai.cli",
        "run",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        # A municipality without channels: the log. The worker started by `run` sends it.
        await add_reminders(db, world.municipality, 3)
        for _ in range(600):
            if await states(db) == {"sent": 3}:
                break
            assert run.returncode is None
            await asyncio.sleep(0.1)
        children = psutil.Process(run.pid).children(recursive=True)
        assert any("deliver" in c.cmdline() for c in children)
    finally:
        run.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(run.communicate(), 60)
    assert run.returncode == 0, out.decode()
    assert await states(db) == {"sent": 3}
    assert b"booking.reminder.due" in out  # the log channel's lines
    assert [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
