"""Schemathesis against booking over real HTTP: every operation of its document, as a
resident (a fresh session per request), an operator, a clinic and an administrator.

Asserted for every request: no 5xx, every answer's status, headers and body as the
document says, every error in the ``{"error": {"code", "message"}}`` shape, malformed
input refused, well-formed input not refused for its form. The run has a database and a
Redis prefix of its own, seeded with fixed ids (an event, slots, bookings, vouchers) that
are offered half of the time, so that requests reach past the lookups.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from booking.app import ENDPOINTS, create_app
from booking.http import JST
from booking.openapi import build_openapi
from booking.settings import BookingSettings
from machiai.passwords import hash_password
from machiai.tokens import AdmissionPass, Tokens
from tests import fuzz
from tests.booking.client import mint_pass, staff_token
from tests.booking.factory import BIRTH, PASSWORD, voucher
from tests.servers import PostgresForTests

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MUNICIPALITY, OTHER = "131001", "271004"
EVENT_ID, OTHER_EVENT_ID = "fuzz-open", "fuzz-other"
CLINIC_ID = "00000000-0000-4000-8000-00000000c001"
SLOT_IDS = [f"00000000-0000-4000-8000-0000000005{n:02d}" for n in range(3)]
BOOKING_IDS = [f"00000000-0000-4000-8000-0000000b00{n:02d}" for n in range(2)]
NOW = datetime.now(UTC).replace(microsecond=0)
STARTS = [NOW + timedelta(days=2 + n, hours=1) for n in range(3)]
DAYS = sorted({s.astimezone(JST).date().isoformat() for s in STARTS})
SESSION_VOUCHER = voucher(40)  # whom the runs sign in as (no run's guess throttles it)
STAFF_IDS = {
    "operator": "00000000-0000-4000-8000-00000000f001",
    "clinic": "00000000-0000-4000-8000-00000000f002",
    "admin": "00000000-0000-4000-8000-00000000f003",
}
TOKENS = Tokens([fuzz.SECRET_KEY])
# Admission passes for the run to open sessions with (each opens one).
PASSES = [
    TOKENS.dump_pass(AdmissionPass(EVENT_ID, uuid.uuid4().hex, uuid.uuid4().hex)) for _ in range(20)
]

# Operations whose refusals include rules no schema can state (another municipality's
# event, a slot in the past, times out of order, a CSV's rows): a 422 for well-formed
# input is an answer there, not a document that says too little.
RULES_BEYOND_THE_SCHEMA = {
    "POST /api/clinic/slots",
    "POST /api/clinic/slots/plan",
    "POST /api/clinic/slots/import",
    "POST /api/registry/import",
    "GET /api/exports/ledger",  # the last day not before the first, at most ten years
}
REAL_IDS = {
    "body.pass": "passes",
    "body.login": "logins",
    "body.password": "passwords",
    "path.event_id": "events",
    "query.event_id": "events",
    "body.event_id": "events",
    "body.slot_id": "slots",
    "path.slot_id": "slots",
    "path.booking_id": "bookings",
    "body.voucher": "vouchers",
    "path.voucher": "vouchers",
    "body.birth_date": "births",
    "query.date": "days",
}
# The document the server serves, built by the same function (a test below compares).
SCHEMA = schemathesis.openapi.from_dict(
    build_openapi(ENDPOINTS),
    config=fuzz.config(
        dictionaries={
            "events": {"values": [EVENT_ID, OTHER_EVENT_ID]},
            "passes": {"values": PASSES},
            "logins": {"values": [f"fuzz-{role}" for role in STAFF_IDS]},
            "passwords": {"values": [PASSWORD]},
            "slots": {"values": SLOT_IDS},
            "bookings": {"values": BOOKING_IDS},
            "vouchers": {"values": [voucher(n) for n in range(5)]},
            "births": {"values": [BIRTH.isoformat()]},
            "days": {"values": DAYS},
        },
        parameters={k: {"dictionary": v, "probability": 0.5} for k, v in REAL_IDS.items()},
    ),
)


@dataclass
class Server:
    base: str
    settings: BookingSettings
    staff: dict[str, dict[str, str]]  # role -> Authorization header
    tally: fuzz.Tally


async def seed(database_url: str) -> None:
    """Two municipalities with an event each, a clinic, slots, two bookings, the registry
    and a staff member per role (login ``fuzz-<role>``)."""
    conn = await asyncpg.connect(database_url)
    try:
        for code, event_id in ((MUNICIPALITY, EVENT_ID), (OTHER, OTHER_EVENT_ID)):
            await conn.execute(
                "INSERT INTO municipalities (code, name_ja, name_en) VALUES ($1, '市', 'City')",
                code,
            )
            await conn.execute(
                "INSERT INTO events (id, municipality_code, name_ja, name_en, prequeue_at, "
                "opens_at, closes_at, admit_per_minute, max_active, eligibility_group, state) "
                "VALUES ($1, $2, 'イベント', 'Event', $3, $3, $4, 60, 100, '65+', 'open')",
                event_id, code, NOW - timedelta(hours=1), NOW + timedelta(days=60),
            )  # fmt: skip
        await conn.execute(
            "INSERT INTO clinics (id, municipality_code, name_ja, name_en, area) "
            "VALUES ($1, $2, '診療所', 'Clinic', '中区')",
            uuid.UUID(CLINIC_ID), MUNICIPALITY,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO vaccines (code, name_ja, name_en, dose_interval_days, max_doses) "
            "VALUES ('comirnaty', 'コミナティ', 'Comirnaty', 21, 2)"
        )
        await conn.executemany(
            "INSERT INTO registry (municipality_code, voucher_number, birth_date, "
            "eligibility_groups) VALUES ($1, $2, $3, '{65+}')",
            [(MUNICIPALITY, voucher(n), BIRTH) for n in range(50)],
        )
        for slot_id, starts in zip(SLOT_IDS, STARTS, strict=True):
            await conn.execute(
                "INSERT INTO slots (id, clinic_id, event_id, starts_at, duration_min, capacity, "
                "dose_number, vaccine_code) VALUES ($1, $2, $3, $4, 30, 50, 1, 'comirnaty')",
                uuid.UUID(slot_id), uuid.UUID(CLINIC_ID), EVENT_ID, starts,
            )  # fmt: skip
        for n, booking_id in enumerate(BOOKING_IDS):
            await conn.execute(
                "INSERT INTO bookings (id, confirmation_code, slot_id, municipality_code, "
                "voucher_number, dose_number, vaccine_code, slot_starts_at, channel) "
                "VALUES ($1, $2, $3, $4, $5, 1, 'comirnaty', $6, 'web')",
                uuid.UUID(booking_id), f"FUZZ{n:04d}", uuid.UUID(SLOT_IDS[0]),
                MUNICIPALITY, voucher(30 + n), STARTS[0],
            )  # fmt: skip
        await conn.execute(
            "UPDATE slots SET booked = $2 WHERE id = $1", uuid.UUID(SLOT_IDS[0]), len(BOOKING_IDS)
        )
        for role, staff_id in STAFF_IDS.items():
            await conn.execute(
                "INSERT INTO staff (id, municipality_code, login, display_name, role, clinic_id, "
                "password_hash) VALUES ($1, $2, $3, $3, $4, $5, $6)",
                uuid.UUID(staff_id), MUNICIPALITY, f"fuzz-{role}", role,
                uuid.UUID(CLINIC_ID) if role == "clinic" else None, hash_password(PASSWORD),
            )  # fmt: skip
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def server(
    postgres: PostgresForTests,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[Server]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz-booking")
    with fuzz.own_backends(postgres, redis_url, data_dir) as env:
        # Throttles have tests of their own; here they would only turn the run into 429s.
        settings = BookingSettings.from_env({**env, "BOOKING_THROTTLE_CLIENT_LIMIT": "1000000"})
        asyncio.run(seed(settings.core.database_url))
        staff = {
            role: staff_token(
                settings, staff_id, MUNICIPALITY, role, CLINIC_ID if role == "clinic" else None
            )
            for role, staff_id in STAFF_IDS.items()
        }
        with fuzz.serving(create_app(settings)) as base:
            running = Server(base, settings, staff, fuzz.Tally("booking"))
            yield running
            fuzz.show(pytestconfig, running.tally)


def open_session(server: Server) -> dict[str, str]:
    r = httpx.post(
        f"{server.base}/api/sessions",
        json={
            "pass": mint_pass(server.settings, EVENT_ID),
            "voucher": SESSION_VOUCHER,
            "birth_date": BIRTH.isoformat(),
        },
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['session']}"}


def credentials(server: Server, case: Case[Any]) -> dict[str, str]:
    """The staff token of the operation's role; for a resident's operation a fresh session
    each time (the run ends sessions, and a session may lapse)."""
    tags = case.operation.tags or []
    for role in ("operator", "clinic", "admin"):
        if role in tags:
            return server.staff[role]
    if "resident" in tags and case.operation.label != "POST /api/sessions":
        return open_session(server)
    return {}


@SCHEMA.parametrize()
@settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_booking_api_keeps_to_its_document(case: Case[Any], server: Server) -> None:
    response = fuzz.call(case, server.base, credentials(server, case), RULES_BEYOND_THE_SCHEMA)
    server.tally.count(case, response)


def test_the_fuzzed_document_is_the_served_one(server: Server) -> None:
    served = httpx.get(f"{server.base}/openapi.json", timeout=10).json()
    assert served == SCHEMA.raw_schema
    assert date.fromisoformat(DAYS[0]) > NOW.date()
