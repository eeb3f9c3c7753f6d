"""Waitroom settings, read once from the environment into a frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from machiai.client_address import NO_PROXIES, TrustedProxies, trusted_proxies
from machiai.config import CoreSettings, Env, SettingsError, core_settings


@dataclass(frozen=True, slots=True)
class WaitroomSettings:
    core: CoreSettings
    # Where admitted residents are sent (the booking service's public base URL).
    booking_url: str
    # An admitted resident may still enter this long after their turn came.
    grace_s: int = 600
    # An admitted resident who has not taken a pass holds an active place this long.
    hold_s: int = 120
    # How long a ticket (place in line) stays valid.
    ticket_ttl_s: int = 3 * 24 * 3600
    # Each process refreshes its snapshot of every live event this often (one round trip each).
    refresh_ms: int = 250
    # Older snapshots are not shown as truth: the calm "please keep this page open" instead.
    # Long enough to ride out a Redis pause: admission happens in Redis, so while no process
    # reaches it nobody is admitted and the place a snapshot tells is still the true one.
    snapshot_stale_s: int = 30
    # Poll interval: min_s near the front, ahead / (split * rate) further back, at most max_s.
    poll_min_s: int = 2
    poll_max_s: int = 300
    poll_split: float = 5.0
    # Joins that arrive together share one INCRBY: those arriving while a call is in flight go
    # in the next one (group commit); an idle event's first join may also wait this long.
    join_linger_ms: float = 0.0
    join_batch_max: int = 512
    # Per-client join limit in this process (0 = off); the client is the peer address, or
    # behind these proxies the address the first of them saw (machiai/client_address.py).
    join_per_minute: int = 30
    join_burst: int = 10
    trusted_proxies: TrustedProxies = NO_PROXIES
    # Backpressure: booking's p95 above this slows admission; reports older than stale are ignored.
    target_p95_ms: int = 800
    load_stale_s: int = 30
    recover_per_s: float = 0.05
    # Deadlines: Redis silent this long, a Postgres statement or pool wait this long: busy.
    redis_timeout_s: float = 2.0
    db_timeout_s: float = 5.0
    # The call centre residents may phone ("" = the pages say "your city's call centre").
    phone: str = ""
    # "Your turn is near" (issue 15): the message goes out about this long before the turn
    # (from the admission rate), and the turn of a resident who asked for it waits this much
    # longer than grace_s (the message may reach them late). Links in it start at public_url.
    notify_lead_s: int = 300
    notify_extra_grace_s: int = 600
    public_url: str = "http://127.0.0.1:8000"

    @property
    def retention_s(self) -> int:
        """Admission batches are kept this long: a turn's time is known throughout its grace."""
        return max(self.grace_s + self.notify_extra_grace_s, self.hold_s) + 120

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WaitroomSettings:
        env = Env(os.environ if environ is None else environ)
        booking_url = env.url("MACHIAI_BOOKING_URL", ("http", "https")) or "http://127.0.0.1:8001"
        poll_min = env.integer("WAITROOM_POLL_MIN_S", 2, minimum=1, maximum=60)
        poll_max = env.integer("WAITROOM_POLL_MAX_S", 300, minimum=1, maximum=86400)
        if poll_max < poll_min:
            raise SettingsError("WAITROOM_POLL_MAX_S must be >= WAITROOM_POLL_MIN_S")
        return cls(
            core=core_settings(env),
            booking_url=booking_url.rstrip("/"),
            grace_s=env.integer("WAITROOM_GRACE_S", 600, minimum=10, maximum=24 * 3600),
            hold_s=env.integer("WAITROOM_HOLD_S", 120, minimum=5, maximum=3600),
            ticket_ttl_s=env.integer(
                "WAITROOM_TICKET_TTL_S", 3 * 24 * 3600, minimum=60, maximum=90 * 24 * 3600
            ),
            refresh_ms=env.integer("WAITROOM_REFRESH_MS", 250, minimum=20, maximum=5000),
            snapshot_stale_s=env.integer("WAITROOM_SNAPSHOT_STALE_S", 30, minimum=1, maximum=300),
            poll_min_s=poll_min,
            poll_max_s=poll_max,
            poll_split=env.number("WAITROOM_POLL_SPLIT", 5.0, minimum=1.0, maximum=100.0),
            join_linger_ms=env.number("WAITROOM_JOIN_LINGER_MS", 0.0, minimum=0.0, maximum=50.0),
            join_batch_max=env.integer("WAITROOM_JOIN_BATCH_MAX", 512, minimum=1, maximum=10000),
            join_per_minute=env.integer(
                "WAITROOM_JOIN_PER_MINUTE", 30, minimum=0, maximum=1_000_000
            ),
            join_burst=env.integer("WAITROOM_JOIN_BURST", 10, minimum=1, maximum=100_000),
            trusted_proxies=trusted_proxies(
                env, "WAITROOM_TRUSTED_PROXIES", retired="WAITROOM_TRUST_FORWARDED"
            ),
            target_p95_ms=env.integer("WAITROOM_TARGET_P95_MS", 800, minimum=10, maximum=60_000),
            load_stale_s=env.integer("WAITROOM_LOAD_STALE_S", 30, minimum=1, maximum=3600),
            recover_per_s=env.number("WAITROOM_RECOVER_PER_S", 0.05, minimum=0.001, maximum=10.0),
            redis_timeout_s=env.number("WAITROOM_REDIS_TIMEOUT_S", 2.0, minimum=0.05, maximum=60),
            db_timeout_s=env.number("WAITROOM_DB_TIMEOUT_S", 5.0, minimum=0.1, maximum=600),
            phone=env.text("MACHIAI_PHONE", "").strip(),
            notify_lead_s=env.integer("WAITROOM_NOTIFY_LEAD_S", 300, minimum=10, maximum=86_400),
            notify_extra_grace_s=env.integer(
                "WAITROOM_NOTIFY_EXTRA_GRACE_S", 600, minimum=0, maximum=24 * 3600
            ),
            # The waitroom's own public base URL (booking reads the same variable).
            public_url=(
                env.url("MACHIAI_WAITROOM_URL", ("http", "https"))
                or "http://{}:{}".format(
                    env.text("MACHIAI_HOST", "127.0.0.1"),
                    env.integer("WAITROOM_PORT", 8000, minimum=1, maximum=65535),
                )
            ).rstrip("/"),
        )
