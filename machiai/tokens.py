"""Signed tokens: the one module that owns itsdangerous and every token's payload layout.

Both services sign and verify here: the waitroom's tickets and admission passes, booking's
resident sessions and staff tokens. A salt per purpose keeps a ticket from passing as an
admission pass (or a staff token); SHA-256 HMAC; a list of keys so keys rotate without
dropping the line (sign with the newest, verify with all); ``max_age`` on every load.
Payloads are short JSON arrays because tickets ride in cookies and URLs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from itsdangerous import Signer as ItsSigner
from itsdangerous.encoding import bytes_to_int, int_to_bytes


class Purpose(StrEnum):
    TICKET = "machiai.ticket.v1"
    PASS = "machiai.pass.v1"
    SESSION = "machiai.session.v1"
    STAFF = "machiai.staff.v1"


class TokenError(Exception):
    """A token that grants nothing; ``code`` tells the client why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def base64_encode(data: bytes) -> bytes:
    """itsdangerous's URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def base64_decode(data: bytes) -> bytes:
    """itsdangerous's URL-safe unpadded base64, decoded strictly (no stray characters)."""
    return binascii.a2b_base64(
        data.translate(_FROM_URLSAFE) + b"=" * (-len(data) % 4), strict_mode=True
    )


class _CompactJSON:
    @staticmethod
    def dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)

    @staticmethod
    def loads(data: str | bytes) -> Any:
        return json.loads(data)


class Signer:
    """Signs and verifies payloads for one purpose with a rotating list of keys.

    The wire format is itsdangerous's ``URLSafeTimedSerializer`` (SHA-256 HMAC,
    "django-concat" key derivation, salt = purpose): tokens from either side load
    on the other. Keys are derived once here instead of on every call, because
    verifying a ticket is the hot path of every status poll.
    """

    def __init__(self, keys: Sequence[str], purpose: Purpose) -> None:
        if not keys:
            raise ValueError("at least one signing key is required")
        self.purpose = purpose
        # itsdangerous signs with the *last* key and verifies with all; our keys come newest first.
        self._serializer = URLSafeTimedSerializer(
            list(reversed(keys)),
            salt=purpose.value,
            serializer=_CompactJSON,
            signer_kwargs={"digest_method": hashlib.sha256},
        )
        self._derived = tuple(
            ItsSigner(key, salt=purpose.value, digest_method=hashlib.sha256).derive_key()
            for key in keys
        )

    def dumps(self, payload: list[Any], signed_at_s: int | None = None) -> str:
        """The signed token; ``signed_at_s`` (unix seconds, default now) lets a token
        be signed again byte for byte (an admission pass handed out a second time)."""
        stamp = int(time.time()) if signed_at_s is None else signed_at_s
        value = base64_encode(_CompactJSON.dumps(payload).encode("utf-8"))
        signed = value + b"." + base64_encode(int_to_bytes(stamp))
        mac = hmac.digest(self._derived[0], signed, "sha256")
        return (signed + b"." + base64_encode(mac)).decode("ascii")

    def loads(self, token: str, max_age_s: int) -> tuple[list[Any], int]:
        """The payload and its signing time (unix seconds); raises :class:`TokenError`."""
        name = self.purpose.name.lower()
        try:
            signed, _, sig = token.encode("ascii").rpartition(b".")
            value, _, stamp = signed.rpartition(b".")
            mac = base64_decode(sig)
            if not value or not any(
                hmac.compare_digest(hmac.digest(key, signed, "sha256"), mac)
                for key in self._derived
            ):
                raise TokenError("token_invalid", f"{name} is not valid")
            signed_at = bytes_to_int(base64_decode(stamp))
            age_s = int(time.time()) - signed_at
            if age_s > max_age_s:
                raise TokenError("token_expired", f"{name} expired")
            if age_s < 0:
                raise TokenError("token_invalid", f"{name} is not valid")
            if value.startswith(b"."):  # itsdangerous compresses payloads when that is shorter
                data = zlib.decompress(base64_decode(value[1:]))
            else:
                data = base64_decode(value)
            payload = _CompactJSON.loads(data)
        except (BadData, ValueError, TypeError, UnicodeError, binascii.Error, zlib.error):
            raise TokenError("token_invalid", f"{name} is not valid") from None
        if not isinstance(payload, list):
            raise TokenError("token_invalid", f"{name} is not valid")
        return payload, signed_at

    def loads_reference(self, token: str, max_age_s: int) -> tuple[list[Any], int]:
        """The same check done by itsdangerous itself (for tests of the fast path)."""
        try:
            payload, signed_at = self._serializer.loads(
                token, max_age=max_age_s, return_timestamp=True
            )
        except SignatureExpired:
            raise TokenError("token_expired", f"{self.purpose.name.lower()} expired") from None
        except (BadData, ValueError, TypeError, UnicodeError):
            raise TokenError("token_invalid", f"{self.purpose.name.lower()} is not valid") from None
        if not isinstance(payload, list):
            raise TokenError("token_invalid", f"{self.purpose.name.lower()} is not valid")
        return payload, int(signed_at.timestamp())


@dataclass(frozen=True, slots=True)
class Ticket:
    """A place in one event's line: arrival order is ``arrival_no``."""

    event_id: str
    arrival_no: int
    ticket_id: str
    prequeue: bool
    issued_at_s: int = 0


