"""The test Redis Cluster (tests/servers.py): 3 masters with a replica each, every slot
served, keys readable through the cluster clients, a killed master's replica promoted."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from machiai.cluster_url import is_cluster_url, parse_cluster_url
from machiai.redis_cluster import redis_client
from tests.servers import (
    CLUSTER_BUS_OFFSET,
    ClusterForTests,
    cluster_port,
    delete_prefixed_keys,
    port_free,
    redis_cluster_for_tests,
    redis_cluster_wanted,
    sync_cluster_client,
)

SLOTS = 16384
# Observed ~2 s with a 1 s node timeout; the bound leaves room for a loaded machine.
PROMOTION_BOUND_S = 15.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterForTests]:
    """A cluster of this module's own (a failover must not disturb the session's)."""
    with redis_cluster_for_tests(tmp_path_factory.mktemp("cluster")) as made:
        yield made


def served_ranges(client: redis.Redis) -> list[tuple[int, int, int, list[int]]]:
    """(first slot, last slot, master port, replica ports) of each range CLUSTER SLOTS
    names."""
    reply = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    return [
        (int(first), int(last), int(master[1]), [int(r[1]) for r in replicas])
        for first, last, master, *replicas in reply
    ]


def test_three_masters_each_with_a_linked_replica(cluster: ClusterForTests) -> None:
    masters = cluster.masters()
    assert len(cluster.live()) == 6
    assert len(masters) == 3
    for port in masters:
        assert len(cluster.replicas_of(port)) == 1
        (replica,) = cluster.replicas_of(port)
        assert cluster.info(replica, "replication")["master_link_status"] == "up"
    # The URL's seeds are the masters, on loopback, as the services read it.
    assert is_cluster_url(cluster.url)
    assert sorted(parse_cluster_url(cluster.url).seeds) == sorted(
        ("127.0.0.1", port) for port in masters
    )


def test_every_slot_is_served_once_by_a_master_every_node_agrees_on(
    cluster: ClusterForTests,
) -> None:
    views = []
    for port in cluster.live():
        admin = cluster.admin(port)
        try:
            views.append(sorted(served_ranges(admin)))
        finally:
            admin.close()
    assert all(view == views[0] for view in views)
    covered = [0] * SLOTS
    for first, last, master, replicas in views[0]:
        assert master in cluster.masters()
        assert replicas == cluster.replicas_of(master)
        for slot in range(first, last + 1):
            covered[slot] += 1
    assert covered == [1] * SLOTS


async def test_keys_written_through_the_cluster_client_are_read_back_and_deleted(
    cluster: ClusterForTests,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    keys = [f"{prefix}{i}" for i in range(200)]
    client = redis_client(cluster.url, timeout_s=5.0)
    try:
        for i, key in enumerate(keys):
            await client.set(key, i)
        assert [await client.get(key) for key in keys] == [b"%d" % i for i in range(200)]
    finally:
        await client.aclose()
    # 200 keys spread over the three masters, each holding its own share.
    per_master = {}
    for port in cluster.masters():
        admin = cluster.admin(port)
        try:
            per_master[port] = len(list(admin.scan_iter(match=prefix + "*", count=1000)))
        finally:
            admin.close()
    assert sum(per_master.values()) == 200
    assert all(count > 0 for count in per_master.values())
    delete_prefixed_keys(cluster.url, prefix)
    blocking = sync_cluster_client(cluster.url)
    try:
        assert list(blocking.scan_iter(match=prefix + "*")) == []
    finally:
        blocking.close()


def test_a_killed_master_is_replaced_by_its_replica_with_its_keys(tmp_path: Path) -> None:
    with redis_cluster_for_tests(tmp_path) as cluster:
        client = sync_cluster_client(cluster.url)
        try:
            key = f"t{uuid.uuid4().hex[:12]}:survivor"
            client.set(key, "kept")
            victim = key_slot(key.encode())
            owner = int(client.nodes_manager.get_node_from_slot(victim).port)
            # The write reached the replica before the master dies (asynchronous otherwise).
            admin = cluster.admin(owner)
            try:
                assert admin.execute_command("WAIT", 1, 5000) == 1  # type: ignore[no-untyped-call]
            finally:
                admin.close()
            (replica,) = cluster.replicas_of(owner)
            started = time.monotonic()
            cluster.kill(owner)
            assert owner not in cluster.live()
            promoted = cluster.wait_promoted(owner, timeout_s=PROMOTION_BOUND_S)
            took_s = time.monotonic() - started
        finally:
            client.close()
        assert promoted == replica
        assert took_s < PROMOTION_BOUND_S
        assert promoted in cluster.masters() and len(cluster.masters()) == 3
        # A fresh client, seeded with the dead master among the others, finds the key.
        after = sync_cluster_client(cluster.url)
        try:
            assert after.get(key) == b"kept"
            assert int(after.nodes_manager.get_node_from_slot(victim).port) == replica
        finally:
            after.close()


def test_cluster_ports_leave_their_bus_port_free() -> None:
    rng = random.Random(17)
    for _ in range(20):
        port = cluster_port(rng)
        assert port + CLUSTER_BUS_OFFSET <= 65535
        assert port_free(port) and port_free(port + CLUSTER_BUS_OFFSET)


def test_the_test_redis_mode_is_single_or_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MACHIAI_TEST_REDIS", "cluster")
    assert redis_cluster_wanted()
    monkeypatch.setenv("MACHIAI_TEST_REDIS", "single")
    assert not redis_cluster_wanted()
    monkeypatch.delenv("MACHIAI_TEST_REDIS")
    assert not redis_cluster_wanted()
    monkeypatch.setenv("MACHIAI_TEST_REDIS", "clsuter")
    with pytest.raises(ValueError, match="clsuter"):
        redis_cluster_wanted()
