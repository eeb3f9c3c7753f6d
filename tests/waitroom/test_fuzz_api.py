"""Schemathesis against the waitroom over real HTTP: every operation of its document, with
a ticket joined before the run (the line's operations) and an administrator's token.

Asserted for every request: no 5xx, every answer's status, headers and body as the
document says, every error in the ``{"error": {"code", "message"}}`` shape, malformed
input refused, well-formed input not refused for its form. The run has a database and a
Redis prefix of its own; the seeded events' ids are offered half of the time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from machiai.tokens import StaffClaims, Tokens
from tests import fuzz
from tests.servers import PostgresForTests
from tests.waitroom.conftest import add_admins, admin_id
from waitroom.app import create_app
from waitroom.settings import WaitroomSettings
from waitroom.web.openapi import DOCUMENT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MUNICIPALITY = "131001"
OPEN, LATER = "fuzz-open", "fuzz-later"
# Operations whose refusals include rules no schema can state (times out of order): a 422
# for well-formed input is an answer there, not a document that says too little.
RULES_BEYOND_THE_SCHEMA = {"POST /admin/events", "PATCH /admin/events/{event_id}"}
SCHEMA = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=fuzz.config(
        dictionaries={"events": {"values": [OPEN, LATER]}},
        parameters={"path.event_id": {"dictionary": "events", "probability": 0.5}},
    ),
)
ADMIN = Tokens([fuzz.SECRET_KEY]).dump_staff(
    StaffClaims(admin_id(MUNICIPALITY), MUNICIPALITY, "admin", None)
)


@dataclass
class Server:
    base: str
    ticket: str
    tally: fuzz.Tally


async def seed(database_url: str) -> None:
    """An event open now and one that opens tomorrow, in the administrator's municipality."""
    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO municipalities (code, name_ja, name_en) VALUES ($1, '市', 'City')",
            MUNICIPALITY,
        )
        for event_id, opens, state in (
            (OPEN, now - timedelta(minutes=5), "open"),
            (LATER, now + timedelta(days=1), "scheduled"),
        ):
            await conn.execute(
                "INSERT INTO events (id, municipality_code, name_ja, name_en, prequeue_at, "
                "opens_at, closes_at, admit_per_minute, max_active, state) "
                "VALUES ($1, $2, '接種予約', 'Bookings', $3, $3, $4, 600, 1000, $5)",
                event_id, MUNICIPALITY, opens, now + timedelta(days=30), state,
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
    with fuzz.own_backends(postgres, redis_url, tmp_path_factory.mktemp("fuzz-wr")) as env:
        # The join limit has tests of its own; here it would only turn the run into 429s.
        settings = replace(WaitroomSettings.from_env(env), join_per_minute=0)
        asyncio.run(seed(settings.core.database_url))
        asyncio.run(add_admins(settings.core.database_url))  # the one ADMIN speaks for
        with fuzz.serving(create_app(settings)) as base:
            joined = httpx.post(
                f"{base}/events/{OPEN}/join", headers={"accept": "application/json"}, timeout=10
            )
            assert joined.status_code == 201, joined.text
            running = Server(base, joined.json()["ticket"], fuzz.Tally("waitroom"))
            yield running
            fuzz.show(pytestconfig, running.tally)


def credentials(server: Server, case: Case[Any]) -> dict[str, str]:
    """JSON answers (a browser gets pages and redirects); the administrator's token on
    the admin API, the ticket on the line's operations that need one."""
    headers = {"Accept": "application/json"}
    security = case.operation.definition.raw.get("security", [])
    if {"staff": []} in security:
        headers["Authorization"] = f"Bearer {ADMIN}"
    elif {"ticket": []} in security:
        headers["X-Machiai-Ticket"] = server.ticket
    return headers


@SCHEMA.parametrize()
@settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_waitroom_api_keeps_to_its_document(case: Case[Any], server: Server) -> None:
    response = fuzz.call(case, server.base, credentials(server, case), RULES_BEYOND_THE_SCHEMA)
    server.tally.count(case, response)


def test_the_fuzzed_document_is_the_served_one(server: Server) -> None:
    served = httpx.get(f"{server.base}/openapi.json", timeout=10).json()
    assert served == SCHEMA.raw_schema
