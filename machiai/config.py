"""Reading and validating environment variables, shared by every settings module.

Only settings modules call these; nothing else reads ``os.environ``. Every
failure names the variable and the rule, so a misconfigured start says what to
fix. Values that may be secret (signing keys, URLs that can carry a password)
are never repeated in a message: it goes to terminals and logs.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from machiai.cluster_url import CLUSTER_SCHEMES, parse_cluster_url

MIN_SECRET_LENGTH = 32


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Env:
    """Typed access to one environment mapping; every getter validates."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            parsed = int(value)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {value!r}") from None
        if not minimum <= parsed <= maximum:
            raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {parsed}")
        return parsed

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            parsed = float(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {value!r}") from None
        if not minimum <= parsed <= maximum:
            raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {parsed}")
        return parsed

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name} must be true or false, got {value!r}")

    def mode(self) -> Mode:
        value = self.text("MACHIAI_ENV", Mode.DEVELOPMENT.value).lower()
        try:
            return Mode(value)
        except ValueError:
            allowed = ", ".join(m.value for m in Mode)
            raise SettingsError(f"MACHIAI_ENV must be one of {allowed}, got {value!r}") from None

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        # The value itself is never quoted back: a URL may carry a password.
        scheme = value.partition("://")[0]
        if scheme in CLUSTER_SCHEMES and scheme in schemes:
            try:
                parse_cluster_url(value)  # several host:port seeds: not one netloc
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None
            return value
        try:
            parts = urlsplit(value)
            hostname = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a port that is not 0..65535
        except ValueError:
            raise SettingsError(f"{name} is not a valid URL (check its host and port)") from None
        if parts.scheme not in schemes:
            allowed = ", ".join(f"{s}://" for s in schemes)
            raise SettingsError(f"{name} must start with one of {allowed}")
        if parts.scheme == "unix":
            if not parts.path:
                raise SettingsError(f"{name} has no socket path (unix:///path/to/socket)")
        elif not hostname and "host=" not in parts.query:
            raise SettingsError(f"{name} has no host ({parts.scheme}://host:port/...)")
        return value

    def data_dir(self) -> Path:
        return Path(self.text("MACHIAI_DATA_DIR", ".machiai")).resolve()


REDIS_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)
POSTGRES_SCHEMES = ("postgres", "postgresql")
_PASSWORD_PARAM = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def shown_url(url: str) -> str:
    """``url`` as it may be printed: a password in it (``user:pass@`` or ``?password=``)
    becomes ``***``; the rest stays, so the reader still sees where it points."""
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    if ":" in userinfo:
        url = url.replace(userinfo + at, userinfo.partition(":")[0] + ":***@", 1)
    return _PASSWORD_PARAM.sub(r"\1***", url)


def secret_keys(env: Env, mode: Mode, data_dir: Path) -> tuple[str, ...]:
    """Signing keys, newest first: ``MACHIAI_SECRET_KEYS`` or, in development, per data dir.

    Production never falls back to a generated key: a missing secret stops the
    start, because a key nobody chose is a key nobody rotates.
    """
    value = env.raw("MACHIAI_SECRET_KEYS")
    if value is None:
        if mode is Mode.PRODUCTION:
            raise SettingsError(
                "MACHIAI_SECRET_KEYS is required when MACHIAI_ENV=production "
                "(comma-separated signing keys, newest first, each at least "
                f"{MIN_SECRET_LENGTH} characters)"
            )
        return (dev_secret(data_dir, "signing_key"),)
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    if not keys:
        raise SettingsError("MACHIAI_SECRET_KEYS is empty")
    for index, key in enumerate(keys):
        if len(key) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"MACHIAI_SECRET_KEYS key #{index + 1} is shorter than "
                f"{MIN_SECRET_LENGTH} characters"
            )
    return keys


def dev_secret(data_dir: Path, name: str) -> str:
    """A random secret made once per data dir (development only): restarts keep tickets valid."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "dev-secrets.json"
    # Both services may start at once: the lock makes the first writer's key the only one.
    with open(data_dir / "dev-secrets.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored: dict[str, str] = json.loads(path.read_text("utf-8")) if path.exists() else {}
        if name not in stored:
            stored[name] = secrets.token_urlsafe(48)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(stored, fh)
        return stored[name]


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """What every machiai process needs: where the data lives and how to sign."""

    mode: Mode
    data_dir: Path
    redis_url: str
    database_url: str
    # Every Redis key starts with this, so several deployments (or test runs) share a server safely.
    redis_prefix: str
    secret_keys: tuple[str, ...]
    # How long an admission pass may wait to be redeemed in booking, and a staff token lives.
    pass_ttl_s: int
    staff_token_ttl_s: int
    # Prometheus metrics (machiai/metrics.py): on unless turned off; GET /metrics asks for
    # this bearer token where one is set, and is absent in production without one.
    metrics: bool = True
    metrics_token: str | None = None
    # Log lines as JSON objects (the default) or text (machiai/logs.py).
    log_format: str = "json"

    @property
    def production(self) -> bool:
        return self.mode is Mode.PRODUCTION


def core_settings(env: Env) -> CoreSettings:
    mode = env.mode()
    data_dir = env.data_dir()
    redis_url = env.url("REDIS_URL", REDIS_SCHEMES)
    if redis_url is None:
        raise SettingsError(
            "REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0); "
            "`machiai run` starts an embedded Redis and sets it for you"
        )
    database_url = env.url("DATABASE_URL", POSTGRES_SCHEMES)
    if database_url is None:
        raise SettingsError(
            "DATABASE_URL is not set (e.g. postgresql://user@127.0.0.1:5432/machiai); "
            "`machiai run` starts an embedded Postgres and sets it for you"
        )
    prefix = env.text("MACHIAI_REDIS_PREFIX", "machiai:")
    if "{" in prefix or "}" in prefix or len(prefix) > 64:
        raise SettingsError(
            "MACHIAI_REDIS_PREFIX must be at most 64 characters without braces "
            "(braces would break Redis Cluster hash tags)"
        )
    return CoreSettings(
        mode=mode,
        data_dir=data_dir,
        redis_url=redis_url,
        database_url=database_url,
        redis_prefix=prefix,
        secret_keys=secret_keys(env, mode, data_dir),
        pass_ttl_s=env.integer("MACHIAI_PASS_TTL_S", 300, minimum=10, maximum=3600),
        staff_token_ttl_s=env.integer(
            "MACHIAI_STAFF_TOKEN_TTL_S", 8 * 3600, minimum=60, maximum=7 * 24 * 3600
        ),
        metrics=env.flag("MACHIAI_METRICS", True),
        metrics_token=metrics_token(env),
        log_format=log_format(env),
    )


def log_format(env: Env) -> str:
    value = env.text("MACHIAI_LOG_FORMAT", "json").lower()
    if value not in ("json", "text"):
        raise SettingsError(f"MACHIAI_LOG_FORMAT must be json or text, got {value!r}")
    return value


def metrics_token(env: Env) -> str | None:
    """MACHIAI_METRICS_TOKEN: a secret like the signing keys (never printed)."""
    token = env.raw("MACHIAI_METRICS_TOKEN")
    if token is None or token == "":
        return None
    if len(token) < MIN_SECRET_LENGTH or not token.isascii() or not token.isprintable():
        raise SettingsError(
            f"MACHIAI_METRICS_TOKEN must be at least {MIN_SECRET_LENGTH} printable ASCII "
            "characters (e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return token
