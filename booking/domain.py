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
