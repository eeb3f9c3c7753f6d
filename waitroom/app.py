"""The waitroom ASGI app: routes and the lifespan that opens Redis, Postgres and the refresher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from machiai import logs, metrics
from machiai.errors import EXCEPTION_HANDLERS
from machiai.health import health_routes
from machiai.pages import static_routes
from machiai.redis_cluster import redis_client
from machiai.request_id import RequestId
from machiai.tokens import Tokens
from waitroom.services.client_limiter import ClientLimiter
from waitroom.services.context import Waitroom
from waitroom.services.directory import Directory
from waitroom.services.join_batcher import JoinBatcher
from waitroom.services.line import Clock, Line, redis_clock
from waitroom.services.turn_notice import TurnNotifier
from waitroom.settings import WaitroomSettings
from waitroom.store import pg_store, pg_turn_notices
from waitroom.store.redis_store import EventConfig, RedisStore
from waitroom.web import admin
from waitroom.web.enter import enter
from waitroom.web.home import home
from waitroom.web.hot import HotPaths
from waitroom.web.join import join
from waitroom.web.notify import notify_form, notify_post
from waitroom.web.openapi import openapi
from waitroom.web.page import CSS, JS, page
from waitroom.web.shuffle import shuffle
from waitroom.web.status import status


def create_app(
    settings: WaitroomSettings, *, clock: Clock = redis_clock, refresher: bool = True
) -> Starlette:
    """The waitroom. ``clock`` (unix ms) is for tests only; ``refresher=False`` lets a test
    drive admission itself through ``app.state.waitroom.line.refresh``."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = redis_client(settings.core.redis_url, timeout_s=settings.redis_timeout_s)
        # Every statement has a deadline: a paused Postgres makes "busy", not a hung request.
        pool = await asyncpg.create_pool(
            settings.core.database_url,
            min_size=1,
            max_size=5,
            command_timeout=settings.db_timeout_s,
            timeout=settings.db_timeout_s,  # to connect: a pool refilling after a pause
        )
        store = RedisStore(client, settings.core.redis_prefix, settings.redis_timeout_s)

        async def load_config(event_id: str) -> EventConfig | None:
            return await pg_store.load_config(pool, event_id)

        async def record_state(event_id: str, old: str, new: str) -> None:
            await pg_store.record_clock_state(pool, event_id, old, new)

        line = Line(store, load_config, settings, clock, record_state)
        batcher = JoinBatcher(
            store,
            line,
            linger_ms=settings.join_linger_ms,
            max_batch=settings.join_batch_max,
            clock=clock,
        )
        app.state.redis, app.state.db = client, pool
        app.state.waitroom = Waitroom(
            settings=settings,
            store=store,
            line=line,
            batcher=batcher,
            limiter=ClientLimiter(settings.join_per_minute, settings.join_burst),
            tokens=Tokens(settings.core.secret_keys),
            clock=clock,
            directory=Directory(pool, clock),
        )

        async def write_notices(event_id: str, notices: Sequence[tuple[str, Any]]) -> int:
            return await pg_turn_notices.write_turn_notices(pool, event_id, notices)

        # "Your turn is near": one notifier per process, beside the refresher (a test that
        # drives admission itself drives this too: app.state.notifier.run_once).
        app.state.notifier = notifier = TurnNotifier(line, store, write_notices, settings)
        if refresher:
            line.start()
            notifier.start()
        try:
            yield
        finally:
            await notifier.stop()
            await line.stop()
            await batcher.close()
            await pool.close()
            await store.aclose()
            await client.aclose()

    routes: list[BaseRoute] = [  # the hot paths first: routes are matched in order
        Route("/events/{event_id}/status", status, methods=["GET"]),
        Route("/events/{event_id}/join", join, methods=["POST"]),
        Route("/events/{event_id}/wait", page, methods=["GET"]),
        Route("/events/{event_id}/enter", enter, methods=["GET", "POST"]),
        Route("/events/{event_id}/shuffle", shuffle, methods=["GET"]),
        Route("/events/{event_id}/notify", notify_form, methods=["GET"]),
        Route("/events/{event_id}/notify", notify_post, methods=["POST"]),
        Route("/", home, methods=["GET"]),
        *health_routes("waitroom"),
        *admin.routes(),
        Route("/openapi.json", openapi, methods=["GET"]),
        *static_routes(CSS, JS),
    ]
    # The hot paths record their own answers into the tally (cheaper than a wrapped send);
    # the metrics middleware, after them, measures everything else.
    measuring, metrics_routes, tally = metrics.instrument("waitroom", settings.core)
    routes.extend(metrics_routes)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestId), Middleware(HotPaths, tally=tally), *measuring],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory``: settings come from the environment."""
    settings = WaitroomSettings.from_env()
    logs.configure("waitroom", settings.core.log_format)
    return create_app(settings)
