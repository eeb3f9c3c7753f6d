"""The booking ASGI app: routes and the lifespan that opens Redis and Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from booking.api import clinic, operator, registry, resident, staff
from booking.api import exports as export_api
from booking.background import refresh_forever
from booking.console import admin_registry
from booking.console.routes import routes as console_routes
from booking.http import Endpoint, routes_of
from booking.middleware import BodySizeLimit, LatencySampler
from booking.openapi import build_openapi
from booking.pages import book, done, home, mine, signin
from booking.pages.common import asset_routes
from booking.services.availability import Availability
from booking.services.context import Ctx, SlotCatalog
from booking.services.inventory import rebuild_inventory
from booking.settings import BookingSettings
from booking.store.redis_store import RedisStore
from machiai import logs, metrics
from machiai.errors import EXCEPTION_HANDLERS, Busy
from machiai.gc_tuning import tune_gc_for_serving
from machiai.health import health_routes
from machiai.redis_cluster import redis_client
from machiai.request_id import RequestId
from machiai.tokens import Tokens

log = logging.getLogger("booking.app")

ENDPOINTS: list[Endpoint] = [
    *resident.ENDPOINTS,
    *operator.ENDPOINTS,
    *clinic.ENDPOINTS,
    *registry.ENDPOINTS,
    *staff.ENDPOINTS,
    *export_api.ENDPOINTS,
]


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's RESET round trip: booking keeps no session state
    (only SET LOCAL and transaction-scoped advisory locks), so there is nothing to reset."""


def create_app(settings: BookingSettings) -> Starlette:
    samples: deque[tuple[float, float]] = deque(maxlen=4096)
    document = build_openapi(ENDPOINTS)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Every call has a deadline (settings): a paused Redis or Postgres makes "busy"
        # quickly, never a request that hangs and piles up behind others.
        app.state.redis = redis_client(settings.core.redis_url, timeout_s=settings.redis_timeout_s)
        app.state.db = await asyncpg.create_pool(
            settings.core.database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            reset=keep_session,
            command_timeout=settings.db_timeout_s,
            timeout=settings.db_timeout_s,  # to connect: a pool refilling after a pause
            server_settings={"lock_timeout": str(settings.lock_timeout_ms)},
        )
        ctx = Ctx(
            settings=settings,
            redis=RedisStore(
                app.state.redis, settings.core.redis_prefix, timeout_s=settings.redis_timeout_s
            ),
            pool=app.state.db,
            catalog=SlotCatalog(app.state.db),
        )
        app.state.ctx = ctx
        app.state.tokens = Tokens(settings.core.secret_keys)
        app.state.availability = Availability(settings.public_cache_s)
        # This process's request latencies (the load report; the admin console's p95).
        app.state.latency_samples = samples
        task: asyncio.Task[None] | None = None
        stop = asyncio.Event()
        try:
            try:
                await rebuild_inventory(ctx)
                # The slots to come, known before the first hold asks (not one read each).
                await ctx.catalog.warm()
            except Busy:
                # Redis or Postgres is down at start: serve what we can (public
                # availability, clear 503s); the loop rebuilds once they are back.
                log.warning("booking started without a rebuilt inventory; will retry")
            task = asyncio.create_task(refresh_forever(ctx, samples, stop))
            yield
        finally:
            stop.set()
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=settings.refresh_interval_ms / 1000 + 1)
            if task is not None and not task.cancelled():
                with contextlib.suppress(asyncio.CancelledError):
                    task.result()
            await app.state.db.close()
            await ctx.redis.aclose()
            await app.state.redis.aclose()

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    # Starlette tries routes in order and no two paths overlap.
    routes: list[BaseRoute] = [
        # The residents' journey first, as JSON and as pages (the paths never overlap);
        # staff, health, the document and static files after.
        *routes_of(resident.ENDPOINTS),
        *book.routes(),
        *done.routes(),
        *signin.routes(),
        *mine.routes(),
        *home.routes(),
        *routes_of(ep for ep in ENDPOINTS if ep not in resident.ENDPOINTS),
        *health_routes("booking"),
        Route("/openapi.json", openapi, methods=["GET"]),
        *asset_routes(),
        # The staff consoles (pages under /staff).
        *console_routes(),
    ]
    # The metrics middleware also keeps the latency samples; without metrics the sampler
    # does (each request timed once either way).
    measuring, metrics_routes, _ = metrics.instrument("booking", settings.core, samples)
    measuring = measuring or [Middleware(LatencySampler, samples=samples)]
    routes.extend(metrics_routes)
    app = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            # The waitroom's redirect into booking brings its request id (`rid`) to /enter.
            Middleware(RequestId, query_paths=frozenset({"/enter"})),
            *measuring,
            Middleware(
                BodySizeLimit,
                max_bytes=settings.max_body_bytes,
                per_path={
                    registry.IMPORT_PATH: settings.registry_max_bytes,
                    admin_registry.IMPORT_PATH: settings.registry_max_bytes,
                },
            ),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory``: settings come from the environment."""
    settings = BookingSettings.from_env()
    logs.configure("booking", settings.core.log_format)
    app = create_app(settings)
    tune_gc_for_serving()  # this process serves from now on (tests build apps otherwise)
    return app
