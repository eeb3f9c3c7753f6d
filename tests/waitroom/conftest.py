"""Waitroom test helpers: events in Postgres, an injectable clock, apps with their lifespan."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from machiai.tokens import StaffClaims, Tokens
from waitroom.app import create_app
from waitroom.services.context import Waitroom
from waitroom.services.line import Line
from waitroom.settings import WaitroomSettings
from waitroom.store.redis_store import RedisStore

MUNICIPALITY = "131001"
OTHER_MUNICIPALITY = "271004"
# A fixed, recent start for injected clocks (Redis TIME is not used when a clock is given).
T0_MS = 1_800_000_000_000


class FakeClock:
    """Unix ms, moved by hand; the only time a test injects."""

    def __init__(self, now_ms: int = T0_MS) -> None:
        self.now = now_ms

    def __call__(self) -> int | None:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def add_event(
    db: asyncpg.Pool,
    *,
    state: str = "open",
    rate: int = 60,
    cap: int = 1000,
    prequeue_at_ms: int = T0_MS - 3600_000,
    opens_at_ms: int = T0_MS - 60_000,
    closes_at_ms: int = T0_MS + 30 * 86400_000,
    municipality: str = MUNICIPALITY,
) -> str:
    event_id = f"ev-{uuid.uuid4().hex[:10]}"
    await db.execute(
        "INSERT INTO municipalities (code, name_ja, name_en) VALUES ($1, '試験市', 'Test City') "
        "ON CONFLICT DO NOTHING",
        municipality,
    )
    await db.execute(
        """INSERT INTO events (id, municipality_code, name_ja, name_en, prequeue_at, opens_at,
               closes_at, admit_per_minute, max_active, state)
           VALUES ($1, $2, '65歳以上 接種予約', 'Bookings 65+', $3, $4, $5, $6, $7, $8)""",
        event_id, municipality, at(prequeue_at_ms), at(opens_at_ms), at(closes_at_ms),
        rate, cap, state,
    )  # fmt: skip
    return event_id


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(env_vars: dict[str, str]) -> WaitroomSettings:
    base = WaitroomSettings.from_env(env_vars)
    return replace(base, join_per_minute=0)


# A staff token holds only while its staff row does (machiai/staff_generation.py): the
# administrators staff_token speaks for exist, one per municipality the tests use.
ADMIN_MUNICIPALITIES = (MUNICIPALITY, OTHER_MUNICIPALITY)


def admin_id(municipality: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"machiai-test-admin:{municipality}"))


async def add_admins(database_url: str) -> None:
    """The administrators of ``ADMIN_MUNICIPALITIES`` (and their municipalities)."""
    conn = await asyncpg.connect(database_url)
    try:
        for code in ADMIN_MUNICIPALITIES:
            await conn.execute(
                "INSERT INTO municipalities (code, name_ja, name_en) "
                "VALUES ($1, '試験市', 'Test City') ON CONFLICT DO NOTHING",
                code,
            )
            await conn.execute(
                "INSERT INTO staff (id, municipality_code, login, display_name, role, "
                "password_hash) VALUES ($1, $2, $3, $3, 'admin', 'unused') "
                "ON CONFLICT DO NOTHING",
                uuid.UUID(admin_id(code)),
                code,
                f"admin-{code}",
            )
    finally:
        await conn.close()


@pytest.fixture
async def tokens(settings: WaitroomSettings) -> Tokens:
    await add_admins(settings.core.database_url)
    return Tokens(settings.core.secret_keys)


def staff_token(tokens: Tokens, role: str = "admin", municipality: str = MUNICIPALITY) -> str:
    """An administrator's token (another role: refused before any staff row is read)."""
    return tokens.dump_staff(StaffClaims(admin_id(municipality), municipality, role, None))


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://waitroom") as client:
            yield client


AppFactory = Callable[..., Any]


@pytest.fixture
def make_app(settings: WaitroomSettings, clock: FakeClock) -> AppFactory:
    """A waitroom app on the test's Redis prefix and database; refresher off unless asked."""

    def factory(*, refresher: bool = False, **overrides: Any) -> Starlette:
        return create_app(replace(settings, **overrides), clock=clock, refresher=refresher)

    return factory


def parts(app: Starlette) -> Waitroom:
    wr: Waitroom = app.state.waitroom
    return wr


def line_of(app: Starlette) -> Line:
    return parts(app).line


def store_of(app: Starlette) -> RedisStore:
    return parts(app).store


__all__ = ["aioredis"]
