"""Redis Cluster for both services: ``REDIS_URL=redis+cluster://host:port[,host:port…]``.

Why our own client and not a library's: measured in one run (``benchmarks/bench_redis_clients.py``,
benchmarks/HISTORY.md), CPU per EVALSHA was 3.3 µs for :mod:`machiai.redis_mux` against
26.5 µs for valkey-glide, 46 µs for redis-py's cluster client and 66 µs for coredis: none
within the 15 % the hot paths allow. A cluster only adds routing to what the mux does, so
:class:`ClusterMux` routes each command to one :class:`~machiai.redis_mux.RedisMux` per
master (one multiplexed connection per node) by the slot of its first key.

Promises kept here:
- **Every command reaches the master of its key's slot**: the slot map comes from
  ``CLUSTER SLOTS``; a ``MOVED`` answer updates the slot at once (and the whole map in the
  background) and the command is sent again there; ``ASK`` sends it once to the node
  named, after ``ASKING``, without changing the map (a slot being migrated).
- **A command is never sent twice after it may have run**: only refusals that say the
  command did not run (``MOVED``, ``ASK``, ``TRYAGAIN``) are retried. A lost connection
  fails the waiting calls as on one node (callers answer ``busy``) and the map is fetched
  again, so the calls after a failover reach the promoted replica.
- **Order per slot**: a pipeline is split by node, each node's part keeps its order and
  goes out in one write; every script keeps its keys on one slot, so nothing relies on the
  order between slots.

redis-py's ``RedisCluster`` (:func:`redis_client`) stays for what is not on a hot path:
the readiness check and the tests that look at keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from machiai.cluster_url import Address, is_cluster_url, parse_cluster_url
from machiai.redis_mux import Arg, RedisMux

SLOTS = 16384
# How each command is routed: by its first key (the default), keyless to any master,
# or to every master (a script must be known wherever its keys live).
_KEYED, _SCRIPT_CALL, _ANY_NODE, _EVERY_MASTER = range(4)
_ROUTES: dict[bytes, int] = {
    **dict.fromkeys((b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO", b"FCALL"), _SCRIPT_CALL),
    **dict.fromkeys((b"PING", b"TIME", b"ECHO", b"INFO", b"DBSIZE", b"CLUSTER"), _ANY_NODE),
    **dict.fromkeys((b"SCRIPT", b"FLUSHALL", b"FLUSHDB"), _EVERY_MASTER),
}
# The hot paths name their commands as str: looked up as given, no upper() per call.
_ROUTE_OF: dict[Arg, int] = {}
for _name, _route in _ROUTES.items():
    _ROUTE_OF.update({_name: _route, _name.decode(): _route, _name.decode().lower(): _route})
# How many times one command follows MOVED / ASK / TRYAGAIN before the caller hears busy.
_REDIRECTS = 5
_TRYAGAIN_S = 0.05
# The whole map is fetched at most this often when connections fail (a dead master is
# asked about by every waiting call at once).
_REFRESH_EVERY_S = 0.25

RedisClient = aioredis.Redis | RedisCluster


def redis_client(url: str, *, timeout_s: float) -> RedisClient:
    """redis-py's client for ``url`` (a cluster's for ``redis+cluster://``): readiness
    checks and tests; the request paths use :func:`wire_like`."""
    if not is_cluster_url(url):
        return aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
    parsed = parse_cluster_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.tls:
        kwargs["ssl"] = True
        if parsed.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = parsed.ssl_ca_certs
        if parsed.ssl_cert_reqs:
            kwargs["ssl_cert_reqs"] = parsed.ssl_cert_reqs
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.seeds],
        username=parsed.username,
        password=parsed.password,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        **kwargs,
    )


def wire_like(
    client: RedisClient, *, timeout_s: float, connect_timeout_s: float
) -> RedisMux | ClusterMux:
    """The request paths' connection to the same server(s) as ``client``."""
    if not isinstance(client, RedisCluster):
        return RedisMux.like(client, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)
    kw = client.connection_kwargs
    options: dict[str, Any] = {"username": kw.get("username"), "password": kw.get("password")}
    connection_class = kw.get("connection_class")
    if isinstance(connection_class, type) and issubclass(connection_class, SSLConnection):
        options["connection_class"] = SSLConnection
        options["ssl_ca_certs"] = kw.get("ssl_ca_certs")
        options["ssl_cert_reqs"] = kw.get("ssl_cert_reqs")
    seeds = tuple((node.host, int(node.port)) for node in client.startup_nodes)
    return ClusterMux(seeds, options, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)


def _word(arg: Arg) -> bytes:
    return arg.upper() if isinstance(arg, bytes) else str(arg).upper().encode()


def _slot(key: Arg) -> int:
    return key_slot(key if isinstance(key, bytes) else str(key).encode())


