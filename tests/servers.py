"""Throwaway Redis and Postgres for the test session.

Started on free ports from the embedded binaries, or taken from
``TEST_REDIS_URL`` / ``TEST_DATABASE_URL``. Either way the tests only touch
what they create: uniquely named databases and uniquely prefixed Redis keys.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis
import uvicorn
from starlette.applications import Starlette

from machiai.embedded import EmbeddedPostgres, EmbeddedRedis, PostgresTuning, free_port
from machiai.embedded_root import collect_orphans
from machiai.migrate import apply_migrations


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@dataclass(frozen=True, slots=True)
class PostgresForTests:
    """A server where the session owns a migrated template and per-test copies of it."""

    admin_url: str
    template: str

    def url_for(self, database: str) -> str:
        return with_database(self.admin_url, database)

    async def create_database(self, *, migrated: bool = True) -> str:
        name = f"machiai_test_{uuid.uuid4().hex[:16]}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            if migrated:
                await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            else:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextmanager
def session_tmpdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="machiai-test-"))
    # As root the embedded Postgres runs as the user `machiai`: a data dir it can reach
    # stays here; under a private TMPDIR its data goes to /var/lib/machiai instead.
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if os.geteuid() == 0:
            # Data placed in /var/lib/machiai for a dir just removed goes with it now.
            collect_orphans()


@contextmanager
def redis_for_tests(tmp: Path) -> Iterator[str]:
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        yield given
        return
    server = EmbeddedRedis(tmp / "redis", persistent=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def postgres_for_tests(tmp: Path) -> Iterator[PostgresForTests]:
    given = os.environ.get("TEST_DATABASE_URL")
    server: EmbeddedPostgres | None = None
    if given:
        admin_url = given
    else:
        server = EmbeddedPostgres(
            tmp / "postgres", tuning=PostgresTuning(fsync=False, max_connections=400)
        ).start()
        admin_url = server.url_for("postgres")
    template = f"machiai_template_{uuid.uuid4().hex[:12]}"
    pg = PostgresForTests(admin_url, template)

    async def make_template() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{template}"')
        finally:
            await conn.close()
        await apply_migrations(pg.url_for(template))

    try:
        asyncio.run(make_template())
        yield pg
    finally:
        asyncio.run(pg.drop_database(template))
        if server is not None:
            server.stop()


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now (one in TIME_WAIT counts as free)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def delete_prefixed_keys(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        batch = list(client.scan_iter(match=prefix + "*", count=1000))
        while batch:
            client.delete(*batch[:1000])
            batch = batch[1000:]
    finally:
        client.close()


@asynccontextmanager
async def serving(
    app: Starlette, host: str = "127.0.0.1", port: int | None = None
) -> AsyncIterator[str]:
    """``app`` under real uvicorn on a free loopback port (or ``port``, for an app that must
    know its address before it is made), in this event loop; its base URL. Another loopback
    ``host`` (127.0.0.2) is another site to a browser."""
    port = port or free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
