"""The comparison apps of the benchmark, served by uvicorn like the real one.

(a) ``hello``: the HTTP stack's own limit (Starlette JSON "hello").
(b) ``naive``: one Redis round trip per request — join = INCR + sign a ticket,
    status = one GET — the design the waitroom must beat.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from machiai.tokens import Ticket, Tokens, new_id


async def hello(request: Request) -> Response:
    return JSONResponse({"hello": "world"})


def hello_app() -> Starlette:
    return Starlette(routes=[Route("/hello", hello)])


def naive_app() -> Starlette:
    redis_url = os.environ["REDIS_URL"]
    counter = os.environ.get("MACHIAI_REDIS_PREFIX", "bench:") + "naive:counter"
    tokens = Tokens([os.environ["MACHIAI_SECRET_KEYS"].split(",")[0]])

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = aioredis.Redis.from_url(redis_url)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    async def join(request: Request) -> Response:
        number = int(await request.app.state.redis.incr(counter)) - 1
        token = tokens.dump_ticket(Ticket("naive", number, new_id(), False))
        return JSONResponse({"ticket": token, "position": number})

    async def status(request: Request) -> Response:
        admitted = await request.app.state.redis.get(counter)
        return JSONResponse({"admitted": int(admitted or 0)})

    return Starlette(
        routes=[
            Route("/naive/join", join, methods=["POST"]),
            Route("/naive/status", status, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
