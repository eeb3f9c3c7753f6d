"""Concurrent requests for the same missing thing share one fetch.

Why: at opening time hundreds of residents ask for the same few slots within a
millisecond. Whatever a process does not hold yet (a slot's catalogue entry, a slot
Redis lost) must then be read once, not once per resident: a cache miss that fans
out into one Postgres query per waiting request is a self-inflicted surge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """``run(key, fetch)``: the first caller for ``key`` starts ``fetch()``; callers that
    arrive while it runs wait for that same result (or exception). Once it has finished,
    the next caller starts a new fetch (a result is kept only for ``asked_at`` callers,
    below).

    A caller cancelled while waiting leaves the fetch running for the others.

    ``asked_at`` (time.monotonic()): when the caller learnt it lacks the thing. A fetch
    for ``key`` that finished after that moment answers it without a new one — a caller
    whose answer was delayed (a pipeline waiting on another Redis Cluster node) while
    the fetch ran and finished would otherwise start a second one.
    """

    # Recent results kept for ``asked_at`` callers; cleared whole beyond this many keys.
    RECENT_LIMIT = 10_000

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}
        self._recent: dict[K, tuple[float, V]] = {}
        # Fetches started (not calls): what the thing behind it was really asked.
        self.started = 0

    def __len__(self) -> int:
        return len(self._running)

    async def run(
        self,
        key: K,
        fetch: Callable[[], Coroutine[Any, Any, V]],
        asked_at: float | None = None,
    ) -> V:
        if asked_at is not None:
            recent = self._recent.get(key)
            if recent is not None and recent[0] > asked_at:
                return recent[1]
        task = self._running.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(fetch())
            self.started += 1
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            # Marks the exception retrieved when every waiter was cancelled before it came.
            if task.exception() is None:
                if len(self._recent) >= self.RECENT_LIMIT:
                    self._recent.clear()
                self._recent[key] = (time.monotonic(), task.result())
