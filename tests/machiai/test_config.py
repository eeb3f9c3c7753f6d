"""Settings are validated at start, and every error names the variable to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from booking.settings import BookingSettings
from machiai.backends import Backends
from machiai.config import Env, Mode, SettingsError, core_settings, shown_url
from machiai.runner import _banner
from machiai.settings import RunnerSettings
from waitroom.settings import WaitroomSettings

KEY = "k" * 40


def base(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
        "MACHIAI_DATA_DIR": str(tmp_path),
    }
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ({"REDIS_URL": ""}, "REDIS_URL"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"REDIS_URL": "unix://"}, "REDIS_URL"),
        ({"DATABASE_URL": "mysql://x/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql:///db"}, "DATABASE_URL"),
        ({"MACHIAI_ENV": "staging"}, "MACHIAI_ENV"),
        ({"MACHIAI_REDIS_PREFIX": "a{b}"}, "MACHIAI_REDIS_PREFIX"),
        ({"MACHIAI_SECRET_KEYS": "short"}, "MACHIAI_SECRET_KEYS"),
        ({"MACHIAI_SECRET_KEYS": " , "}, "MACHIAI_SECRET_KEYS"),
        ({"MACHIAI_ENV": "production"}, "MACHIAI_SECRET_KEYS"),
    ],
)
def test_core_errors_name_the_variable(
    tmp_path: Path, override: dict[str, str], names: str
) -> None:
    with pytest.raises(SettingsError, match=names):
        core_settings(Env(base(tmp_path, **override)))


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ({"BOOKING_DB_POOL_MAX": "many"}, "BOOKING_DB_POOL_MAX"),
        ({"BOOKING_DB_POOL_MIN": "0"}, "BOOKING_DB_POOL_MIN"),
        ({"BOOKING_DB_POOL_MIN": "10", "BOOKING_DB_POOL_MAX": "5"}, "BOOKING_DB_POOL_MAX"),
    ],
)
def test_booking_errors_name_the_variable(
    tmp_path: Path, override: dict[str, str], names: str
) -> None:
    with pytest.raises(SettingsError, match=names):
        BookingSettings.from_env(base(tmp_path, **override))


def test_redis_over_a_unix_socket_is_accepted(tmp_path: Path) -> None:
    url = "unix:///run/redis/redis.sock?db=2"
    assert core_settings(Env(base(tmp_path, REDIS_URL=url))).redis_url == url


def test_waitroom_rejects_bad_booking_url(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="MACHIAI_BOOKING_URL"):
        WaitroomSettings.from_env(base(tmp_path, MACHIAI_BOOKING_URL="ftp://x"))


def test_runner_production_requires_urls(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        RunnerSettings.from_env({"MACHIAI_ENV": "production", "MACHIAI_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="WAITROOM_PORT"):
        RunnerSettings.from_env({"WAITROOM_PORT": "70000"})
    with pytest.raises(SettingsError, match="must differ"):
        RunnerSettings.from_env({"WAITROOM_PORT": "9000", "BOOKING_PORT": "9000"})


def test_production_uses_given_keys_newest_first(tmp_path: Path) -> None:
    keys = f"{'n' * 40}, {'o' * 40}"
    core = core_settings(Env(base(tmp_path, MACHIAI_ENV="production", MACHIAI_SECRET_KEYS=keys)))
    assert core.mode is Mode.PRODUCTION
    assert core.secret_keys == ("n" * 40, "o" * 40)
    assert not (tmp_path / "dev-secrets.json").exists()


def test_development_secret_is_generated_once_per_data_dir(tmp_path: Path) -> None:
    first = core_settings(Env(base(tmp_path))).secret_keys
    again = core_settings(Env(base(tmp_path))).secret_keys
    other = core_settings(Env(base(tmp_path / "other"))).secret_keys
    assert first == again
    assert first != other
    assert len(first[0]) >= 32
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = BookingSettings.from_env(base(tmp_path, MACHIAI_SECRET_KEYS=KEY))
    with pytest.raises(AttributeError):
        settings.db_pool_max = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:hunter2@db:5432/machiai", "postgresql://app:***@db:5432/machiai"),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://default:hun:ter2@cache/0", "rediss://default:***@cache/0"),
        (
            "postgresql:///machiai?host=/run/pg&password=hunter2&sslmode=off",
            "postgresql:///machiai?host=/run/pg&password=***&sslmode=off",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/machiai",
            "postgresql://postgres@127.0.0.1:5432/machiai",
        ),
        ("unix:///run/redis/redis.sock?db=2", "unix:///run/redis/redis.sock?db=2"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_the_run_banner_never_prints_a_password(tmp_path: Path) -> None:
    """`machiai run` prints where its backends are; given by URL, they may carry a password."""
    given = {
        "REDIS_URL": "redis://:hunter2hunter2@127.0.0.1:6379/0",
        "DATABASE_URL": "postgresql://app:hunter2hunter2@127.0.0.1:5432/machiai",
        "MACHIAI_DATA_DIR": str(tmp_path),
    }
    settings = RunnerSettings.from_env(given)
    banner = _banner(settings, Backends(given["REDIS_URL"], given["DATABASE_URL"], embedded=False))
    assert "127.0.0.1:5432/machiai" in banner
    assert "hunter2" not in banner


def test_the_run_banner_says_which_backend_is_embedded(tmp_path: Path) -> None:
    """A Redis (here a cluster) given by URL with an embedded Postgres: each line says its own."""
    url = "redis+cluster://:hunter2@127.0.0.1:7000,127.0.0.1:7001"
    settings = RunnerSettings.from_env({"REDIS_URL": url, "MACHIAI_DATA_DIR": str(tmp_path)})
    banner = _banner(settings, Backends(url, "postgresql://postgres@127.0.0.1:5999/m", True))
    lines = {line.split()[0]: line for line in banner.splitlines()[1:5]}
    assert "(given by URL)" in lines["redis"] and "hunter2" not in banner
    assert "(embedded, data in" in lines["postgres"]
