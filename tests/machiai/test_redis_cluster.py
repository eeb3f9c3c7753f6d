"""machiai.redis_cluster against a real local Redis Cluster (3 masters, 3 replicas).

The promises: every command reaches the master of its key's slot, whatever map the client
holds (MOVED, ASK followed; never a command sent twice after it may have run); a
pipeline's replies come back in the order given, each slot's commands in order; scripts
are known on every master; the URL is validated with a message naming the variable and
never quoting a password.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import ResponseError

from machiai.cluster_url import parse_cluster_url
from machiai.config import Env, SettingsError, core_settings
from machiai.redis_cluster import ClusterMux, redis_client, wire_like
from machiai.scripts import Scripts
from tests.servers import ClusterForTests, redis_cluster_for_tests

# -- the URL ------------------------------------------------------------------------------


def test_cluster_url_seeds_and_credentials() -> None:
    url = parse_cluster_url("redis+cluster://app:s%40cret@10.0.0.1:7000,[::1]:7001,redis-2:7002")
    assert url.seeds == (("10.0.0.1", 7000), ("::1", 7001), ("redis-2", 7002))
    assert (url.username, url.password, url.tls) == ("app", "s@cret", False)
    tls = parse_cluster_url("rediss+cluster://:pw@h:6380/?ssl_cert_reqs=none")
    assert (tls.tls, tls.password, tls.username, tls.ssl_cert_reqs) == (True, "pw", None, "none")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://h:7000,h", "host:port"),
        ("redis+cluster://h:7000,h:99999", "host:port"),
        ("redis+cluster://:topsecret@h:7000/3", "database 0"),
        ("redis+cluster://", "host:port"),
    ],
)
def test_bad_cluster_urls_are_refused_naming_the_variable(url: str, says: str) -> None:
    env = {"REDIS_URL": url, "DATABASE_URL": "postgresql://u@h/db", "MACHIAI_ENV": "development"}
    with pytest.raises(SettingsError) as caught:
        core_settings(Env(env))
    message = str(caught.value)
    assert message.startswith("REDIS_URL") and says in message
    assert "topsecret" not in message


def test_a_cluster_url_is_a_valid_setting() -> None:
    env = {
        "REDIS_URL": "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
        "DATABASE_URL": "postgresql://u@h/db",
        "MACHIAI_ENV": "development",
    }
    assert core_settings(Env(env)).redis_url == env["REDIS_URL"]


# -- against a cluster --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterForTests]:
    with redis_cluster_for_tests(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
async def mux(cluster: ClusterForTests) -> AsyncIterator[ClusterMux]:
    client = redis_client(cluster.url, timeout_s=5.0)
    wire = wire_like(client, timeout_s=5.0, connect_timeout_s=5.0)
    assert isinstance(wire, ClusterMux)
    try:
        yield wire
    finally:
        await wire.aclose()
        await client.aclose()


def _owner(cluster: ClusterForTests, key: str) -> int:
    """The port of the master serving ``key``, by the cluster's own account."""
    admin = cluster.admin(cluster.masters()[0])
    try:
        slot = int(admin.execute_command("CLUSTER", "KEYSLOT", key))  # type: ignore[no-untyped-call]
        for start, end, master, *_ in admin.execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]
            if start <= slot <= end:
                return int(master[1])
    finally:
        admin.close()
    raise AssertionError(f"no master serves {key}")


def _tag(n: int) -> str:
    return f"t{random.randrange(1 << 30)}-{n}"


async def test_every_key_lands_on_the_master_of_its_slot(
    cluster: ClusterForTests, mux: ClusterMux
) -> None:
    keys = [f"{{{_tag(n)}}}:k" for n in range(300)]
    await mux.pipeline([("SET", k, k) for k in keys])
    assert len({_owner(cluster, k) for k in keys}) == 3  # the keys really are spread
    for key in keys[:60]:
        direct = cluster.admin(_owner(cluster, key))
        try:
            assert direct.get(key) == key  # read on its master, not redirected
        finally:
            direct.close()
    assert await mux.pipeline([("GET", k) for k in keys]) == [k.encode() for k in keys]


