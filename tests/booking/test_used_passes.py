"""A pass opens one session, also after Redis lost its memory: the redemption is kept in
Postgres, and given back when no session could be opened."""

from __future__ import annotations

import asyncio
import collections

import asyncpg
import pytest
import redis.asyncio as aioredis

from booking import errors
from booking.services.context import Ctx
from booking.settings import BookingSettings
from booking.store import pg_passes
from tests import report
from tests.booking.client import code, mint_pass, running
from tests.booking.factory import BIRTH, World, voucher


def sign_in(token: str, n: int) -> dict[str, str]:
    return {"pass": token, "voucher": voucher(n), "birth_date": BIRTH.isoformat()}


async def forget_everything(redis: aioredis.Redis, prefix: str) -> None:
    """What a Redis restart without persistence does to this test's keys."""
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        await redis.delete(key)


async def test_a_used_pass_is_refused_after_redis_lost_its_memory(
    settings: BookingSettings, world: World, redis: aioredis.Redis, redis_prefix: str
) -> None:
    async with running(settings) as (_, client):
        token = mint_pass(settings, world.event_id)
        first = await client.post("/api/sessions", json=sign_in(token, 1))
        assert first.status_code == 201, first.text
        await forget_everything(redis, redis_prefix)
        again = await client.post("/api/sessions", json=sign_in(token, 2))
        assert again.status_code == 409 and code(again) == "pass_used"
    report.record(
        report.Fault(
            "Redis loses every key after a pass opened a session",
            "the same pass again: 409 pass_used (Postgres keeps it)",
            "–",
            "–",
            "nothing to recover: the refusal needs no Redis",
        )
    )


async def test_twins_after_a_redis_loss_open_one_session(
    settings: BookingSettings,
    world: World,
    redis: aioredis.Redis,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twenty tabs replay one pass at once while Redis remembers nothing (its check passes
    every time): Postgres lets one through."""
    async with running(settings) as (app, client):
        ctx: Ctx = app.state.ctx

        async def forgot(event_id: str, pass_id: str) -> bool:
            return False

        monkeypatch.setattr(ctx.redis, "pass_used", forgot)
        token = mint_pass(settings, world.event_id)
        replies = await asyncio.gather(
            *(client.post("/api/sessions", json=sign_in(token, 1 + i % 3)) for i in range(20))
        )
        codes = collections.Counter(r.status_code for r in replies)
        assert codes == {201: 1, 409: 19}, codes
        assert {code(r) for r in replies if r.status_code == 409} == {"pass_used"}


async def test_a_session_that_could_not_open_gives_the_pass_back(
    settings: BookingSettings, world: World, db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis unreachable just as the session would open: "busy", and the same pass works
    once Redis is back (the resident loses nothing)."""
    async with running(settings) as (app, client):
        ctx: Ctx = app.state.ctx
        token = mint_pass(settings, world.event_id)
        real = ctx.redis.open_session

        async def unreachable(*args: object, **kwargs: object) -> int:
            raise errors.Busy()

        monkeypatch.setattr(ctx.redis, "open_session", unreachable)
        busy = await client.post("/api/sessions", json=sign_in(token, 1))
        assert busy.status_code == 503 and code(busy) == "busy"
        assert await db.fetchval("SELECT count(*) FROM used_passes") == 0
        monkeypatch.setattr(ctx.redis, "open_session", real)
        ok = await client.post("/api/sessions", json=sign_in(token, 1))
        assert ok.status_code == 201, ok.text
        assert await db.fetchval("SELECT count(*) FROM used_passes") == 1


async def test_expired_passes_are_forgotten(db: asyncpg.Pool, world: World) -> None:
    async with db.acquire() as conn:
        assert await pg_passes.redeem(conn, world.event_id, "p-old", "s1", 0)
        assert await pg_passes.redeem(conn, world.event_id, "p-new", "s2", 600)
        assert not await pg_passes.redeem(conn, world.event_id, "p-new", "s3", 600)
        await asyncio.sleep(0.01)
        assert await pg_passes.forget_expired(conn) == 1
        assert await conn.fetchval("SELECT array_agg(pass_id) FROM used_passes") == ["p-new"]
