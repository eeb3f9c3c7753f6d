"""Join, poll, admit, enter: the whole path once, through HTTP."""

from __future__ import annotations

import asyncpg

from machiai.tokens import Tokens
from tests.waitroom.conftest import AppFactory, FakeClock, add_event, line_of, running

JSON = {"accept": "application/json", "cookie": "x=1"}


async def test_join_poll_admit_enter(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock, tokens: Tokens
) -> None:
    event_id = await add_event(db, rate=60)
    app = make_app()
    async with running(app) as client:
        joined = [(await client.post(f"/events/{event_id}/join", headers=JSON)) for _ in range(3)]
        assert [r.status_code for r in joined] == [201, 201, 201]
        first, _, third = (r.json() for r in joined)
        assert first["state"] == "admitted"  # empty line: straight through
        assert (third["state"], third["position"], third["ahead"]) == ("waiting", 2, 1)
        # At 60/min the second goes in a second after the first, the third a second later.
        assert third["estimated_wait_s"] == 2 and third["poll_after_s"] >= 1
        assert third["estimated_wait_low_s"] <= 2 <= third["estimated_wait_high_s"]
        clock.advance(1)
        await line_of(app).refresh(event_id)
        polled = await client.get(f"/events/{event_id}/status", params={"t": third["ticket"]})
        assert (polled.json()["state"], polled.json()["position"]) == ("waiting", 1)
        entered = await client.post(
            f"/events/{event_id}/enter", headers={**JSON, "x-machiai-ticket": first["ticket"]}
        )
        assert entered.status_code == 200
        admission = tokens.load_pass(entered.json()["pass"], 300, event_id)
        assert admission.ticket_id == tokens.load_ticket(first["ticket"], 60).ticket_id