async def test_concurrent_increments_across_slots_are_each_counted_once(
    mux: ClusterMux,
) -> None:
    """64 tasks INCR keys on every master, alone and in mixed-slot pipelines: each key ends
    at exactly the number of increments sent to it (none lost, none sent twice)."""
    keys = [f"{{{_tag(n)}}}:n" for n in range(40)]
    rng = random.Random(7)
    sent = dict.fromkeys(keys, 0)
    plans: list[list[str]] = []
    for _ in range(64):
        plan = [rng.choice(keys) for _ in range(rng.randrange(1, 12))]
        for key in plan:
            sent[key] += 1
        plans.append(plan)

    async def worker(plan: list[str]) -> None:
        if len(plan) % 2:
            for key in plan:
                await mux.execute("INCR", key)
        else:
            await mux.pipeline([("INCR", key) for key in plan])

    await asyncio.gather(*(worker(plan) for plan in plans * 5))
    got = await mux.pipeline([("GET", k) for k in keys])
    assert [int(v or 0) for v in got] == [sent[k] * 5 for k in keys]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["INCR", "GET", "DEL", "APPEND"]), st.integers(0, 7)),
        min_size=1,
        max_size=30,
    )
)
async def test_a_pipeline_answers_as_the_commands_run_one_by_one(
    mux: ClusterMux, ops: list[tuple[str, int]]
) -> None:
    """Any pipeline over keys of several slots: its replies are what a one-node model gives
    running the commands in the order given (per-slot order kept, replies reassembled)."""
    base = _tag(0)
    keys = [f"{{{base}-{i}}}:v" for i in range(8)]
    await mux.pipeline([("DEL", k) for k in keys])
    model: dict[str, bytes] = {}
    expected: list[object] = []
    commands: list[tuple[str, ...]] = []
    for op, i in ops:
        key = keys[i]
        commands.append((op, key, "x") if op == "APPEND" else (op, key))
        if op == "INCR":
            if key in model and not model[key].isdigit():
                expected.append(ResponseError)
                continue
            model[key] = str(int(model.get(key, b"0")) + 1).encode()
            expected.append(int(model[key]))
        elif op == "GET":
            expected.append(model.get(key))
        elif op == "DEL":
            expected.append(1 if model.pop(key, None) is not None else 0)
        else:
            model[key] = model.get(key, b"") + b"x"
            expected.append(len(model[key]))
    replies = await mux.pipeline(commands, raise_on_error=False)
    assert [ResponseError if isinstance(r, ResponseError) else r for r in replies] == expected


async def test_a_stale_map_is_corrected_by_moved(cluster: ClusterForTests, mux: ClusterMux) -> None:
    keys = [f"{{{_tag(n)}}}:m" for n in range(60)]
    await mux.pipeline([("SET", k, "v") for k in keys])
    wrong = mux.masters()[0]
    # White-box: a map gone stale, every slot believed on one master.
    mux._slots = [wrong] * len(mux._slots)
    assert await mux.pipeline([("GET", k) for k in keys]) == [b"v"] * len(keys)
    assert await mux.execute("GET", keys[-1]) == b"v"
    for _ in range(100):  # the whole map follows in the background
        if all(mux.owner(k) == ("127.0.0.1", _owner(cluster, k)) for k in keys):
            break
        await asyncio.sleep(0.02)
    assert all(mux.owner(k) == ("127.0.0.1", _owner(cluster, k)) for k in keys)


