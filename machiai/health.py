"""Liveness and readiness endpoints, the same in both services."""

from __future__ import annotations

import asyncio

import asyncpg
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from machiai.errors import error_body
from machiai.openapi import Operation, Reply, error_schema, obj, string
from machiai.redis_cluster import RedisClient

READY_TIMEOUT_S = 2.0
_CHECK = string(enum=("ok", "unavailable"))
HEALTH_OPERATIONS = (
    Operation(
        "GET",
        "/health",
        "Liveness: the process answers",
        replies={200: Reply("Alive", obj({"status": string(enum=("ok",)), "service": string()}))},
        errors={},
        tags=("health",),
    ),
    Operation(
        "GET",
        "/health/ready",
        "Readiness: Redis and Postgres answer (503 while one does not: drain this process)",
        replies={
            200: Reply(
                "Ready",
                obj(
                    {
                        "status": string(enum=("ok",)),
                        "service": string(),
                        "checks": obj({"redis": _CHECK, "postgres": _CHECK}),
                    }
                ),
            ),
            503: Reply(
                "Degraded: the checks say which backing service does not answer",
                obj(
                    {
                        "status": string(enum=("degraded",)),
                        "service": string(),
                        "checks": obj({"redis": _CHECK, "postgres": _CHECK}),
                        "error": error_schema(["not_ready"])["properties"]["error"],
                    }
                ),
            ),
        },
        errors={},
        tags=("health",),
    ),
)


def health_routes(service: str) -> list[Route]:
    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service})

    async def ready(request: Request) -> Response:
        """Ready when both backing services answer; a load balancer drains us otherwise."""
        redis_client: RedisClient = request.app.state.redis
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
        if all(v == "ok" for v in checks.values()):
            return JSONResponse({"status": "ok", "service": service, "checks": checks})
        # Still the one error shape: a 503 says what is wrong like every other error.
        down = ", ".join(name for name, v in checks.items() if v != "ok")
        return JSONResponse(
            {
                "status": "degraded",
                "service": service,
                "checks": checks,
                **error_body("not_ready", f"Not ready: {down} unavailable."),
            },
            status_code=503,
        )

    return [Route("/health", live, methods=["GET"]), Route("/health/ready", ready, methods=["GET"])]
