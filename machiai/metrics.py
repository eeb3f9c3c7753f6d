"""Prometheus metrics of both services: requests by route and status, latency histograms,
and what each service reports of its own state (line, admission, outbox, pools).

Cheap on the hot paths: a request adds one to a plain dict of this process (well under a
microsecond); the dict is flushed into prometheus-client's metrics a second after the
first request that found it flushed (a timer on the event loop), and before every scrape.
In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, which ``machiai run --workers`` and
the container entrypoint set) each such metric update is a locked write to a
memory-mapped file, a few microseconds: per request, several per cent of a status poll's
cost (measured: benchmarks/bench_metrics.py and benchmarks/HISTORY.md).

Multiprocess: with ``PROMETHEUS_MULTIPROC_DIR`` set before the process imports this
module, every worker writes its own files there and ``/metrics`` of any worker reports all
of them (prometheus-client's MultiProcessCollector); without it, the process's own.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from machiai.config import CoreSettings
from machiai.errors import ERROR_CODE_KEY, error_body
from machiai.openapi import Operation, Reply, string

FLUSH_EVERY_S: Final = 1.0
# Seconds; a status poll takes about a millisecond, a confirm tens, an import minutes.
LATENCY_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# The label of a request no route matched (scanners, typos): one series, not one per path.
UNMATCHED: Final = "unmatched"
# A scope key for the route template of a request no router matched, set by a middleware
# that answers before the router while RequestMetrics measures it.
ROUTE_KEY: Final = "machiai.route"

REQUESTS = Counter(
    "machiai_http_requests",
    "HTTP requests answered, by route template and status code",
    ["service", "route", "method", "status"],
)
LATENCY = Histogram(
    "machiai_http_request_duration_seconds",
    "Time from a request's start to its last byte sent, by route template",
    ["service", "route"],
    buckets=LATENCY_BUCKETS_S,
)
REFUSALS = Counter(
    "machiai_refusals",
    "Requests answered with an error code (4xx/5xx with the error shape), by code",
    ["service", "code"],
)
# Gauges sampled by each process's background loop; the most recent sample of any
# process wins (they all read the same Redis and Postgres).
LINE_WAITING = Gauge(
    "machiai_line_waiting",
    "Residents in line, not yet admitted, by event",
    ["event"],
    multiprocess_mode="mostrecent",
)
LINE_ADMITTED = Gauge(
    "machiai_line_admitted",
    "Residents admitted so far (the line's admission counter), by event",
    ["event"],
    multiprocess_mode="mostrecent",
)
LINE_ACTIVE = Gauge(
    "machiai_booking_active",
    "Residents active in booking (admitted, session not yet ended), by event",
    ["event"],
    multiprocess_mode="mostrecent",
)
ADMISSION_FACTOR = Gauge(
    "machiai_admission_factor",
    "The admission controller's factor (1 = the event's rate; lower while booking is slow)",
    ["event"],
    multiprocess_mode="mostrecent",
)
EVENT_OPEN = Gauge(
    "machiai_event_open",
    "1 while the event admits (open), 0 before opening, paused or closed",
    ["event"],
    multiprocess_mode="mostrecent",
)
TURNS_ABANDONED = Gauge(
    "machiai_turns_abandoned",
    "Turns admitted a while ago that took no pass (most likely given up), by event",
    ["event"],
    multiprocess_mode="mostrecent",
)
SLOTS_LEFT = Gauge(
    "machiai_slots_left",
    "Places left in the event's slots (booking's report to the waitroom)",
    ["event"],
    multiprocess_mode="mostrecent",
)
OUTBOX_BACKLOG = Gauge(
    "machiai_outbox_backlog",
    "Messages not yet delivered (outbox rows not fanned out, deliveries pending)",
    multiprocess_mode="mostrecent",
)
OUTBOX_DEAD = Gauge(
    "machiai_outbox_dead",
    "Deliveries given up after their last attempt (the admin console lists them)",
    multiprocess_mode="mostrecent",
)
POOL_IN_USE = Gauge(
    "machiai_pg_pool_in_use",
    "Postgres connections of this process's pool in use",
    ["service"],
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "machiai_pg_pool_size",
    "Postgres connections this process's pool may open",
    ["service"],
    multiprocess_mode="livesum",
)
REDIS_REBUILDS = Counter(
    "machiai_redis_rebuilds",
    "Times booking rebuilt Redis's inventory from Postgres (Redis lost its keys)",
)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class RequestTally:
    """This process's requests since the last flush, in plain dicts."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.flush_scheduled = False
        # (finished at, seconds) of each request for the service's own p95 (booking's
        # backpressure report and admin figures), when it keeps them: timed once, here.
        self.samples: deque[tuple[float, float]] | None = None
        self.answers: dict[tuple[str, str, int], int] = {}
        # route -> [count per bucket (one more for +Inf)..., sum of seconds]
        self.latency: dict[str, list[float]] = {}
        self.refusals: dict[str, int] = {}

    def add(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.answers[key] = self.answers.get(key, 0) + 1
        row = self.latency.get(route)
        if row is None:
            row = self.latency[route] = [0.0] * (len(LATENCY_BUCKETS_S) + 2)
        row[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        row[-1] += seconds

    def record(self, scope: Scope, route: str, status: int, started: float) -> None:
        """A request answered (``started``: time.monotonic()): its route, status, duration
        and refusal code (if any). ``add`` written out: this runs on every status poll
        (each call saved is a per cent of the metrics' cost there, benchmarks/HISTORY.md).
        The first request after a flush schedules the next one a second later on the
        running loop: every request is in the metrics within a second, whichever worker
        served it, and an idle process does nothing."""
        now = time.monotonic()
        seconds = now - started
        if self.samples is not None:
            self.samples.append((now, seconds))
        code = scope.get(ERROR_CODE_KEY)
        if code is not None:
            self.refusals[code] = self.refusals.get(code, 0) + 1
        key = (route, scope["method"], status)
        answers = self.answers
        answers[key] = answers.get(key, 0) + 1
        row = self.latency.get(route)
        if row is None:
            row = self.latency[route] = [0.0] * (len(LATENCY_BUCKETS_S) + 2)
        row[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        row[-1] += seconds
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_EVERY_S, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self.flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        answers, self.answers = self.answers, {}
        latency, self.latency = self.latency, {}
        refusals, self.refusals = self.refusals, {}
        for code, n in refusals.items():
            REFUSALS.labels(self.service, code).inc(n)
        for (route, method, status), n in answers.items():
            REQUESTS.labels(self.service, route, method, str(status)).inc(n)
        for route, row in latency.items():
            child = LATENCY.labels(self.service, route)
            # prometheus-client's Histogram keeps a (non-cumulative) value per bucket and
            # a sum, as ``observe`` writes them; a batch is added the same way.
            for bucket, hits in zip(child._buckets, row[:-1], strict=True):
                if hits:
                    bucket.inc(hits)
            child._sum.inc(row[-1])


class RequestMetrics:
    """Plain ASGI: each HTTP request's route template, status and duration into a tally."""

    def __init__(self, app: ASGIApp, tally: RequestTally) -> None:
        self.app = app
        self.tally = tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500  # what the server answers when the app raises before starting one

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or scope.get(ROUTE_KEY, UNMATCHED)
            self.tally.record(scope, template, status, started)


def exposition() -> bytes:
    if multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def metrics_endpoint(
    tally: RequestTally, token: str | None, *, required: bool
) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics``. With a token, only for ``Authorization: Bearer <token>``; without
    one, open where ``required`` is false (development) and absent (404) where it is true:
    in production the figures of a city's opening are not for anyone who asks."""

    async def metrics(request: Request) -> Response:
        if token is None and required:
            return _refusal(404, "not_found", "見つかりません。")
        if token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return _refusal(401, "unauthorized", "認証が必要です。")
        tally.flush()
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return metrics


def _refusal(status: int, code: str, message: str) -> Response:
    return JSONResponse(error_body(code, message), status_code=status)


METRICS_OPERATION = Operation(
    "GET",
    "/metrics",
    "Prometheus metrics of this service (every process of it in multiprocess mode)",
    replies={200: Reply("The text exposition format", string(), media_type="text/plain")},
    errors={401: ("unauthorized",), 404: ("not_found",)},
    tags=("health",),
    description="With MACHIAI_METRICS_TOKEN set, only for `Authorization: Bearer <token>`; "
    "in production without one, not served (404). Absent with MACHIAI_METRICS=false.",
)


def instrument(
    service: str, core: CoreSettings, samples: deque[tuple[float, float]] | None = None
) -> tuple[list[Middleware], list[BaseRoute], RequestTally | None]:
    """The middleware, the /metrics route and the tally of a service, or none of them with
    MACHIAI_METRICS=false. A middleware that answers before them (waitroom/web/hot.py)
    records into the tally itself: no wrapped ``send`` on the hottest paths."""
    if not core.metrics:
        return [], [], None
    tally = RequestTally(service)
    tally.samples = samples
    endpoint = metrics_endpoint(tally, core.metrics_token, required=core.production)
    return (
        [Middleware(RequestMetrics, tally=tally)],
        [Route("/metrics", endpoint, methods=["GET"])],
        tally,
    )


def report_line(
    event_id: str,
    *,
    waiting: int,
    admitted: int,
    active: int,
    factor: float,
    is_open: bool,
    abandoned: int,
    left: int | None,
) -> None:
    """An event's line as a waitroom refresh saw it (a few times a second per process)."""
    LINE_WAITING.labels(event_id).set(waiting)
    LINE_ADMITTED.labels(event_id).set(admitted)
    LINE_ACTIVE.labels(event_id).set(active)
    ADMISSION_FACTOR.labels(event_id).set(factor)
    EVENT_OPEN.labels(event_id).set(1 if is_open else 0)
    TURNS_ABANDONED.labels(event_id).set(abandoned)
    if left is not None:
        SLOTS_LEFT.labels(event_id).set(left)


def report_pool(service: str, in_use: int, size: int) -> None:
    POOL_IN_USE.labels(service).set(in_use)
    POOL_SIZE.labels(service).set(size)
