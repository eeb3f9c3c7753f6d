"""Booking's Redis: one typed wrapper per Lua script; nothing else calls EVALSHA.

Scripts ship as package data and are sent by SHA (loaded again when Redis answers
NOSCRIPT); their negative replies map to :class:`Code`. Every command goes through
one multiplexed connection (:mod:`machiai.redis_mux`): on the hold and confirm paths
redis.asyncio's per-command cost was the service's largest. Redis failures become
:class:`Busy` here, at the store boundary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import wraps
from importlib import resources
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from booking.errors import Busy
from booking.store import keys
from machiai import keys as shared_keys
from machiai.redis_mux import Arg, RedisMux

P = ParamSpec("P")
T = TypeVar("T")


class Code(IntEnum):
    NOT_LOADED = -1
    CLOSED = -2
    NOT_OPEN = -3
    ENDED = -4
    FULL = -5
    HOLD_EXPIRED = -6
    HOLD_EXISTS = -7
    PASS_USED = -8


def _translate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @wraps(fn)
    async def inner(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise Busy() from exc

    return inner


ScriptCall = tuple[str, Sequence[str], Sequence[Arg]]  # script name, keys, args
APPLY_BATCH = 1000


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _raise_any(replies: list[Any]) -> list[Any]:
    """A pipeline's replies, or its first error raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _expiry(score: Any) -> int | None:
    return None if score is None else int(float(score))


def _script_text(name: str) -> str:
    return resources.files("booking.lua").joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class SlotState:
    """A slot as Postgres has it, in the shape Redis mirrors."""

    slot_id: str
    version: int
    capacity: int
    booked: int
    closed: bool
    from_ms: int
    until_ms: int


@dataclass(frozen=True, slots=True)
class HoldAttempt:
    """What :meth:`RedisStore.claim_resident_and_hold` found: the pointer claim (0 or
    ``HOLD_EXISTS`` with the live pointer), the slot hold (places left or a negative
    :class:`Code`) and the session's expiry ms (None: unknown or not asked)."""

    pointer_code: int
    current_pointer: str
    left: int
    session_expiry_ms: int | None


@dataclass(frozen=True, slots=True)
class Counter:
    count: int
    ttl_ms: int


@dataclass(slots=True)
class _Script:
    text: str
    sha: str


