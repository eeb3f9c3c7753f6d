"""One multiplexed Redis connection per process for the request paths.

Why not redis.asyncio for these: each of its commands takes a pooled connection,
runs a retry wrapper, packs, writes, awaits its own read and gives the connection
back — measured at ~70 µs of CPU per round trip, more than the HTTP request around
it (booking's confirm benchmark spent 36 % of the service's CPU there). Here every
concurrent caller writes its packed command to one socket at once and waits on a
future; replies come back in order (Redis answers a connection in order), so they
are matched first-in first-out. hiredis packs and parses; this module only matches.

Invariants: replies are matched to callers strictly in send order; a caller that is
cancelled still has its reply consumed (its future is just not resolved), so
cancellation never shifts anyone else's reply; when the connection is lost, or
Redis stays silent for ``timeout_s`` while callers wait (no reply since the oldest
waiting command was sent), every waiting caller gets ``ConnectionError`` /
``TimeoutError`` (redis-py's classes, so callers catch ``RedisError`` for both
clients) and the next call reconnects. The deadline is on Redis's silence, not on each
command's age: a process too busy to read its replies for a while (a burst of 2,000
requests at once) must not call a healthy Redis unreachable.

It speaks to one Redis (redis://, rediss://, unix://, with AUTH and SELECT from the
URL). Scripts keep their keys on one hash slot all the same, so a cluster client can
replace this without touching a script.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl as ssl_module
import time
from collections.abc import Sequence
from typing import Any, Self, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float


def _pack(command: Sequence[Arg]) -> bytes:
    # hiredis' stub types the argument as a 1-tuple; it takes any length.
    packed: bytes = hiredis.pack_command(cast(Any, tuple(command)))
    return packed


def _reply_error(message: str) -> ResponseError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class _Protocol(asyncio.Protocol):
    def __init__(self, on_lost: collections.abc.Callable[[_Protocol], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        # (future, monotonic send time); replies resolve them in this order.
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.outgoing: list[bytes] = []
        self.unsent: list[asyncio.Future[Any]] = []  # their commands are in outgoing
        self.on_lost = on_lost
        self.closed = False
        self.gone = False  # connection_lost has run: the socket is closed
        self.last_reply = 0.0  # monotonic time replies last arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_reply = time.monotonic()
        self.reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(RedisConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiting:
                self.fail(RedisConnectionError("Redis sent a reply nobody asked for"))
                return
            future, _ = waiting.popleft()
            if future.done():
                continue  # its caller was cancelled; the reply is consumed all the same
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_reply_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.gone = True
        self._fail_waiting(RedisConnectionError(f"Redis connection lost: {exc or 'closed'}"))
        self.on_lost(self)

    def fail(self, exc: Exception) -> None:
        """Fail every waiting caller and drop the connection (its replies can't be matched)."""
        self.closed = True
        self._fail_waiting(exc)
        if self.transport is not None:
            self.transport.abort()

    def _fail_waiting(self, exc: Exception) -> None:
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)
        self._fail_unsent(exc)

    def _fail_unsent(self, exc: Exception) -> None:
        for future in self.unsent:
            if not future.done():
                future.set_exception(exc)
        self.unsent.clear()
        self.outgoing.clear()

    def send(self, packed: bytes, futures: Sequence[asyncio.Future[Any]]) -> None:
        """Queue a command; everything queued in one turn of the loop goes out in one
        write (one syscall for all concurrent callers instead of one each)."""
        self.unsent.extend(futures)
        self.outgoing.append(packed)
        if len(self.outgoing) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        if self.closed or self.transport is None:
            self._fail_unsent(RedisConnectionError("Redis connection lost before sending"))
            return
        data = b"".join(self.outgoing) if len(self.outgoing) > 1 else self.outgoing[0]
        self.outgoing.clear()
        # Stamped when written, not when queued: the deadline counts Redis's time only.
        now = time.monotonic()
        self.waiting.extend((f, now) for f in self.unsent)
        self.unsent.clear()
        self.transport.write(data)


