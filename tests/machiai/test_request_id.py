"""Request ids: adopted from a header (or booking's /enter ``rid``), made only when asked
for, one per request even when requests interleave, and on every log line written during
the request, as JSON; the waitroom's redirect carries its id into booking's log."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from machiai import logs, request_id
from machiai.request_id import RequestId

log = logging.getLogger("tests.request_id")


@contextmanager
def json_lines(service: str) -> Iterator[list[dict[str, object]]]:
    """What the root logger writes meanwhile, as machiai's JSON lines."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logs.JsonFormatter(service))
    handler.addFilter(logs.RequestIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    lines: list[dict[str, object]] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        lines.extend(json.loads(line) for line in buffer.getvalue().splitlines())


def _app() -> Starlette:
    async def echo(request: Request) -> PlainTextResponse:
        await asyncio.sleep(0.01)  # requests interleave
        log.info("answering")
        return PlainTextResponse(request_id.current())

    async def quiet(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(request_id._CURRENT.get() or None))

    app = Starlette(routes=[Route("/echo", echo), Route("/enter", echo), Route("/quiet", quiet)])
    app.add_middleware(RequestId, query_paths=frozenset({"/enter"}))
    return app


async def test_ids_are_adopted_made_when_asked_and_kept_apart() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with json_lines("test") as lines:
            given = await client.get("/echo", headers={"X-Request-Id": "proxy-abc-123"})
            made = await asyncio.gather(*(client.get("/echo") for _ in range(20)))
            from_query = await client.get("/enter?pass=x&rid=waitroom-id-42")
            not_here = await client.get("/echo?rid=waitroom-id-42")
            bad = await client.get("/echo", headers={"X-Request-Id": "<script>"})
            quiet = await client.get("/quiet")
    assert given.text == "proxy-abc-123"
    ids = {r.text for r in made}
    assert len(ids) == 20  # one each, none shared between interleaved requests
    assert from_query.text == "waitroom-id-42"  # rid is read on /enter only
    assert not_here.text != "waitroom-id-42" and bad.text != "<script>"
    assert quiet.text == "None"  # nothing asked for an id: none was made
    logged = [str(line["request_id"]) for line in lines if line["message"] == "answering"]
    assert sorted(logged) == sorted([given.text, *ids, from_query.text, not_here.text, bad.text])
    assert all(line["service"] == "test" and line["level"] == "info" for line in lines)


def test_a_line_outside_any_request_has_no_id() -> None:
    with json_lines("test") as lines:
        log.warning("starting")
    [line] = lines
    assert "request_id" not in line and line["message"] == "starting"


def test_configured_logs_leave_uvicorns_access_log_off() -> None:
    """`--no-access-log` stays off: no line per request (a cost on every status poll)."""
    access = logging.getLogger("uvicorn.access")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, access.handlers[:], access.propagate)
    access.handlers, access.propagate = [], False  # what uvicorn --no-access-log leaves
    try:
        logs.configure("test", "json")
        assert access.propagate is False and access.handlers == []
    finally:
        root.handlers, root.level = saved[0], saved[1]
        access.handlers, access.propagate = saved[2], saved[3]
