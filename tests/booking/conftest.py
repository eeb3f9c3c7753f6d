"""Booking fixtures: settings, a service context on the test's Redis/Postgres, seeded data."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from booking.services.context import Ctx, SlotCatalog
from booking.settings import BookingSettings
from booking.store.redis_store import RedisStore
from tests.booking.factory import World, make_world


@pytest.fixture
def settings(env_vars: dict[str, str]) -> BookingSettings:
    base = BookingSettings.from_env(env_vars)
    return dataclasses.replace(base, db_pool_max=20)


@pytest.fixture
async def store(redis: aioredis.Redis, redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis, redis_prefix)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
async def ctx(settings: BookingSettings, store: RedisStore, db: asyncpg.Pool) -> Ctx:
    return Ctx(settings=settings, redis=store, pool=db, catalog=SlotCatalog(db))


@pytest.fixture
async def world(db: asyncpg.Pool) -> AsyncIterator[World]:
    async with db.acquire() as conn:
        yield await make_world(conn)
