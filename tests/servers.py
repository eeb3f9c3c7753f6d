"""Throwaway Redis and Postgres for the test session.

Started on free ports from the embedded binaries, or taken from
``TEST_REDIS_URL`` / ``TEST_DATABASE_URL``. Either way the tests only touch
what they create: uniquely named databases and uniquely prefixed Redis keys.
With ``MACHIAI_TEST_REDIS=cluster`` the session's Redis is a local Redis Cluster
(3 masters, 3 replicas) and its URL a ``redis+cluster://`` one.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis
import redis.asyncio as aioredis
import uvicorn
from starlette.applications import Starlette

from machiai.cluster_url import is_cluster_url, parse_cluster_url
from machiai.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServerError,
    PostgresTuning,
    free_port,
    redis_server_binary,
)
from machiai.embedded_root import collect_orphans
from machiai.migrate import apply_migrations
from machiai.redis_cluster import RedisClient, redis_client


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@dataclass(frozen=True, slots=True)
class PostgresForTests:
    """A server where the session owns a migrated template and per-test copies of it."""

    admin_url: str
    template: str

    def url_for(self, database: str) -> str:
        return with_database(self.admin_url, database)

    async def create_database(self, *, migrated: bool = True) -> str:
        name = f"machiai_test_{uuid.uuid4().hex[:16]}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            if migrated:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            else:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextmanager
def session_tmpdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="machiai-test-"))
    # As root the embedded Postgres runs as the user `machiai`: a data dir it can reach
    # stays here; under a private TMPDIR its data goes to /var/lib/machiai instead.
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if os.geteuid() == 0:
            # Data placed in /var/lib/machiai for a dir just removed goes with it now.
            collect_orphans()


def redis_cluster_wanted() -> bool:
    """Whether this session runs against a Redis Cluster (``MACHIAI_TEST_REDIS=cluster``)."""
    mode = os.environ.get("MACHIAI_TEST_REDIS", "") or "single"
    if mode not in ("single", "cluster"):
        raise ValueError(f"MACHIAI_TEST_REDIS={mode!r}: expected 'single' or 'cluster'")
    return mode == "cluster"


@contextmanager
def redis_for_tests(tmp: Path) -> Iterator[str]:
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        yield given
        return
    if redis_cluster_wanted():
        with redis_cluster_for_tests(tmp, SESSION_CLUSTER_NODE_TIMEOUT_MS) as cluster:
            masters = sorted(cluster.masters())
            yield cluster.url
            if sorted(cluster.masters()) != masters:
                # Nothing in the suites kills a node: a master that lost its place was
                # silent past the node timeout (a starved machine), and the tests that
                # answered busy meanwhile failed for that, not for what they check.
                raise EmbeddedServerError(
                    f"the session's Redis Cluster failed over during the run (masters "
                    f"{masters} -> {sorted(cluster.masters())})"
                )
        return
    server = EmbeddedRedis(tmp / "redis", persistent=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def postgres_for_tests(tmp: Path) -> Iterator[PostgresForTests]:
    given = os.environ.get("TEST_DATABASE_URL")
    server: EmbeddedPostgres | None = None
    if given:
        admin_url = given
    else:
        server = EmbeddedPostgres(
            tmp / "postgres", tuning=PostgresTuning(fsync=False, max_connections=400)
        ).start()
        admin_url = server.url_for("postgres")
    template = f"machiai_template_{uuid.uuid4().hex[:12]}"
    pg = PostgresForTests(admin_url, template)

    async def make_template() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{template}"')
        finally:
            await conn.close()
        await apply_migrations(pg.url_for(template))

    try:
        asyncio.run(make_template())
        yield pg
    finally:
        asyncio.run(pg.drop_database(template))
        if server is not None:
            server.stop()


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now (one in TIME_WAIT counts as free)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def delete_prefixed_keys(redis_url: str, prefix: str) -> None:
    """Every key under ``prefix`` deleted; on a cluster, from every master."""
    client: redis.Redis | redis.RedisCluster
    if is_cluster_url(redis_url):
        # The cluster client scans each primary in turn and splits DEL by slot.
        client = sync_cluster_client(redis_url)
    else:
        client = redis.Redis.from_url(redis_url)
    try:
        batch = list(client.scan_iter(match=prefix + "*", count=1000))
        while batch:
            client.delete(*batch[:1000])
            batch = batch[1000:]
    finally:
        client.close()


# --- Redis Cluster -----------------------------------------------------------------------

# A node counts a silent peer failed after this long; its replica is promoted a second or
# two later (the failover tests wait for that).
CLUSTER_NODE_TIMEOUT_MS = 1000
# The session's cluster fails over only if a node is silent this long: on a shared 2-core
# machine a second's stall happens, and no test of the suites asks for a failover.
SESSION_CLUSTER_NODE_TIMEOUT_MS = 5000
CLUSTER_START_TIMEOUT_S = 60.0
# A cluster node also listens on its port + 10000 (the cluster bus).
CLUSTER_BUS_OFFSET = 10000


def redis_client_for_tests(url: str) -> RedisClient:
    """redis-py's asyncio client for the tests' Redis: a ``RedisCluster`` for a
    ``redis+cluster://`` URL (generous timeouts: tests look, they do not race)."""
    if is_cluster_url(url):
        return redis_client(url, timeout_s=10.0)
    return aioredis.Redis.from_url(url)


