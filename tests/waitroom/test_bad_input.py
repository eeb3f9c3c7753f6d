"""Bad input gets a clear 4xx with a code, never a 500 (a seeded barrage of malformed requests)."""

from __future__ import annotations

import json
import random
import string

import asyncpg
import pytest
from starlette.requests import Request

from machiai.tokens import Tokens
from tests.waitroom.conftest import AppFactory, add_event, running, staff_token
from waitroom.errors import BodyTooLarge
from waitroom.web.join import bounded_body

ALPHABET = string.printable + "é整理券\u3000"


def junk(rng: random.Random, size: int = 40) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, size)))


async def test_malformed_requests_never_get_a_500(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Tokens
) -> None:
    event_id = await add_event(db)
    rng = random.Random(4)
    admin = {"authorization": f"Bearer {staff_token(tokens)}"}
    async with running(make_app()) as client:
        good = (
            await client.post(f"/events/{event_id}/join", headers={"accept": "application/json"})
        ).json()["ticket"]
        tampered = [good[:-1], good + "x", good.replace(".", "", 1), "." * 3, "a.b.c", good[::-1]]
        seen: set[int] = set()
        for i in range(300):
            ticket = rng.choice([*tampered, junk(rng), junk(rng, 600)])
            ticket = "".join(
                c for c in ticket if c.isprintable() and ord(c) < 256 and c not in "\r\n"
            )
            event = rng.choice([event_id, "no-such", "UPPER", "a" * 70, "-x", "ok-1"])
            method, path = rng.choice(
                [
                    ("GET", f"/events/{event}/status"),
                    ("GET", f"/events/{event}/wait"),
                    ("POST", f"/events/{event}/join"),
                    ("POST", f"/events/{event}/enter"),
                    ("GET", f"/events/{event}/prequeue-seed"),
                    ("PATCH", f"/admin/events/{event}"),
                    ("POST", "/admin/events"),
                ]
            )
            headers = (
                {"x-machiai-ticket": ticket}
                if i % 3 == 0
                else {"cookie": f"machiai_ticket_{event}={ticket}"}
            )
            if i % 2:
                headers["accept"] = "application/json"
            if path.startswith("/admin") and i % 4:
                headers.update(admin)
            body_kind = i % 5
            if body_kind == 0:
                content = junk(rng).encode()
                headers["content-type"] = "application/json"
            elif body_kind == 1:
                content = ("t=" + junk(rng)).encode()
                headers["content-type"] = "application/x-www-form-urlencoded"
            elif body_kind == 2:
                content = b'{"ticket": 5, "admit_per_minute": -1, "opens_at": "x"}'
                headers["content-type"] = "application/json"
            else:
                content = b""
            r = await client.request(
                method,
                path,
                headers={k.encode(): v.encode("latin-1") for k, v in headers.items()},
                params={"t": ticket, "lang": junk(rng, 3)},
                content=content,
            )
            assert r.status_code < 500 or r.status_code == 503, (
                method,
                path,
                r.status_code,
                r.text,
            )
            seen.add(r.status_code)
        assert {400, 401, 403, 404}.intersection(seen) and 422 in seen


async def test_event_text_and_times_postgres_cannot_take_are_refused_with_a_code(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Tokens
) -> None:
    """NUL (and lone surrogates) in names, and times that leave the calendar once in UTC,
    are a 422 naming the field, never a 500 from Postgres or the date arithmetic."""
    event_id = await add_event(db)
    admin = {"authorization": f"Bearer {staff_token(tokens)}"}
    new = {
        "id": "ev-nul",
        "name_ja": "接種予約",
        "name_en": "Bookings",
        "prequeue_at": "2031-04-01T08:00:00+09:00",
        "opens_at": "2031-04-01T09:00:00+09:00",
        "closes_at": "2031-04-30T17:00:00+09:00",
        "admit_per_minute": 60,
        "max_active": 100,
    }
    async with running(make_app()) as client:
        for field, value, expected in (
            ("name_ja", "接種\x00予約", "invalid_character"),
            ("name_en", "Book\ud800ings", "invalid_character"),
            ("eligibility_group", "65\x00", "invalid_character"),
            ("closes_at", "9999-12-31T23:59:59-09:00", "invalid_input"),
            ("prequeue_at", "0001-01-01T00:00:00+09:00", "invalid_input"),
            ("opens_at", "2031-04-01T09:00:00", "invalid_input"),  # no offset
        ):
            for method, path, body in (
                ("POST", "/admin/events", {**new, field: value}),
                ("PATCH", f"/admin/events/{event_id}", {field: value}),
            ):
                # ensure_ascii: a lone surrogate travels as the JSON escape \ud800.
                content = json.dumps(body).encode()
                r = await client.request(method, path, content=content, headers=admin)
                assert r.status_code == 422, (method, field, r.status_code, r.text)
                assert r.json()["error"]["code"] == expected
                assert r.json()["error"]["detail"] == {"field": field}
        created = await client.post("/admin/events", json=new, headers=admin)
        assert created.status_code == 201, created.text
        assert created.json()["event"]["opens_at"] == "2031-04-01T00:00:00+00:00"
    assert await db.fetchval("SELECT count(*) FROM events") == 2


@pytest.mark.parametrize("declared", [b"\xb2", b"1\xb2", b"-1", b"1e3"])
async def test_a_content_length_that_is_no_ascii_number_is_refused(declared: bytes) -> None:
    """A header decoded as latin-1 may carry "²": str.isdigit() takes it, int() does not."""

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "headers": [(b"content-length", declared)]}
    with pytest.raises(BodyTooLarge):
        await bounded_body(Request(scope, receive), 4096)
