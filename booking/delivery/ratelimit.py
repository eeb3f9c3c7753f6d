"""Messages per second per channel, per worker process: a token bucket.

Per process, not across workers: N workers send up to N times the rate (README says so).
The bucket holds one second's worth, so a quiet channel may send that many at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimit:
    def __init__(
        self,
        per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.per_s = per_s
        self.capacity = max(1.0, per_s)
        self.tokens = self.capacity
        self.clock = clock
        self.sleep = sleep
        self.at = clock()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        """Wait until one message may go (at once when the rate is 0: no limit)."""
        if self.per_s <= 0:
            return
        async with self.lock:
            while True:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_s)
                self.at = now
                # (Within rounding: a wait of a few ulps may not move the clock at all.)
                if self.tokens >= 1 - 1e-9:
                    self.tokens = max(0.0, self.tokens - 1)
                    return
                await self.sleep((1 - self.tokens) / self.per_s)
