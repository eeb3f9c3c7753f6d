"""The one Lua loader: a Redis that lost its scripts gets each loaded once, and a call
(or a plain command) that already ran in a pipeline is never sent again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from machiai.redis_cluster import ClusterMux, RedisClient, wire_like
from machiai.redis_mux import RedisMux
from machiai.scripts import RedisPyWire, Scripts

# booking's hit_counter-1.lua: INCR of KEYS[1] when ARGV[2] is 1; replies {count, ttl_ms}.
SCRIPTS = Scripts("booking")


@pytest.fixture
async def mux(redis: RedisClient) -> AsyncIterator[RedisMux | ClusterMux]:
    """The services' wire to the session's Redis (one server or a cluster)."""
    client = wire_like(redis, timeout_s=10.0, connect_timeout_s=5.0)
    try:
        yield client
    finally:
        await client.aclose()


def test_scripts_are_named_without_their_key_count() -> None:
    counter = SCRIPTS["hit_counter"]
    assert counter.nkeys == 1
    assert counter in list(SCRIPTS)
    with pytest.raises(AssertionError, match="takes 1 keys"):
        counter.call(["a", "b"], [1000, 1])


async def test_a_pipeline_after_redis_lost_its_scripts_runs_each_call_once(
    mux: RedisMux | ClusterMux, redis: aioredis.Redis, redis_prefix: str
) -> None:
    plain, counted = f"{redis_prefix}plain", f"{redis_prefix}counted"
    count = SCRIPTS["hit_counter"].call([counted], [60_000, 1])
    await redis.script_flush()  # as after a Redis restart
    replies = await SCRIPTS.pipeline(mux, [("INCR", plain), count, count])
    assert replies[0] == 1
    assert [reply[0] for reply in replies[1:]] == [1, 2]
    assert await redis.get(plain) == b"1"  # the plain command was not sent again
    assert await redis.get(counted) == b"2"  # nor was either script call
    assert await redis.script_exists(SCRIPTS["hit_counter"].sha) == [True]


# RedisPyWire wraps a redis.asyncio.Redis; redis-py's RedisCluster cannot route the loader's
# ("SCRIPT", "LOAD", text) (it routes "SCRIPT LOAD" as one word), and no service uses it.
@pytest.mark.single_redis(reason="RedisPyWire is for a redis.asyncio.Redis (one server)")
async def test_one_call_after_redis_lost_its_scripts_loads_it_and_runs_once(
    redis: aioredis.Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}counted"
    await redis.script_flush()
    reply = await SCRIPTS.run(RedisPyWire(redis), "hit_counter", [key], [60_000, 1])
    assert reply[0] == 1
    assert await redis.get(key) == b"1"
