"""Metrics: what a request leaves in the tally reaches the exposition exactly once, the
histogram's buckets are Prometheus's (cumulative, +Inf = count), /metrics is guarded as
the settings say, and in multiprocess mode one scrape reports every process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import deque
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from machiai import metrics
from machiai.errors import EXCEPTION_HANDLERS, AppError


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text).get((name, frozenset(labels.items())), 0.0)


def _app(tally: metrics.RequestTally, token: str | None, *, required: bool) -> Starlette:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hi")

    async def boom(request: object) -> PlainTextResponse:
        raise RuntimeError("boom")

    async def full(request: object) -> PlainTextResponse:
        raise AppError("The slot is full.", "満席です。", code="slot_full", status=409)

    app = Starlette(
        routes=[
            Route("/hello/{name}", hello),
            Route("/boom", boom),
            Route("/full", full),
            Route("/metrics", metrics.metrics_endpoint(tally, token, required=required)),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.add_middleware(metrics.RequestMetrics, tally=tally)
    return app


async def test_requests_are_counted_by_route_template_and_status() -> None:
    service = f"t{uuid.uuid4().hex[:8]}"
    tally = metrics.RequestTally(service)
    transport = httpx.ASGITransport(
        app=_app(tally, None, required=False), raise_app_exceptions=False
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for name in ("a", "b", "c"):
            assert (await client.get(f"/hello/{name}")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/full")).status_code == 409
        assert (await client.get("/full")).status_code == 409
        text = (await client.get("/metrics")).text
    total = "machiai_http_requests_total"
    # One series for the template, not one per name; the unmatched path under one label.
    assert (
        _value(text, total, service=service, route="/hello/{name}", method="GET", status="200") == 3
    )
    assert _value(text, total, service=service, route="unmatched", method="GET", status="404") == 1
    assert _value(text, total, service=service, route="/boom", method="GET", status="500") == 1
    assert _value(text, "machiai_refusals_total", service=service, code="slot_full") == 2
    hist = "machiai_http_request_duration_seconds"
    labels = {"service": service, "route": "/hello/{name}"}
    assert _value(text, f"{hist}_count", **labels) == 3
    assert _value(text, f"{hist}_bucket", **labels, le="+Inf") == 3
    # Cumulative: every bucket holds at least the one below it.
    bounds = [str(b) for b in metrics.LATENCY_BUCKETS_S]
    counts = [_value(text, f"{hist}_bucket", **labels, le=b) for b in bounds]
    assert counts == sorted(counts) and counts[-1] <= 3
    assert _value(text, f"{hist}_sum", **labels) > 0


def test_a_batch_lands_in_the_buckets_observe_would_choose() -> None:
    service = f"t{uuid.uuid4().hex[:8]}"
    tally = metrics.RequestTally(service)
    for seconds in (0.0005, 0.001, 0.0011, 0.3, 99.0):
        tally.add("/r", "GET", 200, seconds)
    tally.flush()
    tally.flush()  # nothing twice
    text = metrics.exposition().decode()
    hist = "machiai_http_request_duration_seconds"
    labels = {"service": service, "route": "/r"}
    # le=0.001 holds 0.0005 and 0.001 (Prometheus buckets are upper-inclusive).
    assert _value(text, f"{hist}_bucket", **labels, le="0.001") == 2
    assert _value(text, f"{hist}_bucket", **labels, le="0.0025") == 3
    assert _value(text, f"{hist}_bucket", **labels, le="0.5") == 4
    assert _value(text, f"{hist}_bucket", **labels, le="2.5") == 4
    assert _value(text, f"{hist}_bucket", **labels, le="+Inf") == 5
    assert abs(_value(text, f"{hist}_sum", **labels) - 99.3026) < 1e-6
    assert (
        _value(
            text,
            "machiai_http_requests_total",
            service=service,
            route="/r",
            method="GET",
            status="200",
        )
        == 5
    )


async def test_the_endpoint_is_guarded_as_configured() -> None:
    tally = metrics.RequestTally("guard")
    token = "m" * 32
    for guarded, required, header, expected in (
        (None, False, None, 200),  # development: open
        (None, True, None, 404),  # production without a token: not served
        (token, True, None, 401),
        (token, True, "Bearer wrong", 401),
        (token, True, f"Bearer {token}", 200),
    ):
        transport = httpx.ASGITransport(app=_app(tally, guarded, required=required))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            headers = {"authorization": header} if header else {}
            response = await client.get("/metrics", headers=headers)
        assert response.status_code == expected, (guarded, required, header)
        if expected == 200:
            assert response.headers["content-type"].startswith("text/plain")
        else:
            assert set(response.json()["error"]) >= {"code", "message"}


_CHILD = """
import sys
from machiai import metrics
from machiai.errors import EXCEPTION_HANDLERS, AppError
tally = metrics.RequestTally("multi")
for _ in range(int(sys.argv[1])):
    tally.add("/events/{event_id}/status", "GET", 200, 0.002)
tally.flush()
metrics.LINE_WAITING.labels("ev").set(float(sys.argv[1]))
"""


def test_one_scrape_reports_every_process(tmp_path: Path) -> None:
    """Two worker processes write their figures; a third process's exposition sums the
    counters and reports the most recent gauge."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in ("3", "4"):
        subprocess.run([sys.executable, "-c", _CHILD, n], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", "from machiai import metrics; print(metrics.exposition().decode())"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    route = "/events/{event_id}/status"
    labels = {"service": "multi", "route": route, "method": "GET", "status": "200"}
    assert _value(out, "machiai_http_requests_total", **labels) == 7
    assert _value(out, "machiai_line_waiting", event="ev") == 4


async def test_the_tally_keeps_the_services_latency_samples_too() -> None:
    """Booking's p95 (backpressure, admin figures) comes from the same timing as the
    metrics: one clock reading per request, not two middlewares each timing it."""
    samples: deque[tuple[float, float]] = deque(maxlen=10)
    tally = metrics.RequestTally(f"t{uuid.uuid4().hex[:8]}")
    tally.samples = samples
    transport = httpx.ASGITransport(app=_app(tally, None, required=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        before = time.monotonic()
        await client.get("/hello/x")
        await client.get("/hello/y")
    assert len(samples) == 2
    assert all(before <= at <= time.monotonic() and 0 <= took < 5 for at, took in samples)
