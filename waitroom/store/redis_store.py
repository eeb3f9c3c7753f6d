"""Typed wrappers of the waitroom's Lua scripts: the only code that runs them.

Scripts go through :mod:`machiai.scripts` (EVALSHA, loaded again when Redis answers
NOSCRIPT) on one multiplexed connection (:mod:`machiai.redis_mux`), as booking's do: a
burst of callers queues on it instead of failing when a connection pool runs out, and
each call costs a write and a read, not a pool checkout. Each wrapper builds its keys
(all under one event's hash tag), converts the reply into a dataclass and turns a
negative return code into :class:`ScriptRefused`; the key count is checked against the
script's file name. Redis failures are translated here into
:class:`~waitroom.errors.StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from redis.exceptions import RedisError

from machiai import keys as shared
from machiai.redis_cluster import RedisClient, wire_like
from machiai.scripts import Scripts
from waitroom.errors import ScriptError, StoreUnavailable
from waitroom.store import keys


class ScriptRefused(Exception):
    """A script checked and refused; nothing was written."""

    def __init__(self, code: ScriptError) -> None:
        super().__init__(code.name)
        self.code = code


class LineKind(IntEnum):
    PREQUEUE = 0
    ARRIVAL = 1


@dataclass(frozen=True, slots=True)
class EventConfig:
    """What Postgres knows about an event; loaded into Redis on first use."""

    event_id: str
    municipality: str
    name_ja: str
    name_en: str
    state: str
    rate: int
    cap: int
    prequeue_at_ms: int
    opens_at_ms: int
    closes_at_ms: int


@dataclass(frozen=True, slots=True)
class JoinResult:
    kind: LineKind
    first: int
    admitted: int
    n_pre: int | None
    now_ms: int


@dataclass(frozen=True, slots=True)
class LiveState:
    """One event's line as admit_next left it (Redis TIME ``now_ms``)."""

    state: str
    rate: int
    cap: int
    admitted: int
    arrivals: int
    prequeue: int
    n_pre: int | None
    seed: str | None
    opened_ms: int | None
    prequeue_at_ms: int
    opens_at_ms: int
    closes_at_ms: int
    # Places left in booking: before opening, the places that will open; None when unknown.
    remaining: int | None
    # Booking reported 0 places in a count taken after opening (the only "sold out").
    sold_out: bool
    active: int
    sessions: int
    fresh: int
    outstanding: int
    # Turns admitted between hold_ms and dormant_after_ms ago, and those of them that took
    # no pass (most likely abandoned: they hold their place for hold_ms).
    dormant: int
    matured: int
    factor: float
    floor: int
    now_ms: int
    admitted_now: int
    # (second, admitted counter after that second), ascending.
    batches: tuple[tuple[int, int], ...]

    @property
    def line_length(self) -> int:
        """Everyone who ever joined the line (pre-queue counts once it is frozen)."""
        return (self.n_pre if self.n_pre is not None else self.prequeue) + self.arrivals


@dataclass(frozen=True, slots=True)
class PassResult:
    """The ticket's one live pass as Redis recorded it; the caller signs it at ``issued_s``."""

    new: bool
    pass_id: str
    issued_s: int
    admitted_ms: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class SetEventResult:
    old_state: str
    new_state: str
    old_rate: int
    old_cap: int
    old_prequeue_at_ms: int
    old_opens_at_ms: int
    old_closes_at_ms: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt_int(value: Any) -> int | None:
    text = _text(value)
    return None if text == "" else int(float(text))


def _now_arg(now_ms: int | None) -> str:
    return "" if now_ms is None else str(now_ms)


# waitroom/lua/<name>-<nkeys>.lua, read and hashed once per process (machiai.scripts).
SCRIPTS = Scripts("waitroom")

# admit_next looks again at used passes scored up to this long before its last call: booking
# scores them by Redis TIME, the clock admit_next runs on, so this covers that clock stepping
# back (a failover to a replica, an NTP step). Each call reads the redemptions of this window
# again (one range read and one HMGET: ~250 ids at 12,000 admissions a minute).
REDEMPTION_LOOKBACK_MS = 1_000


