"""Apply the versioned SQL migrations in ``machiai/migrations`` to a Postgres database.

Safe to run twice (applied versions are recorded in ``schema_migrations``) and
from two processes at once (an advisory lock serialises them; the loser finds
the work done). An applied file that was edited afterwards stops the run:
silently diverging schemas are how registries end up wrongly loaded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

# Any fixed 64-bit number; shared by every machiai process that migrates.
MIGRATION_LOCK_ID = 0x6D61636869616931
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database's recorded migrations disagree with the files shipped."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("machiai.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(match[1], match[2], entry.read_text(encoding="utf-8")))
        elif entry.name.endswith(".sql"):
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return found


async def apply_migrations(dsn: str) -> list[str]:
    """Bring the database at ``dsn`` up to date; returns the versions applied by this call."""
    conn = await asyncpg.connect(dsn)
    try:
        return await apply_migrations_on(conn)
    finally:
        await conn.close()


async def apply_migrations_on(conn: asyncpg.Connection) -> list[str]:
    migrations = load_migrations()
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     text PRIMARY KEY,
                name        text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        recorded = {row["version"]: row for row in rows}
        known = {m.version for m in migrations}
        unknown = sorted(set(recorded) - known)
        if unknown:
            raise MigrationError(
                f"the database has migrations this code does not know: {unknown}; "
                "is an older machiai running against a newer database?"
            )
        for migration in migrations:
            row = recorded.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version}_{migration.name} was changed after it "
                        "was applied; add a new migration instead of editing an old one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now
