"""Bad input gets a clear 4xx with a code, never a 500 (a seeded barrage of malformed requests)."""

from __future__ import annotations

import random
import string

import asyncpg

from machiai.tokens import Tokens
from tests.waitroom.conftest import AppFactory, add_event, running, staff_token

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
