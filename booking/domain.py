"""Booking's nouns, shared by every layer: who acts, slots, holds, and the scripts' refusals.

The bottom of the package: it imports nothing of booking, so the web layer, the services
and the stores can all speak of the same things without importing each other.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum


class Channel(StrEnum):
    WEB = "web"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Resident:
    """A resident is their voucher within their municipality."""

    municipality: str
    voucher: str

    @property
    def ref(self) -> str:
        return f"{self.municipality}:{self.voucher}"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: a resident on the web, or a staff member (operator, clinic, admin)."""

    kind: str  # "resident" | "staff"
    actor_id: str
    municipality: str
    channel: Channel = Channel.WEB
    staff_id: str | None = None
    # Residents act inside one event (their pass); staff across their municipality.
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """A resident's booking session inside one event.

    ``admitted``: opened with an admission pass, so it may hold and book; a session opened
    from "my bookings" without queueing may only see and cancel. ``members``: household
    members (vouchers of the same municipality, each checked against the registry) the
    resident may book for."""

    session_id: str
    event_id: str
    resident: Resident
    admitted: bool = True
    members: tuple[str, ...] = ()
    started_s: int = 0

    def household(self) -> list[Resident]:
        """The resident first, then the members they added."""
        muni = self.resident.municipality
        return [self.resident, *(Resident(muni, v) for v in self.members)]

    def member(self, voucher: str | None) -> Resident | None:
        """The household resident with this voucher (None: the resident themself)."""
        if voucher is None or voucher == self.resident.voucher:
            return self.resident
        return Resident(self.resident.municipality, voucher) if voucher in self.members else None

    @property
    def actor(self) -> Actor:
        return Actor(
            kind="resident",
            actor_id=self.resident.ref,
            municipality=self.resident.municipality,
            event_id=self.event_id,
        )


@dataclass(frozen=True, slots=True)
class ClinicStaff:
    """A clinic's staff member: publishes and sees only that clinic's slots and bookings."""

    staff_id: str
    municipality: str
    clinic_id: str


@dataclass(frozen=True, slots=True)
class HoldRef:
    """One hold, and the two strings it travels as.

    ``public`` is ``<slot id>.<token>``: what the client holds and what the resident's
    hold pointer stores (the slot travels with it, so confirm needs no lookup).
    ``member(resident)`` is ``<token>:<municipality>:<voucher>``: its entry in the slot's
    holds ZSET, bound to the resident, so nobody else can confirm it."""

    slot_id: str
    token: str

    @classmethod
    def new(cls, slot_id: str) -> HoldRef:
        return cls(slot_id, secrets.token_hex(16))

    @classmethod
    def parse(cls, public: str) -> HoldRef | None:
        """The hold a well-formed public id names, else None."""
        slot_id, dot, token = public.partition(".")
        if not dot or len(slot_id) != 36 or len(token) != 32:
            return None
        return cls(slot_id, token)

    @property
    def public(self) -> str:
        return f"{self.slot_id}.{self.token}"

    def member(self, resident: Resident) -> str:
        return f"{self.token}:{resident.ref}"


def places_left(
    channel: Channel,
    *,
    capacity: int,
    booked: int,
    booked_phone: int,
    kept: int,
    web_held: int = 0,
    phone_held: int = 0,
) -> int:
    """Places one more booking of ``channel`` could take, under promise "the phone keeps its
    share": ``kept`` places (0 once released) are the phone pool; phone bookings and holds
    use it first and overflow into the web pool, web ones use only the web pool, so the
    phone occupies max(booked_phone + phone_held, kept) places. An operator may take any
    place left; a web resident only what the phone does not occupy.

    For the counts shown: the hold script (booking/lua/hold_slot-3.lua) and the booking
    statement (booking.store.pg.WEB_LEFT_SQL) decide, each with this same rule."""
    if channel is Channel.OPERATOR:
        return capacity - booked - web_held - phone_held
    web_used = booked - booked_phone + web_held
    return capacity - web_used - max(booked_phone + phone_held, kept)


@dataclass(frozen=True, slots=True)
class SlotState:
    """A slot as Postgres has it, in the shape Redis mirrors.

    ``booked_phone``: how many of ``booked`` an operator made; ``kept``: the places its
    event keeps for the phone until ``release_ms`` (far in the future when it keeps them
    for as long as the slot can be booked); see :func:`places_left`."""

    slot_id: str
    version: int
    capacity: int
    booked: int
    closed: bool
    from_ms: int
    until_ms: int
    booked_phone: int = 0
    kept: int = 0
    release_ms: int = 0

    def kept_at(self, now_ms: int) -> int:
        """Places kept for the phone at ``now_ms`` (none from the release on)."""
        return self.kept if now_ms < self.release_ms else 0

    def left(self, channel: Channel, now_ms: int, *, web_held: int = 0, phone_held: int = 0) -> int:
        """Places ``channel`` could hold at ``now_ms`` with these live holds: 0 when closed
        or outside the booking window (the hold would refuse)."""
        if self.closed or not self.from_ms <= now_ms < self.until_ms:
            return 0
        found = places_left(
            channel,
            capacity=self.capacity,
            booked=self.booked,
            booked_phone=self.booked_phone,
            kept=self.kept_at(now_ms),
            web_held=web_held,
            phone_held=phone_held,
        )
        return max(0, found)


@dataclass(frozen=True, slots=True)
class SlotMeta:
    """What never changes about a slot: who it belongs to and what it offers."""

    slot_id: str
    event_id: str
    municipality: str
    clinic_id: str
    area: str
    starts_at: datetime
    duration_min: int
    dose_number: int
    vaccine_code: str


@dataclass(frozen=True, slots=True)
class Clinic:
    clinic_id: str
    name_ja: str
    name_en: str
    area: str
    address: str


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """A slot a clinic asks to publish."""

    event_id: str
    starts_at: datetime
    duration_min: int
    capacity: int
    vaccine_code: str
    dose_number: int
    publish_from: datetime | None = None
    publish_until: datetime | None = None


class Refusal(IntEnum):
    """Negative replies of booking's Lua scripts (booking/lua/*.lua): each is a check
    that refused before the script wrote anything."""

    NOT_LOADED = -1
    CLOSED = -2
    NOT_OPEN = -3
    ENDED = -4
    FULL = -5
    HOLD_EXPIRED = -6
    HOLD_EXISTS = -7
    PASS_USED = -8
    EXTENDED_BEFORE = -9
