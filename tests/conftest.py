"""Session servers and per-test isolation: a fresh database and Redis key prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from machiai.config import CoreSettings, Env, core_settings
from machiai.redis_cluster import RedisClient
from tests import report
from tests.servers import (
    PostgresForTests,
    delete_prefixed_keys,
    postgres_for_tests,
    redis_client_for_tests,
    redis_cluster_wanted,
    redis_for_tests,
    session_tmpdir,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "single_redis(reason): needs one Redis server (its process, its whole keyspace); "
        "skipped when MACHIAI_TEST_REDIS=cluster",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``MACHIAI_TEST_REDIS=cluster``, tests marked ``single_redis`` skip with their
    reason."""
    if not redis_cluster_wanted():
        return
    for item in items:
        marker = item.get_closest_marker("single_redis")
        if marker is not None:
            why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"single Redis only: {why}"))


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    with session_tmpdir() as path:
        yield path


@pytest.fixture(scope="session")
def redis_url(session_dir: Path) -> Iterator[str]:
    with redis_for_tests(session_dir) as url:
        yield url


@pytest.fixture(scope="session")
def postgres(session_dir: Path) -> Iterator[PostgresForTests]:
    with postgres_for_tests(session_dir) as pg:
        yield pg


@pytest.fixture
async def database_url(postgres: PostgresForTests) -> AsyncIterator[str]:
    """A migrated database of this test's own, dropped afterwards."""
    name = await postgres.create_database()
    try:
        yield postgres.url_for(name)
    finally:
        await postgres.drop_database(name)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """This test's own Redis key prefix; its keys are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_prefixed_keys(redis_url, prefix)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisClient]:
    """redis-py's client for the session's Redis: a ``RedisCluster`` on a cluster."""
    client = redis_client_for_tests(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def env_vars(
    redis_url: str, database_url: str, redis_prefix: str, tmp_path: Path
) -> dict[str, str]:
    """Environment for a service under test: its own database, prefix and data dir."""
    return {
        "MACHIAI_ENV": "development",
        "MACHIAI_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "MACHIAI_REDIS_PREFIX": redis_prefix,
        "MACHIAI_SECRET_KEYS": "test-key-" + uuid.uuid4().hex + uuid.uuid4().hex,
        # Booking's daily reminder job writes outbox rows on its own clock: off, so tests
        # that count outbox rows count only their own (tests of the job call it directly).
        "BOOKING_REMINDER_AT": "off",
    }


@pytest.fixture
def core(env_vars: dict[str, str]) -> CoreSettings:
    return core_settings(Env(env_vars))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault table, when fault tests ran: in the test command's output, for the issue."""
    if report.FAULTS or report.FUZZ:
        report.write()
        terminalreporter.write_sep("=", "faults tried and fuzzing (also in reports/faults.md)")
        terminalreporter.write_line(report.table())