def sync_cluster_client(url: str) -> redis.RedisCluster:
    """redis-py's blocking cluster client for a ``redis+cluster://`` URL (the services'
    ``machiai.redis_cluster.redis_client`` is the asyncio one)."""
    parsed = parse_cluster_url(url)
    return redis.RedisCluster(
        startup_nodes=[
            redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in parsed.seeds
        ],
        username=parsed.username,
        password=parsed.password,
        ssl=parsed.tls,
    )


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def cluster_port(rng: random.Random) -> int:
    """A port that is free and whose bus port (+10000) is free too.

    Both lie below the kernel's ephemeral range when it leaves room: there no outgoing
    connection takes one between this check and the server's bind, and ``free_port()``,
    which the other test servers use, never hands one out."""
    high = min(_ephemeral_ports_start(), 65536) - CLUSTER_BUS_OFFSET
    low = 10000 if high > 11000 else 1024
    high = high if high > 11000 else 65536 - CLUSTER_BUS_OFFSET
    for _ in range(500):
        port = rng.randrange(low, high)
        if port_free(port) and port_free(port + CLUSTER_BUS_OFFSET):
            return port
    raise EmbeddedServerError("no free port pair (port, port + 10000) for a cluster node")


def _info(client: redis.Redis, section: str) -> dict[str, str]:
    """INFO ``section`` (or CLUSTER INFO) as text fields."""
    command = "CLUSTER INFO" if section == "cluster" else f"INFO {section}"
    reply = client.execute_command(command)  # type: ignore[no-untyped-call]
    if isinstance(reply, dict):  # redis-py parses CLUSTER INFO, not INFO <section>
        return {str(key): str(value) for key, value in reply.items()}
    return dict(
        line.split(":", 1) for line in str(reply).splitlines() if ":" in line and line[0] != "#"
    )


