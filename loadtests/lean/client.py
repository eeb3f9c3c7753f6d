"""A small HTTP/1.1 client for the lean generator: keep-alive connections, one request at a time.

Why not httpx (a dependency already): on this machine its async client spent 1.5–4 ms of CPU
per request against a local hello app (3,400 µs with 32 connections), against 44–74 µs for
this client — httptools' parser (the one uvicorn uses; it comes with ``uvicorn[standard]``)
on a plain asyncio protocol. A city-sized line polls a few thousand times a second, so the
client's CPU is what decides whether one generator process can play it.

One ``Lane`` owns one connection and sends one request at a time on it, so a generator with
N lanes per service never holds more than N sockets, whatever the number of residents.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

# uvicorn closes a keep-alive connection idle for 5 s (its default): a lane reconnects itself
# before that, so a request is not written into a socket the server is closing.
IDLE_S = 4.0
TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Reply:
    """``status`` 0: no answer at all (refused, reset, timed out, garbled)."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode())


NO_REPLY = Reply(0, b"")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a service listens, and the bytes every request to it starts its headers with."""

    host: str
    port: int
    base: str  # path prefix, without the trailing slash

    @classmethod
    def from_url(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"the lean generator speaks plain HTTP only, not {url!r}")
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/"))

    def request(self, method: str, path: str, headers: str, body: bytes = b"") -> bytes:
        """One request's bytes; ``headers`` are ready lines, each ending in CRLF."""
        length = f"content-length: {len(body)}\r\n" if body or method != "GET" else ""
        head = f"{method} {self.base}{path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
        return (head + headers + length + "\r\n").encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """One socket and its parser; ``exchange`` sends a request, its future gets the reply."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Reply] | None = None
        self.chunks: list[bytes] = []
        self.received = False  # any byte of the current reply
        self.closed = False
        self.used = 0
        self.sent_at = 0.0
        self.idle_since = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"unreadable reply: {exc}"))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        reply = Reply(self.parser.get_status_code(), b"".join(self.chunks))
        self.chunks = []
        self.idle_since = time.monotonic()
        if not self.parser.should_keep_alive():
            self.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionResetError(f"connection lost: {exc or 'closed by the server'}"))

    def _fail(self, exc: OSError) -> None:
        self.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def exchange(self, data: bytes) -> asyncio.Future[Reply]:
        assert self.transport is not None and self.waiter is None
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        self.received = False
        self.used += 1
        self.sent_at = time.monotonic()
        self.transport.write(data)
        return waiter

    def expire(self, now: float) -> None:
        """Give up on a reply that has not come in ``TIMEOUT_S`` (checked from outside, about
        once a second: a timer per request would cost more than the request)."""
        if self.waiter is not None and now - self.sent_at > TIMEOUT_S:
            self._fail(TimeoutError(f"no reply in {TIMEOUT_S:.0f} s"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Lane:
    """One keep-alive connection to one origin, used by one worker at a time.

    A request that fails on a reused connection before any byte of its reply came back is
    sent once more on a fresh one: the server closed the connection under it (as browsers
    and urllib3 do). Every other failure is the caller's ``NO_REPLY``."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self._conn: _Connection | None = None
        self.connects = 0
        self.resent = 0

    async def _fresh(self) -> _Connection:
        if self._conn is not None:
            self._conn.close()
        loop = asyncio.get_running_loop()
        _transport, conn = await asyncio.wait_for(
            loop.create_connection(_Connection, self.origin.host, self.origin.port), TIMEOUT_S
        )
        self.connects += 1
        self._conn = conn
        return conn

    async def send(self, data: bytes) -> Reply:
        conn = self._conn
        try:
            if conn is None or conn.closed or time.monotonic() - conn.idle_since > IDLE_S:
                conn = await self._fresh()
            try:
                return await conn.exchange(data)
            except TimeoutError:
                raise  # the server may be working on it: never sent twice
            except OSError:
                if conn.used == 1 or conn.received:
                    raise
            self.resent += 1
            conn = await self._fresh()
            return await conn.exchange(data)
        except OSError:  # ConnectionError and TimeoutError among them
            if self._conn is not None:
                self._conn.close()
            return NO_REPLY

    def expire(self, now: float) -> None:
        if self._conn is not None:
            self._conn.expire(now)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
