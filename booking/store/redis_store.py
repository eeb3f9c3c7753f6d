"""Booking's Redis: one typed wrapper per Lua script; nothing else builds an EVALSHA.

Scripts ship as package data and go through :mod:`machiai.scripts` (EVALSHA, loaded again
when Redis answers NOSCRIPT). A script's negative reply becomes :class:`ScriptRefused`
carrying a :class:`~booking.domain.Refusal` in one place (:func:`refusal_of`); the
services turn refusals into domain errors with :func:`booking.errors.refused`.
Every command goes through one multiplexed connection (:mod:`machiai.redis_mux`): on the
hold and confirm paths redis.asyncio's per-command cost was the service's largest. Redis
failures become :class:`Busy` here, at the store boundary.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast

from redis.exceptions import RedisError

from booking.domain import Channel, HoldRef, Refusal, Resident, SlotState
from booking.errors import Busy
from booking.store import keys
from machiai import keys as shared_keys
from machiai.redis_cluster import RedisClient, wire_like
from machiai.redis_mux import Arg
from machiai.scripts import Scripts

# What a count of places left reads of a slot's inventory (see hold_slot-3.lua).
_LEFT_FIELDS = ("cap", "booked", "closed", "from_ms", "until_ms", "phone", "kept", "release_ms")
P = ParamSpec("P")
T = TypeVar("T")
Command = tuple[Arg, ...]
APPLY_BATCH = 1000
SCRIPTS = Scripts("booking")


class ScriptRefused(Exception):
    """A script checked and refused; it wrote nothing."""

    def __init__(self, code: Refusal) -> None:
        super().__init__(code.name)
        self.code = code


def refusal_of(reply: Any) -> Refusal | None:
    """The refusal a script's reply carries (a negative integer), else None."""
    if isinstance(reply, int) and reply < 0:
        return Refusal(reply)
    return None


def _checked(reply: Any) -> Any:
    code = refusal_of(reply)
    if code is not None:
        raise ScriptRefused(code)
    return reply