@dataclass(slots=True)
class ClusterForTests:
    """A local Redis Cluster of embedded nodes, children of this process.

    ``url`` names the masters it was created with as seeds; ``kill`` and
    ``wait_promoted`` drive a failover."""

    url: str
    nodes: dict[int, EmbeddedRedis]
    _replicas_at_kill: dict[int, list[int]] = field(default_factory=dict, repr=False)

    def live(self) -> list[int]:
        return [
            port
            for port, node in self.nodes.items()
            if node.process is not None and node.process.poll() is None
        ]

    def admin(self, port: int) -> redis.Redis:
        return redis.Redis("127.0.0.1", port, socket_timeout=2, decode_responses=True)

    def info(self, port: int, section: str) -> dict[str, str]:
        client = self.admin(port)
        try:
            return _info(client, section)
        finally:
            client.close()

    def masters(self) -> list[int]:
        """Live nodes that are masters now, each by its own account."""
        return [p for p in self.live() if self.info(p, "replication")["role"] == "master"]

    def replicas_of(self, master: int) -> list[int]:
        """Live nodes replicating ``master`` now, each by its own account."""
        found = []
        for port in self.live():
            fields = self.info(port, "replication")
            if fields["role"] == "slave" and int(fields["master_port"]) == master:
                found.append(port)
        return found

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (no shutdown, no goodbye to its peers)."""
        self._replicas_at_kill[port] = self.replicas_of(port)
        node = self.nodes[port]
        assert node.process is not None, f"node {port} is not running"
        node.process.kill()
        node.process.wait(10)
        node.process = None

    def wait_ready(self, timeout_s: float = CLUSTER_START_TIMEOUT_S) -> None:
        """Every live node knows every live node, sees all slots served and, if a replica,
        is linked to its master."""
        live = self.live()
        deadline = time.monotonic() + timeout_s
        waiting_for = "nothing yet"
        while time.monotonic() < deadline:
            waiting_for = self._not_ready(live)
            if waiting_for == "":
                return
            time.sleep(0.05)
        raise EmbeddedServerError(
            f"the Redis Cluster is not ready after {timeout_s}s: {waiting_for}"
        )

    def _not_ready(self, live: list[int]) -> str:
        for port in live:
            try:
                cluster = self.info(port, "cluster")
                replication = self.info(port, "replication")
            except redis.RedisError as exc:
                return f"node {port}: {exc}"
            if cluster.get("cluster_state") != "ok":
                return f"node {port}: cluster_state {cluster.get('cluster_state')}"
            # A killed node stays known (flagged failed) to its peers.
            if int(cluster.get("cluster_known_nodes", 0)) < len(live):
                return f"node {port} knows {cluster.get('cluster_known_nodes')} nodes"
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return f"replica {port}: link to its master {replication['master_link_status']}"
        return ""

    def wait_promoted(self, dead: int, timeout_s: float = 30.0) -> int:
        """The port of the replica of the killed master ``dead`` once it is a master and
        every live node serves all slots again."""
        candidates = self._replicas_at_kill[dead]
        assert candidates, f"node {dead} had no replica when it was killed"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            promoted = [p for p in candidates if self.info(p, "replication")["role"] == "master"]
            if promoted and self._not_ready(self.live()) == "":
                return promoted[0]
            time.sleep(0.05)
        raise EmbeddedServerError(f"no replica of {dead} ({candidates}) promoted in {timeout_s}s")


def _start_cluster_node(data_dir: Path, rng: random.Random, timeout_ms: int) -> EmbeddedRedis:
    """A cluster-mode node on a fresh port pair; another pick when a port was taken between
    the check and the bind (the server then exits at once)."""
    attempts = 5
    for attempt in range(attempts):
        port = cluster_port(rng)
        node = EmbeddedRedis(
            data_dir / f"node-{port}",
            port=port,
            persistent=False,
            cluster_node_timeout_ms=timeout_ms,
        )
        try:
            return node.start()
        except EmbeddedServerError:
            taken = not (port_free(port) and port_free(port + CLUSTER_BUS_OFFSET))
            if not taken or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@contextmanager
def redis_cluster_for_tests(
    tmp: Path, node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS
) -> Iterator[ClusterForTests]:
    """3 masters with a replica each, on loopback, stopped on exit (and, through the
    parent-death signal, with this process)."""
    rng = random.Random()
    with ExitStack() as stack:
        nodes: dict[int, EmbeddedRedis] = {}
        for _ in range(6):
            node = _start_cluster_node(tmp / "redis-cluster", rng, node_timeout_ms)
            stack.callback(node.stop)
            nodes[node.port] = node
        cli = redis_server_binary().with_name("redis-cli")
        created = subprocess.run(
            [str(cli), "--cluster", "create", *(f"127.0.0.1:{port}" for port in nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=CLUSTER_START_TIMEOUT_S,
        )  # fmt: skip
        if created.returncode != 0:
            raise EmbeddedServerError(
                "redis-cli --cluster create failed:\n"
                + (created.stdout + created.stderr).decode(errors="replace")[-3000:]
            )
        cluster = ClusterForTests("", nodes)
        cluster.wait_ready()
        seeds = ",".join(f"127.0.0.1:{port}" for port in sorted(cluster.masters()))
        cluster.url = f"redis+cluster://{seeds}"
        yield cluster


@asynccontextmanager
async def serving(
    app: Starlette, host: str = "127.0.0.1", port: int | None = None
) -> AsyncIterator[str]:
    """``app`` under real uvicorn on a free loopback port (or ``port``, for an app that must
    know its address before it is made), in this event loop; its base URL. Another loopback
    ``host`` (127.0.0.2) is another site to a browser."""
    port = port or free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
