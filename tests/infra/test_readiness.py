"""Readiness, as the manifests' probes and Compose's healthchecks use it: /health/ready is
503 (the house error shape, naming what is down) while Redis is stopped or Postgres cannot
be reached, and 200 again once they are back, in both services; /health (liveness) stays
200 throughout, so a backing service's outage never restarts the pods."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from booking.app import create_app as booking_app
from booking.settings import BookingSettings
from machiai.embedded import EmbeddedRedis, free_port
from tests.infra.relay import Relay
from tests.servers import with_database
from waitroom.app import create_app as waitroom_app
from waitroom.settings import WaitroomSettings

SERVICES = ("waitroom", "booking")


def make_app(service: str, env: dict[str, str]) -> Starlette:
    if service == "waitroom":
        return waitroom_app(WaitroomSettings.from_env(env))
    return booking_app(BookingSettings.from_env(env))


@contextlib.asynccontextmanager
async def started(service: str, env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(service, env)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


async def readiness(client: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    r = await client.get("/health/ready")
    body = r.json()
    if r.status_code == 503:
        assert body["status"] == "degraded"
        assert body["error"]["code"] == "not_ready"
    assert (await client.get("/health")).status_code == 200
    return r.status_code, body["checks"]


@pytest.mark.parametrize("service", SERVICES)
async def test_not_ready_while_redis_is_stopped(
    service: str, env_vars: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis", port=port, persistent=False).start()
    try:
        env = {**env_vars, "REDIS_URL": server.url}
        async with started(service, env) as client:
            assert await readiness(client) == (200, {"redis": "ok", "postgres": "ok"})
            server.stop()
            assert await readiness(client) == (503, {"redis": "unavailable", "postgres": "ok"})
            server = EmbeddedRedis(tmp_path / "redis", port=port, persistent=False).start()
            assert await readiness(client) == (200, {"redis": "ok", "postgres": "ok"})
    finally:
        server.stop()


@pytest.mark.parametrize("service", SERVICES)
async def test_not_ready_while_postgres_is_unreachable(
    service: str, env_vars: dict[str, str]
) -> None:
    db = urlsplit(env_vars["DATABASE_URL"])
    assert db.hostname and db.port
    relay = Relay(db.hostname, db.port)
    await relay.mend()
    through_relay = db._replace(netloc=db.netloc.replace(f":{db.port}", f":{relay.port}"))
    env = {**env_vars, "DATABASE_URL": with_database(through_relay.geturl(), db.path[1:])}
    try:
        async with started(service, env) as client:
            assert await readiness(client) == (200, {"redis": "ok", "postgres": "ok"})
            await relay.cut()
            assert await readiness(client) == (503, {"redis": "ok", "postgres": "unavailable"})
            await relay.mend()
            assert await readiness(client) == (200, {"redis": "ok", "postgres": "ok"})
    finally:
        await relay.cut()
