"""The delivery worker's settings, read once from the environment (README "Notifications").

Secrets (the SMTP password, the webhook signing keys) are never in a message or a repr.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from machiai.config import MIN_SECRET_LENGTH, Env, Mode, SettingsError, dev_secret, log_format

CHANNELS = ("log", "email", "webhook")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where e-mail goes. ``host`` None: the e-mail channel refuses (naming the variable)."""

    host: str | None = None
    port: int = 587
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "no-reply@localhost"
    # True: STARTTLS required; False: never; None: when the server offers it (development).
    starttls: bool | None = None
    # Implicit TLS from the first byte (smtps://, port 465).
    implicit_tls: bool = False


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    mode: Mode = Mode.DEVELOPMENT
    smtp: SmtpSettings = SmtpSettings()
    # Newest first; every webhook is signed with each (receivers may hold any one of them
    # while keys rotate). Empty: the webhook channel refuses, naming the variable.
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    # A delivery is dead after this many attempts.
    max_attempts: int = 8
    # Retry n waits a uniformly random time in [0, min(cap, base x 2^(n-1))) (full jitter).
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 3600.0
    # A claimed delivery is another worker's to take when its claim is this old.
    lease_s: float = 120.0
    batch_size: int = 100
    poll_ms: int = 500
    # One send (SMTP conversation, webhook request) is given up after this long.
    timeout_s: float = 10.0
    # Sends in flight at once in one worker.
    concurrency: int = 20
    # Messages per second per channel, per worker process (0 = no limit).
    rates: Mapping[str, float] = field(
        default_factory=lambda: {"log": 0.0, "email": 20.0, "webhook": 50.0}
    )
    # MACHIAI_LOG_FORMAT, as the services read it (machiai/logs.py).
    log_format: str = "json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeliverySettings:
        env = Env(os.environ if environ is None else environ)
        mode = env.mode()
        base = env.number("MACHIAI_DELIVERY_BACKOFF_BASE_S", 2.0, minimum=0.001, maximum=3600)
        cap = env.number("MACHIAI_DELIVERY_BACKOFF_CAP_S", 3600.0, minimum=0.001, maximum=86_400)
        if cap < base:
            raise SettingsError(
                "MACHIAI_DELIVERY_BACKOFF_CAP_S must be >= MACHIAI_DELIVERY_BACKOFF_BASE_S"
            )
        rates = {
            "log": env.number("MACHIAI_DELIVERY_RATE_LOG", 0.0, minimum=0, maximum=1_000_000),
            "email": env.number("MACHIAI_DELIVERY_RATE_EMAIL", 20.0, minimum=0, maximum=1_000_000),
            "webhook": env.number(
                "MACHIAI_DELIVERY_RATE_WEBHOOK", 50.0, minimum=0, maximum=1_000_000
            ),
        }
        settings = cls(
            mode=mode,
            smtp=smtp_settings(env, mode),
            webhook_secrets=webhook_secrets(env, mode),
            max_attempts=env.integer("MACHIAI_DELIVERY_MAX_ATTEMPTS", 8, minimum=1, maximum=100),
            backoff_base_s=base,
            backoff_cap_s=cap,
            lease_s=env.number("MACHIAI_DELIVERY_LEASE_S", 120.0, minimum=1, maximum=86_400),
            batch_size=env.integer("MACHIAI_DELIVERY_BATCH", 100, minimum=1, maximum=10_000),
            poll_ms=env.integer("MACHIAI_DELIVERY_POLL_MS", 500, minimum=10, maximum=60_000),
            timeout_s=env.number("MACHIAI_DELIVERY_TIMEOUT_S", 10.0, minimum=0.1, maximum=600),
            concurrency=env.integer("MACHIAI_DELIVERY_CONCURRENCY", 20, minimum=1, maximum=1000),
            rates=rates,
            log_format=log_format(env),
        )
        settings.check_lease()
        return settings

    def check_lease(self) -> None:
        """A batch must be sent well within its lease, or another worker would send it too.

        A batch takes at most its slowest channel's share at that channel's rate plus one
        send's timeout; the lease must be twice that."""
        limited = [r for r in self.rates.values() if r > 0]
        worst_s = self.timeout_s + (self.batch_size / min(limited) if limited else 0.0)
        if self.lease_s < 2 * worst_s:
            raise SettingsError(
                f"MACHIAI_DELIVERY_LEASE_S must be at least {2 * worst_s:g} s with these "
                "settings (twice MACHIAI_DELIVERY_TIMEOUT_S plus a batch at the lowest "
                "MACHIAI_DELIVERY_RATE_*): a claim must outlast its sending"
            )


def smtp_settings(env: Env, mode: Mode) -> SmtpSettings:
    """``MACHIAI_SMTP_URL`` (smtp:// or smtps://user:password@host:port), else the
    separate variables; the separate ones win where both are given."""
    url = env.url("MACHIAI_SMTP_URL", ("smtp", "smtps"))
    host = user = password = None
    implicit_tls = False
    port = 587
    if url is not None:
        parts = urlsplit(url)
        host = parts.hostname
        implicit_tls = parts.scheme == "smtps"
        port = parts.port or (465 if implicit_tls else 587)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
    host = env.raw("MACHIAI_SMTP_HOST") or host
    port = env.integer("MACHIAI_SMTP_PORT", port, minimum=1, maximum=65535)
    user = env.raw("MACHIAI_SMTP_USER") or user
    password = env.raw("MACHIAI_SMTP_PASSWORD") or password
    sender = env.text("MACHIAI_SMTP_FROM", "no-reply@localhost")
    if "@" not in sender or any(c in sender for c in "\r\n"):
        raise SettingsError("MACHIAI_SMTP_FROM must be an e-mail address (name@domain)")
    starttls_raw = env.raw("MACHIAI_SMTP_STARTTLS")
    if starttls_raw is None:
        # Production never sends a password or a resident's address in clear by default.
        starttls: bool | None = None if mode is Mode.DEVELOPMENT or implicit_tls else True
    else:
        starttls = env.flag("MACHIAI_SMTP_STARTTLS", False)
    return SmtpSettings(host, port, user, password, sender, starttls, implicit_tls)


def webhook_secrets(env: Env, mode: Mode) -> tuple[str, ...]:
    """``MACHIAI_WEBHOOK_SECRET``: comma-separated keys, newest first, each at least 32
    characters. Development makes one per data dir; production has none unless given
    (the webhook channel then refuses to send, naming the variable)."""
    value = env.raw("MACHIAI_WEBHOOK_SECRET")
    if value is None:
        if mode is Mode.PRODUCTION:
            return ()
        return (dev_secret(env.data_dir(), "webhook_secret"),)
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    for index, key in enumerate(keys):
        if len(key) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"MACHIAI_WEBHOOK_SECRET key #{index + 1} is shorter than "
                f"{MIN_SECRET_LENGTH} characters"
            )
    if not keys:
        raise SettingsError("MACHIAI_WEBHOOK_SECRET is empty")
    return keys
