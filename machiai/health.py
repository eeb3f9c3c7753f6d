"""Liveness and readiness endpoints, the same in both services."""

from __future__ import annotations

import asyncio

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

READY_TIMEOUT_S = 2.0


def health_routes(service: str) -> list[Route]:
    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service})

    async def ready(request: Request) -> Response:
        """Ready when both backing services answer; a load balancer drains us otherwise."""
        redis_client: aioredis.Redis = request.app.state.redis
        pool: asyncpg.Pool = request.app.state.db
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(redis_client.ping(), READY_TIMEOUT_S)
            checks["redis"] = "ok"
        except (RedisError, OSError, TimeoutError):
            checks["redis"] = "unavailable"
        try:
            await asyncio.wait_for(pool.fetchval("SELECT 1"), READY_TIMEOUT_S)
            checks["postgres"] = "ok"
        except (asyncpg.PostgresError, OSError, TimeoutError):
            checks["postgres"] = "unavailable"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "degraded", "service": service, "checks": checks},
            status_code=200 if healthy else 503,
        )

    return [Route("/health", live), Route("/health/ready", ready)]
