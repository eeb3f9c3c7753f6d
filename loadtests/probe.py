"""A latency probe outside locust: one light client polling as the run goes on.

Locust measures a request from its greenlet's point of view, so when a worker process juggles
a thousand residents its own scheduling delay lands in the figures. The probe runs in its own
thread with one keep-alive connection per service and asks every ``interval_s``: a waiting
resident's status (it joins once, as its own client) and booking's public availability. If the
probe's p99 stays low while locust's climbs, the tail is the generator's, not the system's.
"""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

from loadtests.judge import quantile
from loadtests.periodic import Periodic

JSON = {"accept": "application/json"}
PROBE_CLIENT = "10.255.255.254"  # its own client address (the run trusts X-Forwarded-For)


def _connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return kind(parts.netloc, timeout=10), parts.path.rstrip("/")


class LatencyProbe(Periodic):
    def __init__(
        self, waitroom_url: str, booking_url: str, event_id: str, interval_s: float = 0.05
    ) -> None:
        super().__init__(interval_s)
        self.event_id = event_id
        self.samples: dict[str, list[float]] = {"waitroom status": [], "booking availability": []}
        self.failures: dict[str, int] = {name: 0 for name in self.samples}
        self._waitroom, self._wbase = _connect(waitroom_url)
        self._booking, self._bbase = _connect(booking_url)
        self._requests: list[tuple[str, http.client.HTTPConnection, str, dict[str, str]]] = []

    def setup(self) -> bool:
        """Join the line once, as a resident of its own, retrying until the run ends."""
        ticket = None
        while ticket is None and not self.stopping:
            ticket = self._join(self._waitroom, self._wbase)
            if ticket is None:
                self.pause(1)
        self._requests = [
            (
                "waitroom status",
                self._waitroom,
                f"{self._wbase}/events/{self.event_id}/status",
                {**JSON, "x-machiai-ticket": ticket or "", "x-forwarded-for": PROBE_CLIENT},
            ),
            (
                "booking availability",
                self._booking,
                f"{self._bbase}/api/public/events/{self.event_id}/availability",
                JSON,
            ),
        ]
        return ticket is not None

    def tick(self) -> None:
        for name, conn, path, headers in self._requests:
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status < 500
            except (OSError, http.client.HTTPException):
                conn.close()  # reconnects on the next request
                ok = False
            if ok:
                self.samples[name].append((time.perf_counter() - started) * 1000)
            else:
                self.failures[name] += 1

    def teardown(self) -> None:
        self._waitroom.close()
        self._booking.close()

    def _join(self, conn: http.client.HTTPConnection, base: str) -> str | None:
        try:
            conn.request(
                "POST",
                f"{base}/events/{self.event_id}/join",
                headers={**JSON, "x-forwarded-for": PROBE_CLIENT},
            )
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            return None
        if response.status not in (200, 201):
            return None
        ticket = json.loads(body).get("ticket")
        return str(ticket) if ticket else None

    def percentiles(self) -> dict[str, dict[str, float]]:
        """Per request: count, failures and p50/p95/p99/max in ms."""
        out: dict[str, dict[str, float]] = {}
        for name, values in self.samples.items():
            ordered = sorted(values)
            row: dict[str, float] = {"n": len(ordered), "failures": self.failures[name]}
            if ordered:
                for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                    row[label] = round(quantile(ordered, q), 1)
                row["max"] = round(ordered[-1], 1)
            out[name] = row
        return out
