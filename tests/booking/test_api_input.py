"""Bad input on every endpoint gives a 4xx with an error code, never a 500, and writes nothing."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from starlette.routing import Route

from booking.app import ENDPOINTS
from booking.console.routes import routes as console_routes
from booking.http import JST, Endpoint
from booking.openapi import build_openapi, doc_path
from booking.pages import book, done, home, mine, signin
from booking.pages.common import asset_routes
from booking.settings import BookingSettings
from tests.booking.client import code, mint_pass, open_session, running, staff_token
from tests.booking.factory import BIRTH, World, make_slot, make_staff, voucher

TABLES = ("bookings", "slots", "registry", "idempotency_keys", "outbox", "audit_log")
WRONG_VALUES: list[Any] = [{"nested": [1]}, 12345678901234567890, True, "x" * 5000, None, -1]


async def snapshot(db: asyncpg.Pool) -> dict[str, int]:
    return {t: int(await db.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}


def role_for(ep: Endpoint) -> str:
    if ep.path.startswith("/api/operator"):
        return "operator"
    if ep.path.startswith("/api/clinic"):
        return "clinic"
    if ep.path.startswith(("/api/registry", "/api/exports")):
        return "admin"
    return ep.auth


def paths_for(ep: Endpoint) -> list[str]:
    params = re.findall(r"{(\w+)}", ep.path)
    if not params:
        return [ep.path]
    out = []
    for value in ("nope", str(uuid.uuid4()), "0" * 32, "%00", "1" * 150):
        path = ep.path
        for p in params:
            path = path.replace("{" + p + "}", value)
        out.append(path)
    return out


async def test_bad_input_everywhere_is_4xx_and_writes_nothing(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        await make_slot(conn, world.clinic_id, world.event_id, 3)
        ids = {
            role: (await make_staff(conn, world.municipality, role, clinic))[0]
            for role, clinic in (
                ("operator", None),
                ("clinic", world.clinic_id),
                ("admin", None),
            )
        }
    headers = {
        role: staff_token(
            settings,
            ids[role],
            world.municipality,
            role,
            world.clinic_id if role == "clinic" else None,
        )
        for role in ids
    }
    seen: list[tuple[str, str, int]] = []
    async with running(settings) as (_, client):
        headers["session"] = await open_session(
            client, settings, world.event_id, voucher(11), BIRTH.isoformat()
        )
        headers["none"] = {}
        before = await snapshot(db)

        async def send(ep: Endpoint, path: str, **kwargs: Any) -> None:
            auth = headers[role_for(ep)]
            extra = kwargs.pop("headers", {})
            r = await client.request(ep.method, path, headers={**auth, **extra}, **kwargs)
            seen.append((ep.method, path[:60], r.status_code))
            assert 400 <= r.status_code < 500 or (r.status_code == 200 and ep.method == "GET"), (
                ep.method,
                path,
                r.status_code,
                r.text[:300],
            )
            if r.status_code >= 400:
                body = r.json()
                assert body["error"]["code"] and body["error"]["message"]

        for ep in ENDPOINTS:
            for path in paths_for(ep):
                if ep.body_kind == "none" and ep.method != "GET":
                    if path != ep.path:
                        await send(ep, path)
                    continue
                if ep.method == "GET":
                    await send(ep, path + "?date=2024-13-45&dose=abc&clinic_id=zz")
                    await send(ep, path + "?date=" + "9" * 300)
                    continue
                if ep.body_kind == "csv":
                    await send(ep, path, content=b"\x00\x01garbage,,,\n\xff")
                    await send(ep, path + "?dry_run=maybe", content=b"a,b\n")
                    await send(ep, path, content=b"")
                    m = world.municipality
                    await send(
                        ep,
                        path,
                        content=(
                            "voucher_number,birth_date,municipality_code,groups\n"
                            f"3000000000,1950-01-01,{m},65\x00+\n"
                            "event_id,starts_at,duration_min,capacity,vaccine_code,dose_number\n"
                            f"{world.event_id}\x00,2031-01-01T10:00,30,3,comirnaty\x00,1\n"
                        ).encode(),
                    )
                    continue
                await send(ep, path, content=b"{not json")
                await send(ep, path, content=b"[1, 2, 3]")
                await send(ep, path, content=b'"just a string"')
                await send(ep, path, content=b"\xff\xfe")
                if ep.request:
                    for wrong in WRONG_VALUES:
                        # An object's fields, or those of each of its alternatives (oneOf).
                        alternatives = ep.request.get("oneOf", [ep.request])
                        fields = {n for alt in alternatives for n in alt["properties"]}
                        await send(ep, path, json={name: wrong for name in fields})
                    await send(ep, path, json={})
            # Without credentials, protected endpoints refuse.
            if ep.auth != "none":
                r = await client.request(
                    ep.method, paths_for(ep)[0], headers={"Authorization": "Bearer x.y.z"}
                )
                assert r.status_code in (400, 401, 403, 404, 405, 422), (ep.path, r.status_code)
        # Huge bodies are refused before anyone reads them, announced or streamed.
        big = b"x" * (settings.max_body_bytes + 1)
        r = await client.post("/api/clinic/slots/import", content=big, headers=headers["clinic"])
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

        async def stream() -> Any:
            for _ in range(settings.max_body_bytes // 1000 + 2):
                yield b"x" * 1000

        r = await client.post(
            "/api/clinic/slots/import", content=stream(), headers=headers["clinic"]
        )
        assert r.status_code == 413
        unknown = await client.get("/api/nothing-here")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
        wrong_method = await client.put("/api/holds")
        assert wrong_method.status_code == 405
        assert await snapshot(db) == before
    assert len(seen) > 300


async def test_the_document_lists_every_route_with_its_methods(
    settings: BookingSettings,
) -> None:
    """Every route of the app is in /openapi.json with exactly its methods, except the
    pages, the staff consoles and their static files (HTML for people, not the API)."""
    pages = {
        r.path
        for r in (*book.routes(), *done.routes(), *signin.routes(), *mine.routes(), *home.routes())
        + tuple(asset_routes())
        + tuple(console_routes())
        if isinstance(r, Route)
    }
    async with running(settings) as (app, client):
        doc = (await client.get("/openapi.json")).json()
        assert doc == build_openapi(ENDPOINTS)
        served = {
            doc_path(r.path): {m for m in (r.methods or set()) if m != "HEAD"}
            for r in app.routes
            if isinstance(r, Route) and r.path not in pages
        }
        listed = {path: {m.upper() for m in ops} for path, ops in doc["paths"].items()}
        assert served == listed
        # A method a path does not have is a 405 that names the ones it has.
        for path, methods in listed.items():
            url = re.sub(r"{\w+}", str(uuid.uuid4()), path)
            r = await client.request("PUT" if "PUT" not in methods else "TRACE", url)
            assert r.status_code == 405, (path, r.status_code)
            allowed = {m.strip() for m in r.headers["allow"].split(",")} - {"HEAD"}
            assert allowed == methods, (path, allowed)
            assert r.json()["error"]["code"] == "method_not_allowed"
    assert doc["openapi"].startswith("3.")
    op_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(op_ids) == len(set(op_ids))
    schemes = doc["components"]["securitySchemes"]
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["responses"] and op["summary"]
            for sec in op.get("security", []):
                assert set(sec) <= set(schemes)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path))
            for status, answer in op["responses"].items():
                if int(status) >= 400 and path != "/health/ready":
                    error = answer["content"]["application/json"]["schema"]["properties"]
                    assert error["error"]["required"] == ["code", "message"]


async def test_public_availability_is_cacheable(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        await make_slot(conn, world.clinic_id, world.event_id, 3)
        await make_slot(conn, world.clinic_id, world.event_id, 4, days=5)
        await make_slot(conn, world.clinic_id, world.event_id, 4, closed=True)
    async with running(settings) as (_, client):
        r = await client.get(f"/api/public/events/{world.event_id}/availability")
        assert r.status_code == 200
        assert "max-age" in r.headers["cache-control"] and r.headers["etag"]
        days = r.json()["days"]
        assert sorted(d["remaining"] for d in days) == [3, 4]
        again = await client.get(
            f"/api/public/events/{world.event_id}/availability",
            headers={"If-None-Match": r.headers["etag"]},
        )
        assert again.status_code == 304
        missing = await client.get("/api/public/events/nope/availability")
        assert missing.status_code == 404


async def test_enter_page_is_japanese_and_escapes_the_pass(
    settings: BookingSettings, world: World
) -> None:
    async with running(settings) as (_, client):
        forged = await client.get("/enter", params={"pass": '"><script>alert(1)</script>'})
        good = await client.get("/enter", params={"pass": mint_pass(settings, world.event_id)})
    # A forged pass is told at once, before the resident types anything, and never echoed.
    assert forged.status_code == 401 and forged.headers["content-type"].startswith("text/html")
    assert "<script>alert(1)" not in forged.text and "alert(1)" not in forged.text
    assert good.status_code == 200 and '<html lang="ja">' in good.text and "接種券番号" in good.text
    assert 'for="voucher"' in good.text and 'for="year"' in good.text and 'for="day"' in good.text


async def test_client_receives_english_when_asked(settings: BookingSettings) -> None:
    async with running(settings) as (_, client):
        ja = await client.get("/api/bookings")
        en = await client.get("/api/bookings", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert ja.status_code == en.status_code == 401
    assert ja.json()["error"]["code"] == en.json()["error"]["code"] == "unauthorized"
    assert "ログイン" in ja.json()["error"]["message"]
    assert "Authentication" in en.json()["error"]["message"]


async def test_what_postgres_or_the_calendar_cannot_take_is_a_422_naming_the_field(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """NUL and lone surrogates in text, instants that leave the calendar once in UTC, plans
    at its edges, and numbers or flags sent as strings in JSON: a 422 naming the field."""
    async with db.acquire() as conn:
        clinic_id, _ = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
    clinic = staff_token(settings, clinic_id, world.municipality, "clinic", world.clinic_id)
    slot = {
        "event_id": world.event_id,
        "starts_at": "2031-04-01T09:00",
        "duration_min": 30,
        "capacity": 3,
        "vaccine_code": "comirnaty",
        "dose_number": 1,
    }
    soon = datetime.now(JST).date() + timedelta(days=3)
    plan = {
        "event_id": world.event_id,
        "from_date": soon.isoformat(),
        "to_date": (soon + timedelta(days=1)).isoformat(),
        "weekdays": [0, 1, 2, 3, 4, 5, 6],
        "opens": "23:00",
        "closes": "23:30",
        "slot_min": 30,
        "capacity": 3,
        "vaccine_code": "comirnaty",
        "dose_number": 1,
        "dry_run": True,
    }
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("/api/clinic/slots", {**slot, "starts_at": "9999-12-31T23:59:59-09:00"}, "starts_at",
         "invalid_input"),
        ("/api/clinic/slots", {**slot, "publish_from": "0001-01-01T00:00"}, "publish_from",
         "invalid_input"),
        ("/api/clinic/slots", {**slot, "vaccine_code": "comir\x00naty"}, "vaccine_code",
         "invalid_character"),
        ("/api/clinic/slots", {**slot, "event_id": "ev\ud800"}, "event_id", "invalid_character"),
        ("/api/clinic/slots", {**slot, "capacity": "3"}, "capacity", "invalid_input"),
        ("/api/clinic/slots/plan", {**plan, "dry_run": "true"}, "dry_run", "invalid_input"),
        ("/api/clinic/slots/plan", {**plan, "from_date": "0001-01-01"}, "from_date",
         "invalid_input"),
        ("/api/clinic/slots/plan", {**plan, "from_date": "9999-12-30", "to_date": "9999-12-31"},
         "to_date", "invalid_input"),
        ("/api/clinic/slots/plan", {**plan, "opens": "2300"}, "opens", "invalid_input"),
    ]  # fmt: skip
    async with running(settings) as (_, client):
        for path, payload, field, expected in cases:
            r = await client.post(path, content=json.dumps(payload).encode(), headers=clinic)
            assert r.status_code == 422, (field, r.status_code, r.text)
            assert code(r) == expected and r.json()["error"]["detail"]["field"] == field, r.text
        # As query parameters, numbers and flags are strings; an empty one is not given.
        r = await client.get("/api/clinic/slots?date=2031-04-01&", headers=clinic)
        assert r.status_code == 200
        r = await client.post(
            "/api/clinic/slots/plan", content=json.dumps(plan).encode(), headers=clinic
        )
        assert r.status_code == 200 and r.json()["slots"] == 2, r.text
    assert await db.fetchval("SELECT count(*) FROM slots") == 0
