"""Numbers in the line, in arrival order, handed out in shared round trips.

Joins that arrive together share one join_line-1.lua call (one INCRBY): joins
that reach the event loop in the same turn go together, joins arriving while a
call is in flight gather for the next one (group commit), and an idle event's
first join may wait ``join_linger_ms`` for company (0 by default: measured best).
Numbers of a batch go out in the order the joins arrived in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass

from waitroom.errors import EventClosed, EventNotOpenYet, ScriptError
from waitroom.services.line import Clock, Line, redis_clock
from waitroom.store.redis_store import LineKind, RedisStore, ScriptRefused


@dataclass(frozen=True, slots=True)
class Number:
    """A number in one event's line (pre-queue or arrival) and the counters it came with."""

    kind: LineKind
    number: int
    admitted: int
    n_pre: int | None

    @property
    def line_index(self) -> int | None:
        if self.kind is LineKind.PREQUEUE or self.n_pre is None:
            return None
        return self.n_pre + self.number


class JoinBatcher:
    """Batches concurrent joins per event into one Redis call."""

    def __init__(
        self,
        store: RedisStore,
        line: Line,
        *,
        linger_ms: float = 0.0,
        max_batch: int = 512,
        clock: Clock = redis_clock,
    ) -> None:
        self.store = store
        self.line = line
        self.linger_s = linger_ms / 1000
        self.max_batch = max_batch
        self.clock = clock
        self._pending: dict[str, list[asyncio.Future[Number]]] = {}
        self._flushing: dict[str, asyncio.Task[None]] = {}
        self.calls = 0  # Redis round trips made (for tests and the benchmark)

    async def take_number(self, event_id: str) -> Number:
        """The next number of this event's line (pre-queue or arrival)."""
        future: asyncio.Future[Number] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(event_id, []).append(future)
        if event_id not in self._flushing:
            self._flushing[event_id] = asyncio.create_task(self._flush(event_id))
        return await future

    async def _flush(self, event_id: str) -> None:
        try:
            if self.linger_s > 0 and len(self._pending.get(event_id, ())) < self.max_batch:
                await asyncio.sleep(self.linger_s)
            while self._pending.get(event_id):
                queue = self._pending[event_id]
                batch, self._pending[event_id] = queue[: self.max_batch], queue[self.max_batch :]
                await self._call(event_id, batch)
        finally:
            del self._flushing[event_id]
            if not self._pending.get(event_id):
                self._pending.pop(event_id, None)

    async def _call(self, event_id: str, batch: list[asyncio.Future[Number]]) -> None:
        self.calls += 1
        try:
            try:
                result = await self.store.join_line(
                    event_id, len(batch), secrets.token_hex(16), self.clock()
                )
            except ScriptRefused as refused:
                if refused.code is not ScriptError.NOT_LOADED:
                    raise
                self.line.forget(event_id)
                await self.line.snapshot(event_id)
                result = await self.store.join_line(
                    event_id, len(batch), secrets.token_hex(16), self.clock()
                )
        except ScriptRefused as refused:
            error: Exception = {
                ScriptError.CLOSED: EventClosed,
                ScriptError.NOT_OPEN_YET: EventNotOpenYet,
            }.get(refused.code, EventClosed)()
            for future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        except Exception as exc:
            for future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for offset, future in enumerate(batch):
            if not future.done():
                future.set_result(
                    Number(result.kind, result.first + offset, result.admitted, result.n_pre)
                )

    async def close(self) -> None:
        for task in list(self._flushing.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