@dataclass(frozen=True, slots=True)
class AdmissionPass:
    """Admission into booking for one ticket of one event; opens one booking session."""

    event_id: str
    ticket_id: str
    pass_id: str
    issued_at_s: int = 0


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """A resident's booking session in one event, as one resident.

    ``admitted``: opened with an admission pass (may hold and book); otherwise opened from
    "my bookings" without queueing (may see and cancel). ``members``: household members'
    vouchers the resident added (each checked against the registry). ``started_s``: when
    the session began (a token signed again for a new member keeps it)."""

    session_id: str
    event_id: str
    municipality_code: str
    voucher: str
    admitted: bool = True
    started_s: int = 0
    members: tuple[str, ...] = ()
    issued_at_s: int = 0


@dataclass(frozen=True, slots=True)
class StaffClaims:
    """Who a staff token speaks for: role and tenant (and clinic, for clinic staff).

    ``generation``: the staff row's generation when the token was signed; the token holds
    only while the row still has it (machiai/staff_generation.py). 1 is a new row's."""

    staff_id: str
    municipality_code: str
    role: str  # "admin" | "operator" | "clinic"
    clinic_id: str | None
    generation: int = 1
    issued_at_s: int = 0


STAFF_ROLES = frozenset({"admin", "operator", "clinic"})


def new_id() -> str:
    """128 random bits as 32 hex characters (the shape of uuid4().hex, cheaper to make)."""
    return secrets.token_hex(16)


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise TokenError("token_invalid", "malformed token payload")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TokenError("token_invalid", "malformed token payload")
    return value


class Tokens:
    """The typed tokens of machiai, all signed with the same rotating keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.ticket = Signer(keys, Purpose.TICKET)
        self.admission = Signer(keys, Purpose.PASS)
        self.session = Signer(keys, Purpose.SESSION)
        self.staff = Signer(keys, Purpose.STAFF)

    def dump_ticket(self, ticket: Ticket) -> str:
        return self.ticket.dumps(
            [ticket.event_id, ticket.arrival_no, ticket.ticket_id, int(ticket.prequeue)]
        )

    def load_ticket(self, token: str, max_age_s: int, event_id: str | None = None) -> Ticket:
        payload, signed_at = self.ticket.loads(token, max_age_s)
        if len(payload) != 4:
            raise TokenError("token_invalid", "malformed ticket")
        ticket = Ticket(
            _str(payload[0]), _int(payload[1]), _str(payload[2]), bool(_int(payload[3])), signed_at
        )
        if event_id is not None and ticket.event_id != event_id:
            raise TokenError("token_wrong_event", "ticket belongs to another event")
        return ticket

    def dump_pass(self, admission: AdmissionPass) -> str:
        """Signed at ``admission.issued_at_s`` when given (the same pass again gives the
        same token), else now."""
        return self.admission.dumps(
            [admission.event_id, admission.ticket_id, admission.pass_id],
            admission.issued_at_s or None,
        )

    def load_pass(self, token: str, max_age_s: int, event_id: str | None = None) -> AdmissionPass:
        payload, signed_at = self.admission.loads(token, max_age_s)
        if len(payload) != 3:
            raise TokenError("token_invalid", "malformed pass")
        admission = AdmissionPass(_str(payload[0]), _str(payload[1]), _str(payload[2]), signed_at)
        if event_id is not None and admission.event_id != event_id:
            raise TokenError("token_wrong_event", "pass belongs to another event")
        return admission

    def dump_session(self, claims: SessionClaims) -> str:
        started = claims.started_s or int(time.time())
        return self.session.dumps(
            [
                claims.session_id,
                claims.event_id,
                claims.municipality_code,
                claims.voucher,
                int(claims.admitted),
                started,
                list(claims.members),
            ]
        )

    def load_session(self, token: str, max_age_s: int) -> SessionClaims:
        """The session, unless its token or the session itself is older than ``max_age_s``."""
        payload, signed_at = self.session.loads(token, max_age_s)
        if len(payload) != 7 or not isinstance(payload[6], list) or len(payload[6]) > 8:
            raise TokenError("token_invalid", "malformed session")
        started = _int(payload[5])
        if started > signed_at:  # we never sign a session before it starts
            raise TokenError("token_invalid", "malformed session")
        if int(time.time()) - started > max_age_s:  # signed again later: the start still counts
            raise TokenError("token_expired", "session expired")
        return SessionClaims(
            _str(payload[0]),
            _str(payload[1]),
            _str(payload[2]),
            _str(payload[3]),
            admitted=bool(_int(payload[4])),
            started_s=started,
            members=tuple(_str(m) for m in payload[6]),
            issued_at_s=signed_at,
        )

    def dump_staff(self, claims: StaffClaims) -> str:
        return self.staff.dumps(
            [
                claims.staff_id,
                claims.municipality_code,
                claims.role,
                claims.clinic_id or "",
                claims.generation,
            ]
        )

    def load_staff(self, token: str, max_age_s: int) -> StaffClaims:
        """The claims of a staff token; one without a generation (signed before staff
        generations existed) is malformed, so nobody keeps a session that cannot be ended."""
        payload, signed_at = self.staff.loads(token, max_age_s)
        if len(payload) != 5 or payload[2] not in STAFF_ROLES:
            raise TokenError("token_invalid", "malformed staff token")
        clinic = payload[3]
        if not isinstance(clinic, str):
            raise TokenError("token_invalid", "malformed staff token")
        return StaffClaims(
            _str(payload[0]),
            _str(payload[1]),
            payload[2],
            clinic or None,
            generation=_int(payload[4]),
            issued_at_s=signed_at,
        )