def _translate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @wraps(fn)
    async def inner(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise Busy() from exc

    return inner


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _raise_any(replies: list[Any]) -> list[Any]:
    """A pipeline's replies, or its first error raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _flat(fields: Mapping[str, str]) -> list[str]:
    return [item for pair in fields.items() for item in pair]


def _expiry(score: Any) -> int | None:
    return None if score is None else int(float(score))


@dataclass(frozen=True, slots=True)
class HoldAttempt:
    """What :meth:`RedisStore.claim_resident_and_hold` found.

    ``pointer_taken``: the resident's pointer now names this hold; if not, ``existing``
    is the live hold it names (None only if that was not a hold id).
    ``left``: places left after the slot hold, or None with ``refusal`` saying why not.
    ``session_expiry_ms``: the session's expiry (None: unknown, or not asked)."""

    pointer_taken: bool
    existing: HoldRef | None
    left: int | None
    refusal: Refusal | None
    session_expiry_ms: int | None


@dataclass(frozen=True, slots=True)
class HoldClaim:
    """A hold claimed for confirmation: ms until it expires (None: it had lapsed or was
    unknown) and the session's expiry when that was asked."""

    left_ms: int | None
    session_expiry_ms: int | None


@dataclass(frozen=True, slots=True)
class Counter:
    count: int
    ttl_ms: int


class RedisStore:
    """Typed access to booking's keys over ``wire``; ``client`` (redis.asyncio, same
    server) is for health checks and tests that look at the keys."""

    def __init__(self, client: RedisClient, prefix: str, timeout_s: float = 2.0) -> None:
        self.client = client
        self.prefix = prefix
        # Redis silent for timeout_s: every waiting call fails (busy), the next reconnects.
        self.wire = wire_like(client, timeout_s=timeout_s, connect_timeout_s=timeout_s)

    async def aclose(self) -> None:
        await self.wire.aclose()

    @_translate
    async def load_scripts(self) -> None:
        """Teach Redis every script (one pipelined round trip)."""
        await self.wire.pipeline(SCRIPTS.load_commands())

    async def _run(self, command: Command) -> Any:
        """One script call (from a ``_*_call`` builder) on its own round trip."""
        return await SCRIPTS.execute(self.wire, command)

    # -- script calls: each script's keys and arguments, written once -----------------
    def _holds(self, slot_id: str) -> list[str]:
        """A slot's two holds ZSETs, web then phone (one hash tag with its inventory)."""
        p = self.prefix
        return [keys.slot_holds(p, slot_id), keys.slot_phone_holds(p, slot_id)]

    def _slot(self, name: str, slot_id: str, *args: Arg) -> Command:
        inventory = keys.slot_inventory(self.prefix, slot_id)
        return SCRIPTS[name].call([inventory, *self._holds(slot_id)], args)

    def _hold_call(
        self, hold: HoldRef, resident: Resident, hold_ms: int, now_ms: int, channel: Channel
    ) -> Command:
        return self._slot(
            "hold_slot", hold.slot_id, hold.member(resident), hold_ms, now_ms, channel.value
        )

    def _claim_call(self, hold: HoldRef, resident: Resident, grace_ms: int, now_ms: int) -> Command:
        return SCRIPTS["claim_hold"].call(
            self._holds(hold.slot_id), [hold.member(resident), grace_ms, now_ms]
        )

    def _apply_call(self, state: SlotState, drop_member: str = "") -> Command:
        return self._slot(
            "apply_slot",
            state.slot_id,
            state.version,
            state.capacity,
            state.booked,
            int(state.closed),
            state.from_ms,
            state.until_ms,
            state.booked_phone,
            state.kept,
            state.release_ms,
            drop_member,
        )

    def _release_hold_call(self, hold: HoldRef, resident: Resident) -> Command:
        return SCRIPTS["release_hold"].call(self._holds(hold.slot_id), [hold.member(resident)])

    def _pointer_key(self, resident: Resident) -> str:
        return keys.resident_hold(self.prefix, resident.municipality, resident.voucher)

    def _claim_pointer_call(self, resident: Resident, hold: HoldRef, ttl_ms: int) -> Command:
        return SCRIPTS["claim_resident"].call([self._pointer_key(resident)], [hold.public, ttl_ms])

    def _release_pointer_call(self, resident: Resident, hold: HoldRef) -> Command:
        return SCRIPTS["release_resident"].call([self._pointer_key(resident)], [hold.public])

    def _session_zscore(self, session: tuple[str, str] | None) -> list[Command]:
        if session is None:
            return []
        event_id, session_id = session
        return [("ZSCORE", shared_keys.booking_sessions(self.prefix, event_id), session_id)]

    # -- hold and confirm -------------------------------------------------------------
    @_translate
    async def hold_slot(
        self,
        hold: HoldRef,
        resident: Resident,
        hold_ms: int,
        now_ms: int = 0,
        channel: Channel = Channel.WEB,
    ) -> int:
        """Places left for ``channel`` after holding one for ``hold_ms`` from its pool (the
        web's by default: the stricter pool); raises :class:`ScriptRefused`."""
        command = self._hold_call(hold, resident, hold_ms, now_ms, channel)
        return int(_checked(await self._run(command)))

    @_translate
    async def claim_resident_and_hold(
        self,
        resident: Resident,
        hold: HoldRef,
        hold_ms: int,
        session: tuple[str, str] | None = None,
        now_ms: int = 0,
        channel: Channel = Channel.WEB,
    ) -> HoldAttempt:
        """The resident's hold pointer and the slot hold from ``channel``'s pool (and, when
        ``session`` (event id, session id) is given, that session's expiry), in one round
        trip.

        The two scripts live on different tags, so each runs on its own; the caller
        gives back whichever half it cannot use (a slot hold whose pointer was refused
        was never told to anyone, so nobody can confirm it). A Redis error in either half
        gives back the other half here and raises."""
        head = self._session_zscore(session)
        replies = await SCRIPTS.pipeline(
            self.wire,
            [
                *head,
                self._claim_pointer_call(resident, hold, hold_ms),
                self._hold_call(hold, resident, hold_ms, now_ms, channel),
            ],
        )
        score = replies[0] if head else None
        claimed, held = replies[-2:]
        failure = next((r for r in (score, claimed, held) if isinstance(r, Exception)), None)
        if failure is not None:
            back: list[Command] = []
            if not isinstance(held, Exception) and refusal_of(held) is None:
                back.append(self._release_hold_call(hold, resident))
            if not isinstance(claimed, Exception) and int(claimed[0]) == 0:
                back.append(self._release_pointer_call(resident, hold))
            if back:
                await SCRIPTS.pipeline(self.wire, back)
            raise failure
        code, current = cast(list[Any], claimed)
        taken = int(code) == 0
        refusal = refusal_of(held)
        return HoldAttempt(
            pointer_taken=taken,
            existing=None if taken else HoldRef.parse(_text(current)),
            left=None if refusal is not None else int(held),
            refusal=refusal,
            session_expiry_ms=_expiry(score),
        )

    @_translate
    async def claim_hold(
        self,
        hold: HoldRef,
        resident: Resident,
        grace_ms: int,
        session: tuple[str, str] | None = None,
        now_ms: int = 0,
    ) -> HoldClaim:
        """Extend a live hold so it cannot lapse while Postgres confirms it; when
        ``session`` (event id, session id) is given, its expiry rides in the same round trip."""
        head = self._session_zscore(session)
        replies = _raise_any(
            await SCRIPTS.pipeline(
                self.wire, [*head, self._claim_call(hold, resident, grace_ms, now_ms)]
            )
        )
        left = replies[-1]
        return HoldClaim(
            left_ms=None if refusal_of(left) is not None else int(left),
            session_expiry_ms=_expiry(replies[0]) if head else None,
        )

    @_translate
    async def finish_confirm(
        self, states: Sequence[SlotState], hold: HoldRef, resident: Resident
    ) -> None:
        """After commit: mirror the slot(s), drop the hold and the resident's pointer, in
        one pipelined round trip (each script atomic on its own tag; together they only
        tidy what Postgres decided)."""
        member = hold.member(resident)
        calls = [
            self._apply_call(st, member if st.slot_id == hold.slot_id else "") for st in states
        ]
        calls.append(self._release_pointer_call(resident, hold))
        _raise_any(await SCRIPTS.pipeline(self.wire, calls))

    @_translate
    async def give_back(
        self, hold: HoldRef, resident: Resident, *, place: bool = True, pointer: bool = True
    ) -> None:
        """Give a hold's place back and/or drop the resident's pointer to it, in one round
        trip (a refused confirm, a released hold, the unusable half of a hold attempt)."""
        calls = []
        if place:
            calls.append(self._release_hold_call(hold, resident))
        if pointer:
            calls.append(self._release_pointer_call(resident, hold))
        if calls:
            _raise_any(await SCRIPTS.pipeline(self.wire, calls))

    @_translate
    async def extend_hold(self, hold: HoldRef, resident: Resident, hold_ms: int) -> int:
        """Give the resident's live hold ``hold_ms`` more from now, once per hold; ms left
        after it. Raises :class:`ScriptRefused` (HOLD_EXPIRED, EXTENDED_BEFORE).

        The pointer decides first (its own tag); only then is the slot's hold extended to
        match, so a refused extension never keeps a place longer."""
        p = self.prefix
        command = SCRIPTS["extend_resident"].call(
            [
                self._pointer_key(resident),
                keys.resident_hold_extended(p, resident.municipality, resident.voucher),
            ],
            [hold.public, hold_ms],
        )
        _checked(await self._run(command))
        left = await self._run(self._claim_call(hold, resident, hold_ms, 0))
        return int(_checked(left))

    @_translate
    async def hold_left_ms(self, hold: HoldRef, resident: Resident) -> int | None:
        """Ms until the resident's hold lapses (None: it has), without extending it."""
        left = await self._run(self._claim_call(hold, resident, 0, 0))
        return None if refusal_of(left) is not None else int(left)

    @_translate
    async def resident_hold(self, resident: Resident) -> HoldRef | None:
        """The resident's live hold, if any."""
        raw = await self.wire.execute("GET", self._pointer_key(resident))
        return None if raw is None else HoldRef.parse(_text(raw))

    # -- slot inventory ---------------------------------------------------------------
    @_translate
    async def apply_slot(self, state: SlotState) -> bool:
        """Mirror Postgres; True when Redis took this version (False: it had a newer one)."""
        return bool(await self._run(self._apply_call(state)))

    @_translate
    async def apply_slots(self, states: Sequence[SlotState]) -> None:
        """Mirror many slots, ``APPLY_BATCH`` per round trip (a rebuild of a city's
        inventory, a published week): one round trip per slot would make a rebuild of
        tens of thousands of slots take seconds of Redis latency."""
        for start in range(0, len(states), APPLY_BATCH):
            batch = states[start : start + APPLY_BATCH]
            _raise_any(await SCRIPTS.pipeline(self.wire, [self._apply_call(st) for st in batch]))

    @_translate
    async def slot_left(
        self, slot_ids: Sequence[str], channel: Channel = Channel.WEB
    ) -> dict[str, int | None]:
        """Places ``channel`` can hold now per slot (web residents: the web pool's; operators:
        every place; 0 when closed or outside its booking window; None where Redis has no
        inventory); read-only, pipelined. A guide: the hold script decides."""
        if not slot_ids:
            return {}
        now_ms = await self.now_ms()
        p = self.prefix
        commands: list[Command] = []
        after = f"({now_ms}"
        for sid in slot_ids:
            commands.append(("HMGET", keys.slot_inventory(p, sid), *_LEFT_FIELDS))
            commands.append(("ZCOUNT", keys.slot_holds(p, sid), after, "+inf"))
            commands.append(("ZCOUNT", keys.slot_phone_holds(p, sid), after, "+inf"))
        replies = await self.wire.pipeline(commands)
        out: dict[str, int | None] = {}
        for index, sid in enumerate(slot_ids):
            cap, booked, closed, from_ms, until_ms, phone, kept, release_ms = replies[3 * index]
            if cap is None:
                out[sid] = None
                continue
            state = SlotState(
                sid, 0, int(cap), int(booked), closed == b"1", int(from_ms), int(until_ms),
                int(phone or 0), int(kept or 0), int(release_ms or 0),
            )  # fmt: skip
            out[sid] = state.left(
                channel,
                now_ms,
                web_held=int(replies[3 * index + 1]),
                phone_held=int(replies[3 * index + 2]),
            )
        return out

    @_translate
    async def now_ms(self) -> int:
        seconds, micros = await self.wire.execute("TIME")
        return int(seconds) * 1000 + int(micros) // 1000

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
        """Live sessions after this one joined; raises :class:`ScriptRefused` (PASS_USED)."""
        p = self.prefix
        command = SCRIPTS["open_session"].call(
            [shared_keys.used_passes(p, event_id), shared_keys.booking_sessions(p, event_id)],
            [pass_id, session_id, session_ttl_ms, now_ms, pass_keep_ms],
        )
        return int(_checked(await self._run(command)))

    @_translate
    async def pass_used(self, event_id: str, pass_id: str) -> bool:
        key = shared_keys.used_passes(self.prefix, event_id)
        return await self.wire.execute("ZSCORE", key, pass_id) is not None

    def _sessions_key(self, event_id: str, lookup: bool) -> str:
        if lookup:
            return keys.lookup_sessions(self.prefix, event_id)
        return shared_keys.booking_sessions(self.prefix, event_id)

    @_translate
    async def open_lookup(self, event_id: str, session_id: str, now_ms: int, ttl_ms: int) -> None:
        """Register a "my bookings" session for ``ttl_ms`` from ``now_ms`` (unix ms, the
        clock sessions are checked against), pruning lapsed ones, in one round trip."""
        key = keys.lookup_sessions(self.prefix, event_id)
        await self.wire.pipeline(
            [("ZADD", key, now_ms + ttl_ms, session_id), ("ZREMRANGEBYSCORE", key, "-inf", now_ms)]
        )

    @_translate
    async def session_expiry_ms(
        self, event_id: str, session_id: str, *, lookup: bool = False
    ) -> int | None:
        key = self._sessions_key(event_id, lookup)
        return _expiry(await self.wire.execute("ZSCORE", key, session_id))

    @_translate
    async def end_session(self, event_id: str, session_id: str, *, lookup: bool = False) -> None:
        await self.wire.execute("ZREM", self._sessions_key(event_id, lookup), session_id)

    async def _count(self, key: str, window_ms: int, commit: bool) -> Counter:
        reply = await self._run(SCRIPTS["hit_counter"].call([key], [window_ms, int(commit)]))
        count, ttl = cast(list[Any], reply)
        return Counter(int(count), int(ttl))

    @_translate
    async def client_attempts(self, client: str, window_ms: int) -> Counter:
        """Count one identity attempt (session start, staff login) from a client address."""
        return await self._count(keys.throttle_client(self.prefix, client), window_ms, True)

    @_translate
    async def voucher_failures(
        self, resident: Resident, window_ms: int, *, commit: bool
    ) -> Counter:
        """Failed identity attempts for one voucher (``commit``: count one more)."""
        key = keys.throttle_voucher(self.prefix, resident.municipality, resident.voucher)
        return await self._count(key, window_ms, commit)

    # -- waitroom handoff and epoch ---------------------------------------------------
    @_translate
    async def publish_event_status(
        self, event_id: str, remaining: int, p95_ms: float, now_ms: int
    ) -> None:
        """Write the event's inventory and load hashes and prune its lapsed sessions, in
        one round trip."""
        p = self.prefix
        await self.wire.pipeline(
            [
                ("ZREMRANGEBYSCORE", shared_keys.booking_sessions(p, event_id), "-inf", now_ms),
                (
                    "HSET",
                    shared_keys.event_inventory(p, event_id),
                    "remaining",
                    remaining,
                    "updated_ms",
                    now_ms,
                ),
                (
                    "HSET",
                    shared_keys.booking_load(p, event_id),
                    "p95_ms",
                    round(p95_ms, 1),
                    "updated_ms",
                    now_ms,
                ),
            ]
        )

    @_translate
    async def epoch(self) -> str | None:
        raw = await self.wire.execute("GET", keys.epoch(self.prefix))
        return None if raw is None else _text(raw)

    @_translate
    async def epoch_and_marks(
        self, event_ids: Sequence[str]
    ) -> tuple[str | None, dict[str, str | None]]:
        """The epoch, and what each event's slots were last mirrored from (None: not known),
        in one round trip."""
        p = self.prefix
        commands: list[Command] = [("GET", keys.epoch(p))]
        if event_ids:
            commands.append(("HMGET", keys.event_marks(p), *event_ids))
        replies = _raise_any(await self.wire.pipeline(commands))
        epoch = None if replies[0] is None else _text(replies[0])
        marks = replies[1] if event_ids else []
        return epoch, {
            ev: None if raw is None else _text(raw)
            for ev, raw in zip(event_ids, marks, strict=True)
        }

    @_translate
    async def remember_marks(self, marks: Mapping[str, str]) -> None:
        """Record what the events' slots were just mirrored from."""
        if marks:
            await self.wire.execute("HSET", keys.event_marks(self.prefix), *_flat(marks))

    @_translate
    async def set_epoch(self, value: str, marks: Mapping[str, str] | None = None) -> None:
        """Mark the inventory rebuilt (with what its events were then), one round trip."""
        commands: list[Command] = [("SET", keys.epoch(self.prefix), value)]
        if marks:
            commands.append(("HSET", keys.event_marks(self.prefix), *_flat(marks)))
        _raise_any(await self.wire.pipeline(commands))
