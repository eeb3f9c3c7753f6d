"""Joins per client address, limited in this process (no Redis round trip)."""

from __future__ import annotations

import time
from collections import OrderedDict


class ClientLimiter:
    """Per-client token bucket for joins, in this process only (no Redis round trip).

    With several processes behind a load balancer a client gets up to
    ``processes x per_minute``; the limit is against scripted floods, not exact quotas."""

    def __init__(self, per_minute: int, burst: int, max_clients: int = 100_000) -> None:
        self.per_s = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_s > 0

    def check(self, client: str) -> int:
        """0 if allowed (and counted), else seconds to wait."""
        if not self.enabled:
            return 0
        now = time.monotonic()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.per_s)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            allowed = 0
        else:
            self._buckets[client] = (tokens, now)
            allowed = max(1, int((1.0 - tokens) / self.per_s + 0.999))
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return allowed
