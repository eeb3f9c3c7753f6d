"""The multiplexed Redis connection against a real Redis: replies reach the caller that
asked, whatever the concurrency, cancellations, errors and lost connections."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from machiai.redis_mux import RedisMux

# The mux is one server's connection (its URL, its databases, its AUTH); over a cluster
# ClusterMux runs one per master (tests/machiai/test_redis_cluster.py).
pytestmark = pytest.mark.single_redis(reason="RedisMux is the connection to one server")


@pytest.fixture
async def mux(redis_url: str) -> AsyncIterator[RedisMux]:
    client = RedisMux.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


async def test_every_concurrent_caller_gets_its_own_reply(
    mux: RedisMux, redis: aioredis.Redis, redis_prefix: str
) -> None:
    async def one(i: int) -> None:
        key = f"{redis_prefix}k{i}"
        assert await mux.execute("SET", key, f"v{i}") == b"OK"
        assert await mux.execute("ECHO", f"e{i}") == f"e{i}".encode()
        assert await mux.execute("INCRBY", f"{redis_prefix}sum", i) >= i
        assert await mux.execute("GET", key) == f"v{i}".encode()

    await asyncio.gather(*(one(i) for i in range(2000)))
    assert await redis.get(f"{redis_prefix}sum") == str(sum(range(2000))).encode()


async def test_commands_of_one_loop_turn_go_out_in_one_write(mux: RedisMux) -> None:
    assert await mux.execute("PING") == b"PONG"  # connected
    proto = mux._proto
    assert proto is not None and proto.transport is not None
    real = proto.transport
    writes: list[bytes] = []

    class Recording:
        def write(self, data: bytes) -> None:
            writes.append(data)
            real.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    proto.transport = cast(asyncio.Transport, Recording())
    replies = await asyncio.gather(*(mux.execute("ECHO", str(i)) for i in range(200)))
    assert replies == [str(i).encode() for i in range(200)]
    assert len(writes) == 1  # 200 callers, one syscall
    proto.transport = real


async def test_pipeline_keeps_order_and_reports_errors_in_place(
    mux: RedisMux, redis_prefix: str
) -> None:
    key = f"{redis_prefix}p"
    replies = await mux.pipeline(
        [("SET", key, "1"), ("INCR", key), ("HGET", key, "f"), ("INCR", key), ("GET", key)],
        raise_on_error=False,
    )
    assert replies[:2] == [b"OK", 2]
    assert isinstance(replies[2], ResponseError)  # WRONGTYPE, and only that command
    assert replies[3:] == [3, b"3"]
    with pytest.raises(ResponseError):
        await mux.pipeline([("INCR", key), ("HGET", key, "f")])
    assert await mux.execute("GET", key) == b"4"
    assert await mux.pipeline([]) == []


async def test_unknown_script_is_noscript_and_errors_do_not_shift_replies(
    mux: RedisMux,
) -> None:
    async def bad() -> None:
        with pytest.raises(NoScriptError):
            await mux.execute("EVALSHA", "0" * 40, 0)

    async def good(i: int) -> None:
        assert await mux.execute("ECHO", str(i)) == str(i).encode()

    await asyncio.gather(*(bad() if i % 5 == 0 else good(i) for i in range(500)))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=60))
def test_cancelled_callers_never_shift_anyone_elses_reply(
    redis_url: str, plan: list[tuple[bool, int]]
) -> None:
    """Callers cancelled at any point (before the write, while waiting, never) consume
    their reply silently; the others each get exactly their own."""

    async def run() -> None:
        mux = RedisMux.from_url(redis_url)
        try:
            tasks = [
                asyncio.create_task(mux.execute("ECHO", f"{i}:{'x' * size * 100}"))
                for i, (_, size) in enumerate(plan)
            ]
            await asyncio.sleep(0)  # some commands are queued, none answered yet
            for task, (cancel, _) in zip(tasks, plan, strict=True):
                if cancel:
                    task.cancel()
            for i, (task, (cancel, size)) in enumerate(zip(tasks, plan, strict=True)):
                if cancel:
                    with pytest.raises(asyncio.CancelledError):
                        await task
                else:
                    assert await task == f"{i}:{'x' * size * 100}".encode()
            # And the connection still pairs replies correctly afterwards.
            assert await mux.execute("ECHO", "after") == b"after"
        finally:
            await mux.aclose()

    asyncio.run(run())


async def test_lost_connection_fails_waiting_callers_then_reconnects(
    mux: RedisMux, redis: aioredis.Redis, redis_prefix: str
) -> None:
    client_id = await mux.execute("CLIENT", "ID")
    waiting = asyncio.create_task(mux.execute("BLPOP", f"{redis_prefix}never", 5))
    await asyncio.sleep(0.1)
    assert await redis.client_kill_filter(_id=str(client_id)) == 1
    with pytest.raises(RedisConnectionError):
        await waiting
    assert await mux.execute("PING") == b"PONG"
    assert await mux.execute("CLIENT", "ID") != client_id


async def test_overdue_reply_times_out_everyone_waiting_then_reconnects(
    redis_url: str, redis_prefix: str
) -> None:
    mux = RedisMux.from_url(redis_url, timeout_s=0.3)
    try:
        started = time.monotonic()
        stuck = [mux.execute("BLPOP", f"{redis_prefix}never", 5), mux.execute("PING")]
        results = await asyncio.gather(*stuck, return_exceptions=True)
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert time.monotonic() - started < 3
        assert await mux.execute("PING") == b"PONG"
    finally:
        await mux.aclose()


async def test_a_process_too_busy_to_read_does_not_call_redis_silent(
    redis_url: str, redis_prefix: str
) -> None:
    """The deadline is on Redis's silence: replies that waited unread while the process
    was busy (longer than the deadline) still reach their callers."""
    mux = RedisMux.from_url(redis_url, timeout_s=0.2)
    try:
        await mux.execute("PING")  # connected, the watchdog armed
        calls = [asyncio.ensure_future(mux.execute("INCR", f"{redis_prefix}n")) for _ in range(50)]
        await asyncio.sleep(0)  # the commands go out
        time.sleep(0.6)  # the loop blocked: three deadlines pass with the replies unread
        assert sorted(await asyncio.gather(*calls)) == list(range(1, 51))
    finally:
        await mux.aclose()


async def test_unreachable_redis_is_a_connection_error(redis_url: str) -> None:
    from machiai.embedded import free_port

    mux = RedisMux.from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisConnectionError):
        await mux.execute("PING")
    await mux.aclose()
    with pytest.raises(RedisConnectionError):
        await mux.execute("PING")  # closed for good


async def test_url_database_and_credentials_are_used(
    redis_url: str, redis: aioredis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}db"
    user, password = f"mux{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await redis.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"]
    )
    parts = urlsplit(with_db(redis_url, 9))
    authed = urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))
    wrong = urlunsplit(parts._replace(netloc=f"{user}:nope@{parts.hostname}:{parts.port}"))
    mux = RedisMux.from_url(authed)
    other_db = aioredis.Redis.from_url(with_db(redis_url, 9))
    try:
        assert await mux.execute("SET", key, "in-9") == b"OK"
        assert await other_db.get(key) == b"in-9"
        assert await redis.get(key) is None  # not in the default database
        refused = RedisMux.from_url(wrong)
        with pytest.raises(RedisConnectionError):
            await refused.execute("PING")
        await refused.aclose()
    finally:
        await other_db.delete(key)
        await other_db.aclose()
        await mux.aclose()
        await redis.acl_deluser(user)


def test_one_event_loop_only(redis_url: str) -> None:
    """A transport belongs to its loop: a second loop gets a clear error, not a hang."""
    mux = RedisMux.from_url(redis_url)

    async def first() -> None:
        assert await mux.execute("PING") == b"PONG"

    async def second() -> None:
        with pytest.raises(RuntimeError, match="event loop"):
            await mux.execute("PING")

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(first())
        asyncio.run(second())
        loop.run_until_complete(mux.aclose())
    finally:
        loop.close()