class RedisMux:
    """``execute`` and ``pipeline`` over one shared connection, (re)connected on demand."""

    def __init__(
        self, options: dict[str, Any], *, timeout_s: float = 10.0, connect_timeout_s: float = 5.0
    ) -> None:
        self.options = options
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._proto: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **kwargs: float) -> Self:
        return cls(dict(parse_url(url)), **kwargs)

    @classmethod
    def like(cls, client: aioredis.Redis, **kwargs: float) -> Self:
        """The same server, credentials and database as a redis.asyncio client."""
        pool = client.connection_pool
        options: dict[str, Any] = dict(pool.connection_kwargs)
        options["connection_class"] = pool.connection_class
        return cls(options, **kwargs)

    async def execute(self, *args: Arg) -> Any:
        """One command; its reply (bytes, int, list, None), or raises ``RedisError``."""
        loop = asyncio.get_running_loop()
        proto = self._proto
        if proto is None or proto.closed or self._loop is not loop:
            proto = await self._connect(loop)
        future: asyncio.Future[Any] = loop.create_future()
        proto.send(_pack(args), (future,))
        return await future

    def send_now(self, args: Sequence[Arg]) -> asyncio.Future[Any] | None:
        """``execute`` without its coroutine: the reply's future when the connection is up
        (None: call ``execute``, which connects). For a caller that routes commands over
        several muxes (:mod:`machiai.redis_cluster`): one coroutine frame less per command."""
        proto = self._proto
        if proto is None or proto.closed:
            return None
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            return None
        future: asyncio.Future[Any] = loop.create_future()
        proto.send(_pack(args), (future,))
        return future

    async def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Several commands in one write; replies in order (errors as values if asked)."""
        if not commands:
            return []
        loop = asyncio.get_running_loop()
        proto = self._proto
        if proto is None or proto.closed or self._loop is not loop:
            proto = await self._connect(loop)
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in commands]
        proto.send(b"".join(_pack(c) for c in commands), futures)
        # Replies resolve futures in send order and a lost connection fails them in that
        # order too, so once the last is done all are: one wait, no gather machinery.
        try:
            with contextlib.suppress(Exception):
                await futures[-1]
        except BaseException:
            for future in futures:
                future.cancel()  # cancelled caller: its replies are consumed unseen
            raise
        failures = [future.exception() for future in futures]  # all retrieved: none warns
        results: list[Any] = []
        for future, error in zip(futures, failures, strict=True):
            if isinstance(error, (RedisConnectionError, RedisTimeoutError)) or (
                raise_on_error and error is not None
            ):
                raise error
            results.append(future.result() if error is None else error)
        return results

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        if self._closed:
            raise RedisConnectionError("Redis client is closed")
        if self._loop is None:
            self._loop, self._connecting = loop, asyncio.Lock()
        elif self._loop is not loop:
            raise RuntimeError("a RedisMux serves only the event loop it first ran in")
        assert self._connecting is not None
        async with self._connecting:
            if self._proto is not None and not self._proto.closed:
                return self._proto
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    proto = await self._open(loop)
            except TimeoutError as exc:
                raise RedisTimeoutError("Redis did not accept a connection in time") from exc
            except OSError as exc:
                raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
            self._proto = proto
            self._arm_watchdog()
            return proto

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        o = self.options
        factory = lambda: _Protocol(self._lost)  # noqa: E731
        if "path" in o:
            _, proto = await loop.create_unix_connection(factory, o["path"])
        else:
            ssl_ctx: ssl_module.SSLContext | None = None
            connection_class = o.get("connection_class")
            if isinstance(connection_class, type) and issubclass(connection_class, SSLConnection):
                ssl_ctx = ssl_module.create_default_context(cafile=o.get("ssl_ca_certs"))
                if o.get("ssl_cert_reqs") in ("none", ssl_module.CERT_NONE):
                    ssl_ctx.check_hostname = False
                    ssl_ctx.verify_mode = ssl_module.CERT_NONE
            _, proto = await loop.create_connection(
                factory, o.get("host", "localhost"), int(o.get("port", 6379)), ssl=ssl_ctx
            )
        handshake: list[list[Arg]] = []
        if o.get("password"):
            handshake.append(
                ["AUTH", o["username"], o["password"]]
                if o.get("username")
                else ["AUTH", o["password"]]
            )
        if int(o.get("db", 0) or 0):
            handshake.append(["SELECT", int(o["db"])])
        if handshake:
            futures = [loop.create_future() for _ in handshake]
            proto.send(b"".join(_pack(c) for c in handshake), futures)
            try:
                for future in futures:
                    await future
            except ResponseError as exc:
                proto.fail(RedisConnectionError(f"Redis refused the handshake: {exc}"))
                raise RedisConnectionError(f"Redis refused the handshake: {exc}") from exc
        return proto

    def _lost(self, proto: _Protocol) -> None:
        if self._proto is proto:
            self._proto = None

    def _arm_watchdog(self) -> None:
        if self._watchdog is None and self._loop is not None:
            self._watchdog = self._loop.call_later(
                min(1.0, self.timeout_s / 2), self._check_overdue
            )

    def _check_overdue(self) -> None:
        """Once a second, not per command: a timer per command would cost as much as the
        round trip it guards."""
        self._watchdog = None
        proto = self._proto
        if proto is None or proto.closed:
            return
        # Sockets are read before timers run in a turn of the loop: a reply already
        # received has moved last_reply by now, however busy the process was.
        if proto.waiting and time.monotonic() - max(proto.waiting[0][1], proto.last_reply) > (
            self.timeout_s
        ):
            proto.fail(RedisTimeoutError(f"no reply from Redis in {self.timeout_s:g} s"))
            self._proto = None
            return
        self._arm_watchdog()

    async def aclose(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        proto, self._proto = self._proto, None
        if proto is None:
            return
        if not proto.closed:
            proto.fail(RedisConnectionError("Redis client closed"))
        # The transport closes its socket in a callback: let it run before the loop ends.
        for _ in range(100):
            if proto.gone:
                break
            await asyncio.sleep(0.001)
