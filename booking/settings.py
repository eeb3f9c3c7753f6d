"""Booking settings, read once from the environment into a frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from machiai.client_address import NO_PROXIES, TrustedProxies, trusted_proxies
from machiai.config import CoreSettings, Env, SettingsError, core_settings


@dataclass(frozen=True, slots=True)
class BookingSettings:
    core: CoreSettings
    db_pool_min: int
    db_pool_max: int
    max_body_bytes: int
    # The registry import reads a city's file as it arrives (millions of rows): its own limit.
    registry_max_bytes: int = 256 * 1_048_576
    # A hold keeps a place for this long; confirm extends it by the grace while Postgres works.
    hold_ms: int = 300_000
    confirm_grace_ms: int = 30_000
    # A resident's booking session (opened with a pass) lives this long.
    session_ttl_s: int = 1800
    # Identity attempts: per voucher (failures) and per client address (all), per window.
    throttle_voucher_limit: int = 5
    throttle_voucher_window_s: int = 900
    throttle_client_limit: int = 30
    throttle_client_window_s: int = 60
    # Background refresh of the waitroom handoff keys and the Redis epoch check.
    refresh_interval_ms: int = 1000
    public_cache_s: int = 5
    # Behind a load balancer every client shares its address: from these proxies only,
    # X-Forwarded-For says who the client is (machiai/client_address.py).
    trusted_proxies: TrustedProxies = NO_PROXIES
    # Confirm under contention: this many attempts, then "busy".
    confirm_attempts: int = 3
    lock_timeout_ms: int = 2000
    # Deadlines: a Redis that stays silent this long, a Postgres statement or pool wait that
    # takes this long, is "busy" (503 + Retry-After) rather than a request left hanging.
    redis_timeout_s: float = 2.0
    db_timeout_s: float = 5.0
    # A staff console left alone this long signs its staff member out (the staff token's
    # own lifetime, MACHIAI_STAFF_TOKEN_TTL_S, bounds a busy one).
    staff_idle_s: int = 1800
    # The call centre residents are told to phone (pages; "" = say "your city's call centre").
    phone: str = ""
    # Where residents queue (the waitroom's public base URL), for links back into the line.
    waitroom_url: str = "http://127.0.0.1:8000"
    # The day-before reminders are written once a day per municipality, from this time of
    # day on (minutes after midnight, Japan time; BOOKING_REMINDER_AT "HH:MM", "off" = never).
    reminder_at_min: int | None = 17 * 60

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BookingSettings:
        env = Env(os.environ if environ is None else environ)
        pool_min = env.integer("BOOKING_DB_POOL_MIN", 2, minimum=1, maximum=500)
        pool_max = env.integer("BOOKING_DB_POOL_MAX", 20, minimum=1, maximum=500)
        if pool_max < pool_min:
            raise SettingsError("BOOKING_DB_POOL_MAX must be >= BOOKING_DB_POOL_MIN")
        return cls(
            core=core_settings(env),
            db_pool_min=pool_min,
            db_pool_max=pool_max,
            max_body_bytes=env.integer(
                "BOOKING_MAX_BODY_BYTES", 1_048_576, minimum=1024, maximum=100 * 1_048_576
            ),
            registry_max_bytes=env.integer(
                "BOOKING_REGISTRY_MAX_BYTES",
                256 * 1_048_576,
                minimum=1024,
                maximum=16 * 1024 * 1_048_576,
            ),
            hold_ms=env.integer("BOOKING_HOLD_MS", 300_000, minimum=1000, maximum=3_600_000),
            confirm_grace_ms=env.integer(
                "BOOKING_CONFIRM_GRACE_MS", 30_000, minimum=1000, maximum=600_000
            ),
            session_ttl_s=env.integer("BOOKING_SESSION_TTL_S", 1800, minimum=60, maximum=86_400),
            throttle_voucher_limit=env.integer(
                "BOOKING_THROTTLE_VOUCHER_LIMIT", 5, minimum=1, maximum=10_000
            ),
            throttle_client_limit=env.integer(
                "BOOKING_THROTTLE_CLIENT_LIMIT", 30, minimum=1, maximum=1_000_000
            ),
            refresh_interval_ms=env.integer(
                "BOOKING_REFRESH_INTERVAL_MS", 1000, minimum=50, maximum=60_000
            ),
            redis_timeout_s=env.number("BOOKING_REDIS_TIMEOUT_S", 2.0, minimum=0.05, maximum=60),
            db_timeout_s=env.number("BOOKING_DB_TIMEOUT_S", 5.0, minimum=0.1, maximum=600),
            trusted_proxies=trusted_proxies(
                env, "BOOKING_TRUSTED_PROXIES", retired="BOOKING_TRUST_FORWARDED"
            ),
            staff_idle_s=env.integer("BOOKING_STAFF_IDLE_S", 1800, minimum=60, maximum=86_400),
            phone=env.text("MACHIAI_PHONE", ""),
            waitroom_url=(
                env.url("MACHIAI_WAITROOM_URL", ("http", "https"))
                or "http://{}:{}".format(
                    env.text("MACHIAI_HOST", "127.0.0.1"),
                    env.integer("WAITROOM_PORT", 8000, minimum=1, maximum=65535),
                )
            ).rstrip("/"),
            reminder_at_min=reminder_at(env.text("BOOKING_REMINDER_AT", "17:00")),
        )


def reminder_at(raw: str) -> int | None:
    """BOOKING_REMINDER_AT: "HH:MM" (Japan time) as minutes after midnight; "off": None."""
    value = raw.strip()
    if value.lower() == "off":
        return None
    hours, _, minutes = value.partition(":")
    ok = hours.isascii() and hours.isdigit() and minutes.isascii() and minutes.isdigit()
    if not ok or len(minutes) != 2 or not (0 <= int(hours) <= 23 and 0 <= int(minutes) <= 59):
        raise SettingsError(
            f"BOOKING_REMINDER_AT must be a time of day HH:MM (Japan time) or off, not {raw!r}"
        )
    return int(hours) * 60 + int(minutes)