async def test_a_slot_being_migrated_is_followed_with_asking(
    cluster: ClusterForTests, mux: ClusterMux
) -> None:
    """Mid-migration the source answers ASK for a key already moved: the command is sent
    once to the target after ASKING, and the map is not changed by it."""
    key = f"{{{_tag(0)}}}:moving"
    await mux.execute("SET", key, "before")
    source = _owner(cluster, key)
    target = next(p for p in cluster.masters() if p != source)
    src, dst = cluster.admin(source), cluster.admin(target)
    try:
        slot = int(src.execute_command("CLUSTER", "KEYSLOT", key))  # type: ignore[no-untyped-call]
        src_id = src.execute_command("CLUSTER", "MYID")  # type: ignore[no-untyped-call]
        dst_id = dst.execute_command("CLUSTER", "MYID")  # type: ignore[no-untyped-call]
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)  # type: ignore[no-untyped-call]
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)  # type: ignore[no-untyped-call]
        src.execute_command("MIGRATE", "127.0.0.1", target, key, 0, 5000)  # type: ignore[no-untyped-call]
        believed = mux.owner(key)
        assert await mux.execute("GET", key) == b"before"
        assert await mux.pipeline([("SET", key, "during"), ("GET", key)]) == [b"OK", b"during"]
        assert mux.owner(key) == believed  # ASK is for one command, not the map
        for port in cluster.masters():
            admin = cluster.admin(port)
            try:
                admin.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)  # type: ignore[no-untyped-call]
            finally:
                admin.close()
        assert await mux.execute("GET", key) == b"during"  # MOVED now, map updated
        assert mux.owner(key) == ("127.0.0.1", target)
    finally:
        src.close()
        dst.close()


async def test_scripts_are_known_on_every_master(cluster: ClusterForTests, mux: ClusterMux) -> None:
    """A master that lost its scripts (SCRIPT FLUSH) answers NOSCRIPT: the script is loaded
    again and only the calls that met NOSCRIPT are sent again; each counts once."""
    scripts = Scripts("booking")
    await mux.pipeline(scripts.load_commands())
    for port in cluster.masters():
        admin = cluster.admin(port)
        try:
            assert admin.script_exists(*(s.sha for s in scripts)) == [True] * len(list(scripts))
        finally:
            admin.close()
    victim = cluster.admin(cluster.masters()[0])
    try:
        victim.script_flush()
    finally:
        victim.close()
    keys = [f"{{{_tag(n)}}}:hits" for n in range(30)]
    calls = [scripts["hit_counter"].call([k], [60_000, 1]) for k in keys]
    replies = await scripts.pipeline(mux, calls)
    assert [r[0] for r in replies] == [1] * len(keys)
    assert [(await scripts.run(mux, "hit_counter", [k], [60_000, 1]))[0] for k in keys] == [
        2
    ] * len(keys)


async def test_keyless_commands_and_the_readiness_ping(
    mux: ClusterMux, cluster: ClusterForTests
) -> None:
    seconds, _ = await mux.execute("TIME")
    assert int(seconds) > 1_700_000_000
    client = redis_client(cluster.url, timeout_s=5.0)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_a_cluster_client_is_made_for_a_cluster_url(tmp_path: Path) -> None:
    assert isinstance(redis_client("redis://127.0.0.1:1/0", timeout_s=1.0), redis.asyncio.Redis)
    made = redis_client("redis+cluster://127.0.0.1:1,127.0.0.1:2", timeout_s=1.0)
    assert isinstance(made, redis.asyncio.RedisCluster)
    assert [(n.host, n.port) for n in made.startup_nodes] == [("127.0.0.1", 1), ("127.0.0.1", 2)]


async def test_a_closed_cluster_client_opens_no_connection(cluster: ClusterForTests) -> None:
    mux = ClusterMux([("127.0.0.1", cluster.masters()[0])], {}, timeout_s=5.0)
    assert await mux.execute("SET", "{closed}k", "v") == b"OK"
    await mux.aclose()
    with pytest.raises(redis.exceptions.ConnectionError):
        await mux.execute("GET", "{closed}k")
    with pytest.raises(redis.exceptions.ConnectionError):
        await mux.pipeline([("GET", "{closed}k"), ("GET", "{other}k")])