class RedisStore:
    """Typed access to booking's keys over ``wire``; ``client`` (redis.asyncio, same
    server) is for health checks and tests that look at the keys."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.wire = RedisMux.like(client)
        self._scripts: dict[str, _Script] = {}
        for name in (
            "hold_slot-2",
            "claim_hold-2",
            "apply_slot-2",
            "release_hold-1",
            "claim_resident-1",
            "release_resident-1",
            "open_session-2",
            "hit_counter-1",
        ):
            text = _script_text(f"{name}.lua")
            self._scripts[name] = _Script(text, hashlib.sha1(text.encode()).hexdigest())

    async def aclose(self) -> None:
        await self.wire.aclose()

    @_translate
    async def load_scripts(self) -> None:
        """Teach Redis every script (one pipelined round trip)."""
        await self.wire.pipeline([("SCRIPT", "LOAD", s.text) for s in self._scripts.values()])

    async def _run(self, call: ScriptCall) -> Any:
        name, keys_, args = call
        expected = int(name.rsplit("-", 1)[1])
        assert len(keys_) == expected, f"{name} takes {expected} keys"
        script = self._scripts[name]
        try:
            return await self.wire.execute("EVALSHA", script.sha, expected, *keys_, *args)
        except NoScriptError:
            # Redis restarted or was flushed of scripts: teach it again, once.
            await self.wire.execute("SCRIPT", "LOAD", script.text)
            return await self.wire.execute("EVALSHA", script.sha, expected, *keys_, *args)

    def _session_zscore(self, session: tuple[str, str] | None) -> list[tuple[Arg, ...]]:
        if session is None:
            return []
        event_id, session_id = session
        return [("ZSCORE", shared_keys.booking_sessions(self.prefix, event_id), session_id)]

    async def _pipeline(
        self, calls: Sequence[ScriptCall], head: Sequence[tuple[Arg, ...]] = ()
    ) -> list[Any]:
        """Plain commands ``head``, then scripts, in one round trip (EVALSHA, no SCRIPT
        EXISTS first); replies in order, errors as values. A script Redis does not have
        (it restarted) is loaded and only those calls run again; each script is atomic
        on its own tag, so a retry never repeats one that ran."""
        commands = [*head, *(self._evalsha(call) for call in calls)]
        replies = await self.wire.pipeline(commands, raise_on_error=False)
        missing = [
            i for i, reply in enumerate(replies[len(head) :]) if isinstance(reply, NoScriptError)
        ]
        if missing:
            for name in {calls[i][0] for i in missing}:
                await self.wire.execute("SCRIPT", "LOAD", self._scripts[name].text)
            again = await self.wire.pipeline(
                [self._evalsha(calls[i]) for i in missing], raise_on_error=False
            )
            for i, reply in zip(missing, again, strict=True):
                replies[len(head) + i] = reply
        return replies

    def _evalsha(self, call: ScriptCall) -> tuple[Arg, ...]:
        name, keys_, args = call
        return ("EVALSHA", self._scripts[name].sha, len(keys_), *keys_, *args)

    # -- slot inventory ---------------------------------------------------------------
    # Each script's keys and arguments, written once for its own wrapper and for the
    # pipelines that send it together with others.
    def _slot_call(self, name: str, slot_id: str, *args: Arg) -> ScriptCall:
        p = self.prefix
        return (name, [keys.slot_inventory(p, slot_id), keys.slot_holds(p, slot_id)], args)

    def _pointer_call(self, name: str, municipality: str, voucher: str, *args: Arg) -> ScriptCall:
        return (name, [keys.resident_hold(self.prefix, municipality, voucher)], args)

    @_translate
    async def hold_slot(self, slot_id: str, hold_id: str, hold_ms: int, now_ms: int = 0) -> int:
        """Places left after the hold (>= 0) or a negative :class:`Code`."""
        return int(
            await self._run(self._slot_call("hold_slot-2", slot_id, hold_id, hold_ms, now_ms))
        )

    @_translate
    async def claim_hold(self, slot_id: str, hold_id: str, grace_ms: int, now_ms: int = 0) -> int:
        """Ms until the claimed hold expires, or ``Code.HOLD_EXPIRED``."""
        call = self._slot_call("claim_hold-2", slot_id, hold_id, grace_ms, now_ms)
        return int(await self._run(call))

    @_translate
    async def claim_hold_checking_session(
        self, session: tuple[str, str] | None, slot_id: str, hold_id: str, grace_ms: int
    ) -> tuple[int, int | None]:
        """:meth:`claim_hold` and, when ``session`` (event id, session id) is given, that
        session's expiry ms, in one round trip: the liveness check rides along."""
        head = self._session_zscore(session)
        replies = _raise_any(
            await self._pipeline(
                [self._slot_call("claim_hold-2", slot_id, hold_id, grace_ms, 0)], head
            )
        )
        return int(replies[-1]), _expiry(replies[0]) if head else None

    @_translate
    async def apply_slot(self, state: SlotState, drop_hold: str = "") -> bool:
        """Mirror Postgres; True when Redis took this version (False: it had a newer one)."""
        return bool(await self._run(self._apply_call(state, drop_hold)))

    @_translate
    async def apply_slots(self, states: Sequence[SlotState]) -> None:
        """Mirror many slots, ``APPLY_BATCH`` per round trip (a rebuild of a city's
        inventory, a published week): one round trip per slot would make a rebuild of
        tens of thousands of slots take seconds of Redis latency."""
        for start in range(0, len(states), APPLY_BATCH):
            batch = states[start : start + APPLY_BATCH]
            _raise_any(await self._pipeline([self._apply_call(st) for st in batch]))

    def _apply_call(self, state: SlotState, drop_hold: str = "") -> ScriptCall:
        return self._slot_call(
            "apply_slot-2",
            state.slot_id,
            state.version,
            state.capacity,
            state.booked,
            int(state.closed),
            state.from_ms,
            state.until_ms,
            drop_hold,
        )

    @_translate
    async def finish_confirm(
        self,
        states: Sequence[SlotState],
        slot_id: str,
        hold_id: str,
        municipality: str,
        voucher: str,
        pointer: str,
    ) -> None:
        """After commit: mirror the slot(s), drop the hold and the resident pointer.

        One pipelined round trip of apply_slot-2 per slot and release_resident-1 (each
        script atomic on its own tag; together they only tidy what Postgres decided)."""
        calls = [self._apply_call(st, hold_id if st.slot_id == slot_id else "") for st in states]
        calls.append(self._pointer_call("release_resident-1", municipality, voucher, pointer, 0))
        _raise_any(await self._pipeline(calls))

    @_translate
    async def release_hold(self, slot_id: str, hold_id: str) -> bool:
        return bool(await self._run(self._release_hold_call(slot_id, hold_id)))

    def _release_hold_call(self, slot_id: str, hold_id: str) -> ScriptCall:
        return ("release_hold-1", [keys.slot_holds(self.prefix, slot_id)], [hold_id])

    @_translate
    async def slot_left(self, slot_ids: Sequence[str]) -> dict[str, int | None]:
        """Places left per slot (None where Redis has no inventory); read-only, pipelined."""
        if not slot_ids:
            return {}
        now_ms = await self.now_ms()
        p = self.prefix
        commands: list[tuple[Arg, ...]] = []
        for sid in slot_ids:
            commands.append(("HMGET", keys.slot_inventory(p, sid), "cap", "booked", "closed"))
            commands.append(("ZCOUNT", keys.slot_holds(p, sid), f"({now_ms}", "+inf"))
        replies = await self.wire.pipeline(commands)
        out: dict[str, int | None] = {}
        for index, sid in enumerate(slot_ids):
            cap, booked, closed = replies[2 * index]
            if cap is None:
                out[sid] = None
            elif closed == b"1":
                out[sid] = 0
            else:
                out[sid] = max(0, int(cap) - int(booked) - int(replies[2 * index + 1]))
        return out

    @_translate
    async def now_ms(self) -> int:
        seconds, micros = await self.wire.execute("TIME")
        return int(seconds) * 1000 + int(micros) // 1000

    # -- resident hold pointer --------------------------------------------------------
    @_translate
    async def claim_resident(
        self, municipality: str, voucher: str, value: str, ttl_ms: int
    ) -> tuple[int, str]:
        """(0, value) when taken, (Code.HOLD_EXISTS, current value) otherwise."""
        reply = await self._run(
            self._pointer_call("claim_resident-1", municipality, voucher, value, ttl_ms)
        )
        code, current = cast(list[Any], reply)
        return int(code), _text(current)

    @_translate
    async def claim_resident_and_hold(
        self,
        resident: tuple[str, str],
        pointer: str,
        slot_id: str,
        hold_id: str,
        hold_ms: int,
        session: tuple[str, str] | None = None,
    ) -> HoldAttempt:
        """claim_resident-1 and hold_slot-2 (and, when ``session`` is given, that
        session's expiry) sent together: one round trip where the common case took two.

        The two scripts live on different tags, so each runs on its own; the caller
        gives back whichever half it cannot use (a slot hold whose pointer was refused
        is never returned to anyone, so nobody can confirm it). A Redis error in either
        half gives back the other half here and raises."""
        municipality, voucher = resident
        head = self._session_zscore(session)
        replies = await self._pipeline(
            [
                self._pointer_call("claim_resident-1", municipality, voucher, pointer, hold_ms),
                self._slot_call("hold_slot-2", slot_id, hold_id, hold_ms, 0),
            ],
            head,
        )
        score = replies[0] if head else None
        claimed, held = replies[-2:]
        failure = next((r for r in (score, claimed, held) if isinstance(r, Exception)), None)
        if failure is not None:
            if not isinstance(held, Exception) and int(held) >= 0:
                await self._run(self._release_hold_call(slot_id, hold_id))
            if not isinstance(claimed, Exception) and int(claimed[0]) == 0:
                await self._run(
                    self._pointer_call("release_resident-1", municipality, voucher, pointer, 0)
                )
            raise failure
        code, current = cast(list[Any], claimed)
        return HoldAttempt(
            pointer_code=int(code),
            current_pointer=_text(current),
            left=int(held),
            session_expiry_ms=_expiry(score),
        )

    @_translate
    async def release_resident(
        self, municipality: str, voucher: str, value: str, extend_ms: int = 0
    ) -> bool:
        call = self._pointer_call("release_resident-1", municipality, voucher, value, extend_ms)
        return bool(await self._run(call))

    @_translate
    async def resident_pointer(self, municipality: str, voucher: str) -> str | None:
        raw = await self.wire.execute("GET", keys.resident_hold(self.prefix, municipality, voucher))
        return None if raw is None else _text(raw)

    # -- sessions and throttling ------------------------------------------------------
    @_translate
    async def open_session(
        self,
        event_id: str,
        pass_id: str,
        session_id: str,
        session_ttl_ms: int,
        pass_keep_ms: int,
        now_ms: int = 0,
    ) -> int:
        """Live sessions after joining, or ``Code.PASS_USED``."""
        p = self.prefix
        reply = await self._run(
            (
                "open_session-2",
                [shared_keys.used_passes(p, event_id), shared_keys.booking_sessions(p, event_id)],
                [pass_id, session_id, session_ttl_ms, now_ms, pass_keep_ms],
            )
        )
        return int(reply)

    @_translate
    async def pass_used(self, event_id: str, pass_id: str) -> bool:
        key = shared_keys.used_passes(self.prefix, event_id)
        return await self.wire.execute("ZSCORE", key, pass_id) is not None

    @_translate
    async def session_expiry_ms(self, event_id: str, session_id: str) -> int | None:
        key = shared_keys.booking_sessions(self.prefix, event_id)
        return _expiry(await self.wire.execute("ZSCORE", key, session_id))

    @_translate
    async def end_session(self, event_id: str, session_id: str) -> None:
        await self.wire.execute(
            "ZREM", shared_keys.booking_sessions(self.prefix, event_id), session_id
        )

    @_translate
    async def hit_counter(self, key: str, window_ms: int, limit: int, commit: bool) -> Counter:
        reply = await self._run(("hit_counter-1", [key], [window_ms, limit, int(commit)]))
        count, ttl = cast(list[Any], reply)
        return Counter(int(count), int(ttl))

    # -- waitroom handoff and epoch ---------------------------------------------------
    @_translate
    async def publish_event_status(
        self, event_id: str, remaining: int, active_sessions: int, p95_ms: float, now_ms: int
    ) -> int:
        """Write the inventory and load hashes; prune lapsed sessions. Returns live sessions."""
        p = self.prefix
        sessions = shared_keys.booking_sessions(p, event_id)
        replies = await self.wire.pipeline(
            [
                ("ZREMRANGEBYSCORE", sessions, "-inf", now_ms),
                ("ZCARD", sessions),
                (
                    "HSET",
                    shared_keys.event_inventory(p, event_id),
                    "remaining",
                    remaining,
                    "updated_ms",
                    now_ms,
                ),
            ]
        )
        live = int(replies[1])
        await self.wire.execute(
            "HSET",
            shared_keys.booking_load(p, event_id),
            "p95_ms",
            round(p95_ms, 1),
            "active_sessions",
            live,
            "updated_ms",
            now_ms,
        )
        return live

    @_translate
    async def epoch(self) -> str | None:
        raw = await self.wire.execute("GET", keys.epoch(self.prefix))
        return None if raw is None else _text(raw)

    @_translate
    async def set_epoch(self, value: str) -> None:
        await self.wire.execute("SET", keys.epoch(self.prefix), value)