class RedisStore:
    """The waitroom's Lua scripts, sent as EVALSHA over one connection to the server
    ``client`` (redis.asyncio) names; ``client`` stays for health checks and tests."""

    def __init__(self, client: RedisClient, prefix: str, timeout_s: float = 2.0) -> None:
        self.client = client
        self.prefix = prefix
        self.timeout_s = timeout_s
        # Promise: an admitted burst gets its passes; "busy" only when Redis is unreachable
        # or slower than timeout_s (the mux fails every waiting call then, not the 101st).
        self._wire = wire_like(client, timeout_s=timeout_s, connect_timeout_s=timeout_s)

    async def aclose(self) -> None:
        await self._wire.aclose()

    async def _run(self, name: str, keys_: Sequence[str], args: Sequence[str | int]) -> Any:
        """One script call (loaded again if Redis answers NOSCRIPT); Redis failures become
        StoreUnavailable and a negative reply ScriptRefused."""
        try:
            # The mux's deadline (Redis silent for timeout_s) bounds the wait: no timer per
            # call, which a busy process would trip while the reply sat unread.
            reply = await SCRIPTS.run(self._wire, name, keys_, args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc
        if isinstance(reply, int) and reply < 0:
            raise ScriptRefused(ScriptError(reply))
        return reply

    async def load_event(self, config: EventConfig) -> bool:
        """Put an event into Redis unless it is there; True when this call loaded it."""
        args: list[str | int] = [
            "municipality", config.municipality, "name_ja", config.name_ja,
            "name_en", config.name_en, "state", config.state, "rate", config.rate,
            "cap", config.cap, "prequeue_at_ms", config.prequeue_at_ms,
            "opens_at_ms", config.opens_at_ms, "closes_at_ms", config.closes_at_ms,
        ]  # fmt: skip
        reply = await self._run("load_event", [keys.event(self.prefix, config.event_id)], args)
        return bool(reply == 1)

    async def join_line(
        self, event_id: str, count: int, seed_hex: str, now_ms: int | None = None
    ) -> JoinResult:
        """Reserve ``count`` consecutive numbers; the caller hands them out in arrival order."""
        reply = await self._run(
            "join_line", [keys.event(self.prefix, event_id)], [count, _now_arg(now_ms), seed_hex]
        )
        kind, first, admitted, n_pre, now = (int(x) for x in reply)
        return JoinResult(LineKind(kind), first, admitted, None if n_pre < 0 else n_pre, now)

    async def admit_next(
        self,
        event_id: str,
        *,
        seed_hex: str,
        hold_ms: int,
        retention_s: int,
        since_s: int,
        target_p95_ms: int,
        recover_per_s: float,
        load_stale_ms: int,
        dormant_after_ms: int = 20_000,
        lookback_ms: int = REDEMPTION_LOOKBACK_MS,
        now_ms: int | None = None,
    ) -> LiveState:
        """Advance admission as far as rate, cap, line and inventory allow; return the state."""
        p = self.prefix
        reply = await self._run(
            "admit_next",
            [
                keys.event(p, event_id),
                keys.batches(p, event_id),
                shared.booking_sessions(p, event_id),
                shared.used_passes(p, event_id),
                shared.event_inventory(p, event_id),
                shared.booking_load(p, event_id),
                keys.issued(p, event_id),
                keys.passes(p, event_id),
                keys.entered(p, event_id),
                keys.pass_tickets(p, event_id),
            ],
            [
                _now_arg(now_ms),
                seed_hex,
                hold_ms,
                retention_s,
                since_s,
                target_p95_ms,
                repr(recover_per_s),
                load_stale_ms,
                dormant_after_ms,
                lookback_ms,
            ],  # fmt: skip
        )
        raw = reply[1]
        f = {_text(raw[i]): raw[i + 1] for i in range(0, len(raw), 2)}
        flat = reply[2]
        batches = tuple(
            (int(float(_text(flat[i + 1]))), int(_text(flat[i]))) for i in range(0, len(flat), 2)
        )
        seed = _text(f["seed"])
        return LiveState(
            state=_text(f["state"]),
            rate=int(f["rate"]),
            cap=int(f["cap"]),
            admitted=int(f["admitted"]),
            arrivals=int(f["arrivals"]),
            prequeue=int(f["prequeue"]),
            n_pre=_opt_int(f["n_pre"]),
            seed=seed or None,
            opened_ms=_opt_int(f["opened_ms"]),
            prequeue_at_ms=int(f["prequeue_at_ms"]),
            opens_at_ms=int(f["opens_at_ms"]),
            closes_at_ms=int(f["closes_at_ms"]),
            remaining=_opt_int(f["remaining"]),
            sold_out=_text(f["sold_out"]) == "1",
            active=int(f["active"]),
            sessions=int(f["sessions"]),
            fresh=int(f["fresh"]),
            outstanding=int(f["outstanding"]),
            dormant=int(f["dormant"]),
            matured=int(f["matured"]),
            factor=float(_text(f["factor"])),
            floor=int(f["floor"]),
            now_ms=int(f["now_ms"]),
            admitted_now=int(f["admitted_now"]),
            batches=batches,
        )

    async def issue_pass(
        self,
        event_id: str,
        *,
        ticket_id: str,
        line_index: int,
        pass_id: str,
        issued_s: int,
        pass_ttl_ms: int,
        grace_ms: int,
        hold_ms: int,
        now_ms: int | None = None,
        extra_grace_ms: int = 0,
    ) -> PassResult:
        """The ticket's one live pass: ``pass_id`` issued at ``issued_s`` (unix seconds, this
        process's clock) if none is live, else the live one again; refuses if not its turn
        (``extra_grace_ms`` longer for a ticket that opted in to "your turn is near")."""
        p = self.prefix
        reply = await self._run(
            "issue_pass",
            [
                keys.event(p, event_id),
                keys.batches(p, event_id),
                shared.used_passes(p, event_id),
                keys.ticket_pass(p, event_id, ticket_id),
                keys.issued(p, event_id),
                keys.passes(p, event_id),
                keys.entered(p, event_id),
                keys.grace_ext(p, event_id),
                keys.pass_tickets(p, event_id),
            ],
            [
                ticket_id,
                line_index,
                pass_id,
                issued_s,
                pass_ttl_ms,
                grace_ms,
                hold_ms,
                _now_arg(now_ms),
                extra_grace_ms,
            ],  # fmt: skip
        )
        code, pass_out, issued_out, admitted_ms, expires_ms = reply
        return PassResult(
            new=int(code) == 0,
            pass_id=_text(pass_out),
            issued_s=int(issued_out),
            admitted_ms=int(admitted_ms),
            expires_ms=int(expires_ms),
        )

    async def set_event(
        self,
        event_id: str,
        *,
        action: str = "",
        rate: int | None = None,
        cap: int | None = None,
        prequeue_at_ms: int | None = None,
        opens_at_ms: int | None = None,
        closes_at_ms: int | None = None,
        now_ms: int | None = None,
    ) -> SetEventResult:
        """Apply an administrator's change live; returns the values before it."""

        def opt(value: int | None) -> str:
            return "" if value is None else str(value)

        reply = await self._run(
            "set_event",
            [keys.event(self.prefix, event_id)],
            [
                action,
                opt(rate),
                opt(cap),
                opt(prequeue_at_ms),
                opt(opens_at_ms),
                opt(closes_at_ms),
                _now_arg(now_ms),
            ],  # fmt: skip
        )
        values = [_text(v) for v in reply]
        return SetEventResult(
            values[0], values[1], int(values[2]), int(values[3]),
            int(values[4]), int(values[5]), int(values[6]),
        )  # fmt: skip

    async def restore_event(self, event_id: str, change: SetEventResult) -> bool:
        """Undo ``change`` (its Postgres write failed); False when the state had moved on
        meanwhile and was left (the fields are restored either way)."""
        reply = await self._run(
            "restore_event",
            [keys.event(self.prefix, event_id)],
            [
                change.new_state,
                change.old_state,
                change.old_rate,
                change.old_cap,
                change.old_prequeue_at_ms,
                change.old_opens_at_ms,
                change.old_closes_at_ms,
            ],
        )
        return bool(reply == 1)

    # -- "your turn is near" (opt_in-5, claim_optins-5, settle_optins-3) -------------------
    def _optin_keys(self, event_id: str) -> list[str]:
        p = self.prefix
        return [
            keys.optins(p, event_id),
            keys.optin_data(p, event_id),
            keys.optin_claims(p, event_id),
        ]

    async def opt_in(self, event_id: str, ticket_id: str, line_index: int, record: str) -> int:
        """Record a waiting ticket's opt-in (``record``: "locale|kind|address|token"):
        0 new, 1 replaced the ticket's earlier one, 2 its message is being written."""
        p = self.prefix
        reply = await self._run(
            "opt_in",
            [keys.event(p, event_id), *self._optin_keys(event_id), keys.grace_ext(p, event_id)],
            [ticket_id, line_index, record],
        )
        return int(reply)

    async def claim_optins(
        self, event_id: str, *, lead: int, most: int, lease_ms: int, now_ms: int | None = None
    ) -> tuple[int, list[tuple[str, str]]]:
        """(admitted counter, [(ticket id, "index|locale|kind|address|token")]): opt-ins
        whose index is below admitted + ``lead``, and claims whose lease ran out."""
        p = self.prefix
        reply = await self._run(
            "claim_optins",
            [keys.event(p, event_id), *self._optin_keys(event_id), keys.grace_ext(p, event_id)],
            [_now_arg(now_ms), lead, most, lease_ms],
        )
        flat = reply[1]
        taken = [(_text(flat[i]), _text(flat[i + 1])) for i in range(0, len(flat), 2)]
        return int(reply[0]), taken

    async def settle_optins(self, event_id: str, ticket_ids: Sequence[str], *, done: bool) -> int:
        """Claims written (``done``: forgotten) or not (back in line for the next claim)."""
        if not ticket_ids:
            return 0
        reply = await self._run(
            "settle_optins", self._optin_keys(event_id), ["done" if done else "back", *ticket_ids]
        )
        return int(reply)

    async def grace_extended(self, event_id: str, ticket_id: str) -> bool:
        """True when the ticket's turn has the longer grace of an opt-in (a plain ZSCORE,
        asked only by the waiting page of a turn past its plain grace)."""
        try:
            found = await self._wire.execute(
                "ZSCORE", keys.grace_ext(self.prefix, event_id), ticket_id
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable() from exc
        return found is not None