def _redirect(error: BaseException) -> tuple[str, int, Address] | None:
    """``("MOVED"|"ASK", slot, (host, port))`` of a redirect refusal, else None."""
    if not isinstance(error, ResponseError):
        return None
    kind, _, rest = str(error).partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    slot, _, where = rest.partition(" ")
    host, _, port = where.rpartition(":")
    return kind, int(slot), (host.strip("[]"), int(port))


def _try_again(error: BaseException) -> bool:
    return isinstance(error, ResponseError) and str(error).startswith("TRYAGAIN")


class ClusterMux:
    """``execute`` and ``pipeline`` as :class:`RedisMux`, over a Redis Cluster."""

    def __init__(
        self,
        seeds: Sequence[Address],
        options: dict[str, Any],
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not seeds:
            raise ValueError("a cluster needs at least one seed node")
        self.seeds = tuple(seeds)
        self.options = options
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._nodes: dict[Address, RedisMux] = {}
        self._slots: list[Address | None] = [None] * SLOTS
        self._masters: tuple[Address, ...] = ()
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = -_REFRESH_EVERY_S
        self._closed = False

    # -- routing ------------------------------------------------------------------

    def _node(self, address: Address) -> RedisMux:
        mux = self._nodes.get(address)
        if mux is None:
            if self._closed:  # no connection opened after aclose (nobody would close it)
                raise RedisConnectionError("Redis client is closed")
            options = dict(self.options, host=address[0], port=address[1])
            mux = RedisMux(
                options, timeout_s=self.timeout_s, connect_timeout_s=self.connect_timeout_s
            )
            self._nodes[address] = mux
        return mux

    def slot_of(self, command: Sequence[Arg]) -> int | None:
        """The hash slot a command's first key is on; None for keyless commands."""
        first = command[0]
        route = _ROUTE_OF.get(first)
        if route is None:
            route = _ROUTES.get(_word(first), _KEYED)
        if route == _KEYED:
            return _slot(command[1]) if len(command) > 1 else None
        if route == _SCRIPT_CALL and int(command[2]) > 0:
            return _slot(command[3])
        return None

    @staticmethod
    def _route(first: Arg) -> int:
        route = _ROUTE_OF.get(first)
        return _ROUTES.get(_word(first), _KEYED) if route is None else route

    async def _master_of(self, slot: int) -> Address:
        address = self._slots[slot]
        if address is None:
            await self.refresh()
            address = self._slots[slot]
            if address is None:
                raise RedisConnectionError(f"no Redis Cluster master serves slot {slot}")
        return address

    async def _some_master(self) -> Address:
        if not self._masters:
            await self.refresh()
        return self._masters[0]

    # -- the slot map -------------------------------------------------------------

    async def refresh(self) -> None:
        """Fetch the slot map (single-flight: concurrent callers share one fetch)."""
        if self._closed:
            raise RedisConnectionError("Redis client is closed")
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.ensure_future(self._fetch_map())
        await asyncio.shield(task)

    def _stale(self) -> None:
        """A connection failed: fetch the map again soon, in the background (a failover
        moves the slots of a dead master to its replica)."""
        if self._closed or (self._refreshing is not None and not self._refreshing.done()):
            return
        if time.monotonic() - self._refreshed_at < _REFRESH_EVERY_S:
            return
        self._refreshing = asyncio.ensure_future(self._fetch_map())
        self._refreshing.add_done_callback(_swallow)

    async def _fetch_map(self) -> None:
        self._refreshed_at = time.monotonic()
        # Known masters first (they know the newest map), then the seeds.
        candidates = list(dict.fromkeys([*self._masters, *self.seeds]))
        problem: Exception | None = None
        for address in candidates:
            try:
                reply = await self._node(address).execute("CLUSTER", "SLOTS")
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
                problem = exc
                continue
            self._apply_map(address, reply)
            return
        raise RedisConnectionError(f"no Redis Cluster node answered CLUSTER SLOTS: {problem}")

    def _apply_map(self, asked: Address, reply: list[Any]) -> None:
        table: list[Address | None] = [None] * SLOTS
        masters: dict[Address, None] = {}
        for entry in reply:
            start, end, master = int(entry[0]), int(entry[1]), entry[2]
            raw_host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            # An empty or "?" host means: the address you asked me on.
            host = raw_host if raw_host not in ("", "?") else asked[0]
            address = (host, int(master[1]))
            masters[address] = None
            table[start : end + 1] = [address] * (end - start + 1)
        self._slots = table
        self._masters = tuple(sorted(masters))

    # -- commands -----------------------------------------------------------------

    async def execute(self, *args: Arg) -> Any:
        """One command on the master of its key's slot; its reply, or raises ``RedisError``."""
        slot = self.slot_of(args)
        if slot is None:
            return await self._keyless(args)
        address = self._slots[slot] or await self._master_of(slot)
        mux = self._nodes.get(address) or self._node(address)
        try:
            sent = mux.send_now(args)
            return await (mux.execute(*args) if sent is None else sent)
        except (RedisConnectionError, RedisTimeoutError):
            self._stale()
            raise
        except ResponseError as error:
            return await self._follow(args, error)

    async def _keyless(self, args: Sequence[Arg]) -> Any:
        if self._route(args[0]) == _EVERY_MASTER:
            if not self._masters:
                await self.refresh()
            replies = await asyncio.gather(
                *(self._node(a).execute(*args) for a in self._masters), return_exceptions=True
            )
            for reply in replies:
                if isinstance(reply, BaseException):
                    if isinstance(reply, (RedisConnectionError, RedisTimeoutError)):
                        self._stale()
                    raise reply
            return replies[0]
        address = await self._some_master()
        try:
            return await self._node(address).execute(*args)
        except (RedisConnectionError, RedisTimeoutError):
            self._stale()
            raise

    async def _follow(self, command: Sequence[Arg], error: BaseException) -> Any:
        """Send ``command`` again where a MOVED / ASK / TRYAGAIN refusal says (it did not
        run); any other error is the command's own and is raised."""
        for _ in range(_REDIRECTS):
            redirect = _redirect(error)
            try:
                if redirect is not None:
                    kind, slot, address = redirect
                    if kind == "MOVED":
                        self._slots[slot] = address  # at once; the rest of the map follows
                        self._stale()
                        return await self._node(address).execute(*command)
                    asking = await self._node(address).pipeline(
                        [("ASKING",), tuple(command)], raise_on_error=False
                    )
                    if isinstance(asking[1], BaseException):
                        raise asking[1]
                    return asking[1]
                if _try_again(error):
                    await asyncio.sleep(_TRYAGAIN_S)
                    slot_ = self.slot_of(command)
                    assert slot_ is not None
                    return await self._node(await self._master_of(slot_)).execute(*command)
                raise error
            except (RedisConnectionError, RedisTimeoutError):
                self._stale()
                raise
            except ResponseError as again:
                if _redirect(again) is None and not _try_again(again):
                    raise
                error = again
        raise RedisConnectionError("Redis Cluster kept redirecting a command (slots moving)")

    async def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Several commands; each node's share in one write, in order; replies in the
        order given (errors as values if asked)."""
        if not commands:
            return []
        replies: list[Any] = [None] * len(commands)
        by_node: dict[Address, list[int]] = {}
        keyless: list[int] = []
        for i, command in enumerate(commands):
            slot = self.slot_of(command)
            if slot is None:
                keyless.append(i)
                continue
            address = self._slots[slot] or await self._master_of(slot)
            by_node.setdefault(address, []).append(i)
        for i in keyless:
            try:
                replies[i] = await self._keyless(commands[i])
            except ResponseError as error:
                replies[i] = error
        parts = list(by_node.items())
        if len(parts) == 1:
            address, indices = parts[0]
            outcomes: list[Any] = [await self._part(address, [commands[i] for i in indices])]
        else:
            outcomes = await asyncio.gather(
                *(self._part(a, [commands[i] for i in idx]) for a, idx in parts),
                return_exceptions=True,
            )
        for (_, indices), outcome in zip(parts, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            for i, reply in zip(indices, outcome, strict=True):
                replies[i] = reply
        # Redirected commands did not run: send them again, in the order given.
        for i, reply in enumerate(replies):
            if isinstance(reply, ResponseError) and (
                _redirect(reply) is not None or _try_again(reply)
            ):
                try:
                    replies[i] = await self._follow(commands[i], reply)
                except ResponseError as error:
                    replies[i] = error
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    async def _part(self, address: Address, commands: list[Sequence[Arg]]) -> list[Any]:
        try:
            return await self._node(address).pipeline(commands, raise_on_error=False)
        except (RedisConnectionError, RedisTimeoutError):
            self._stale()
            raise

    def owner(self, key: Arg) -> Address | None:
        """The master this client believes serves ``key`` (None: no map yet)."""
        return self._slots[_slot(key)]

    def masters(self) -> tuple[Address, ...]:
        """The masters of the last map fetched (for readiness and tests)."""
        return self._masters

    async def aclose(self) -> None:
        self._closed = True
        task = self._refreshing
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        nodes, self._nodes = list(self._nodes.values()), {}
        for mux in nodes:
            await mux.aclose()


def _swallow(task: asyncio.Task[None]) -> None:
    """A background map fetch that failed is retried by the next failure; its error is
    read here so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


__all__ = ["ClusterMux", "RedisClient", "is_cluster_url", "redis_client", "wire_like"]
