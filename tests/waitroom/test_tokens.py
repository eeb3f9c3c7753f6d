"""Tickets and passes: forged, tampered, expired, other event, rotated keys — all refused."""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machiai.tokens import AdmissionPass, Ticket, TokenError, Tokens
from tests.waitroom.conftest import AppFactory, add_event, running
from waitroom.settings import WaitroomSettings

JSON = {"accept": "application/json"}
OLD_KEY = "old-key-" + "o" * 40
NEW_KEY = "new-key-" + "n" * 40


def signed_at(
    monkeypatch: pytest.MonkeyPatch, tokens: Tokens, ticket: Ticket, unix_s: float
) -> str:
    with monkeypatch.context() as m:
        m.setattr("itsdangerous.timed.time.time", lambda: unix_s)
        return tokens.dump_ticket(ticket)


async def status_code_of(
    make_app: AppFactory, event_id: str, token: str, **kw: object
) -> tuple[int, str]:
    async with running(make_app(**kw)) as client:
        r = await client.get(f"/events/{event_id}/status", headers={"x-machiai-ticket": token})
        return r.status_code, r.json()["error"]["code"] if r.status_code != 200 else ""


async def test_forged_tampered_expired_and_other_event_tickets_are_refused(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    event_id = await add_event(db)
    other_id = await add_event(db)
    async with running(make_app()) as client:
        good = (await client.post(f"/events/{event_id}/join", headers=JSON)).json()["ticket"]
        assert (
            await client.get(f"/events/{event_id}/status", params={"t": good})
        ).status_code == 200
        forged = Tokens(["attacker-key-" + "x" * 40]).dump_ticket(
            Ticket(event_id, 0, "a" * 32, False)
        )
        payload, stamp, sig = good.split(".")
        tampered = ".".join([payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), stamp, sig])
        expired = signed_at(
            monkeypatch, tokens, Ticket(event_id, 0, "b" * 32, False), 1_000_000_000
        )
        other = tokens.dump_ticket(Ticket(other_id, 0, "c" * 32, False))
        cases = {
            forged: "ticket_invalid",
            tampered: "ticket_invalid",
            "not-a-token": "ticket_invalid",
            "x" * 5000: "ticket_invalid",
            expired: "ticket_expired",
            other: "ticket_wrong_event",
        }
        for token, code in cases.items():
            r = await client.get(f"/events/{event_id}/status", headers={"x-machiai-ticket": token})
            assert r.status_code == 403 and r.json()["error"]["code"] == code, (token, r.text)
        missing = await client.get(f"/events/{event_id}/status", headers={"cookie": "x=1"})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "ticket_missing"
        english = await client.get(
            f"/events/{event_id}/status",
            headers={"x-machiai-ticket": other, "accept-language": "en"},
        )
        assert english.json()["error"]["message"] == "This ticket belongs to another booking event."


async def test_rotated_key_old_tickets_valid_retired_key_refused(
    db: asyncpg.Pool, make_app: AppFactory, settings: WaitroomSettings
) -> None:
    event_id = await add_event(db)
    old_core = replace(settings.core, secret_keys=(OLD_KEY,))
    async with running(make_app(core=old_core)) as client:
        ticket = (await client.post(f"/events/{event_id}/join", headers=JSON)).json()["ticket"]
    rotated = replace(settings.core, secret_keys=(NEW_KEY, OLD_KEY))
    assert await status_code_of(make_app, event_id, ticket, core=rotated) == (200, "")
    async with running(make_app(core=rotated)) as client:
        fresh = (
            await client.post(f"/events/{event_id}/join", headers={**JSON, "cookie": "x=1"})
        ).json()
    # New tickets are signed with the newest key only.
    assert Tokens([NEW_KEY]).load_ticket(fresh["ticket"], 60, event_id).arrival_no == 1
    retired = replace(settings.core, secret_keys=(NEW_KEY,))
    assert await status_code_of(make_app, event_id, ticket, core=retired) == (403, "ticket_invalid")


async def test_pass_is_bound_to_event_and_ticket_and_expires(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    event_id = await add_event(db)
    async with running(make_app()) as client:
        joined = (await client.post(f"/events/{event_id}/join", headers=JSON)).json()
        assert joined["state"] == "admitted"  # safety net: empty line
        r = await client.post(
            f"/events/{event_id}/enter", headers={**JSON, "X-Request-Id": "req-0123456789"}
        )
        assert r.status_code == 200
        token = r.json()["pass"]
        # The request's id goes along into booking (machiai/request_id.py).
        assert r.json()["redirect_url"].endswith(f"/enter?pass={token}&rid=req-0123456789")
    ticket = tokens.load_ticket(joined["ticket"], 60, event_id)
    admission = tokens.load_pass(token, 300, event_id)
    assert admission.ticket_id == ticket.ticket_id and admission.event_id == event_id
    with pytest.raises(Exception) as wrong:
        tokens.load_pass(token, 300, "another-event")
    assert getattr(wrong.value, "code", "") == "token_wrong_event"
    with pytest.raises(Exception) as as_ticket:
        tokens.load_ticket(token, 300)
    assert getattr(as_ticket.value, "code", "") == "token_invalid"  # salts keep purposes apart
    with monkeypatch.context() as m:
        m.setattr("itsdangerous.timed.time.time", lambda: 1_000_000_000)
        old = tokens.dump_pass(AdmissionPass(event_id, ticket.ticket_id, "p" * 32))
    with pytest.raises(Exception) as expired:
        tokens.load_pass(old, 300, event_id)
    assert getattr(expired.value, "code", "") == "token_expired"


@given(
    payload=st.lists(
        st.one_of(st.text(max_size=30), st.integers(min_value=0, max_value=2**53)), max_size=6
    ),
    flip=st.integers(min_value=0, max_value=10_000),
)
@settings(max_examples=150, deadline=None)
def test_fast_signer_speaks_itsdangerous_both_ways(payload: list[object], flip: int) -> None:
    """The hot-path signer and itsdangerous accept exactly the same tokens."""
    tokens = Tokens([NEW_KEY, OLD_KEY])
    ours = tokens.ticket.dumps(payload)
    theirs = tokens.ticket._serializer.dumps(payload)  # itsdangerous itself (may compress)
    for token in (ours, theirs):
        assert tokens.ticket.loads(token, 60)[0] == payload
        assert tokens.ticket.loads_reference(token, 60)[0] == payload
        i = flip % len(token)
        bad = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        results = []
        for load in (tokens.ticket.loads, tokens.ticket.loads_reference):
            try:
                results.append(load(bad, 60)[0] == payload)
            except TokenError:
                results.append(False)
        assert results[0] == results[1]
