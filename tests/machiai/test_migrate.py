"""Migrations: from empty, idempotent, concurrent, and edits to applied files are caught."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from machiai.migrate import MigrationError, apply_migrations, load_migrations
from tests.servers import PostgresForTests


@pytest.fixture
async def empty_database_url(postgres: PostgresForTests) -> AsyncIterator[str]:
    name = await postgres.create_database(migrated=False)
    try:
        yield postgres.url_for(name)
    finally:
        await postgres.drop_database(name)


async def test_from_empty_then_idempotent(empty_database_url: str) -> None:
    versions = [m.version for m in load_migrations()]
    assert await apply_migrations(empty_database_url) == versions
    assert await apply_migrations(empty_database_url) == []
    conn = await asyncpg.connect(empty_database_url)
    try:
        recorded = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    finally:
        await conn.close()
    assert [r["version"] for r in recorded] == versions
    assert {
        "municipalities",
        "events",
        "clinics",
        "slots",
        "registry",
        "bookings",
        "staff",
        "audit_log",
        "outbox",
        "vaccines",
        "idempotency_keys",
    } <= tables


async def test_concurrent_runs_apply_each_migration_once(empty_database_url: str) -> None:
    results = await asyncio.gather(*(apply_migrations(empty_database_url) for _ in range(6)))
    applied = [v for result in results for v in result]
    assert sorted(applied) == [m.version for m in load_migrations()]


async def test_edited_migration_is_refused(empty_database_url: str) -> None:
    await apply_migrations(empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = '0001'")
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await apply_migrations(empty_database_url)


async def test_unknown_recorded_migration_is_refused(empty_database_url: str) -> None:
    await apply_migrations(empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ('9999', 'x', 'y')"
        )
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match="does not know"):
        await apply_migrations(empty_database_url)
