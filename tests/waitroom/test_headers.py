"""Every HTML answer of the waitroom (pages, and the redirects that carry a ticket or a
pass) has the pages' security headers; the pages have no inline script or style; the
status poll and the JSON join carry nothing new."""

from __future__ import annotations

import re
from dataclasses import replace

import asyncpg
import httpx

from machiai.config import Mode
from machiai.embedded import free_port
from tests.waitroom.conftest import AppFactory, add_event, running
from waitroom.settings import WaitroomSettings

JSON = {"accept": "application/json", "cookie": "x=1"}
FORM = {"content-type": "application/x-www-form-urlencoded", "cookie": "x=1"}
INLINE = re.compile(
    r"<style|\sstyle=|\son[a-z]+=|javascript:|<script(?![^>]*\ssrc=)(?![^>]*application/json)"
)


def assert_secured(r: httpx.Response, what: str) -> None:
    csp = r.headers.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("frame-ancestors") == ["'none'"], (what, csp)
    assert directives.get("script-src") == ["'self'"], (what, csp)
    assert directives.get("style-src") == ["'self'"], (what, csp)
    assert directives.get("default-src") == ["'none'"], (what, csp)
    assert "unsafe-inline" not in csp, what
    assert r.headers.get("referrer-policy") == "no-referrer", what
    assert r.headers.get("x-content-type-options") == "nosniff", what
    assert r.headers.get("x-frame-options") == "DENY", what
    assert r.headers.get("cache-control") == "no-store", what


def assert_page(r: httpx.Response, what: str, status: int = 200) -> None:
    assert r.status_code == status, (what, r.status_code)
    assert r.headers["content-type"].startswith("text/html"), what
    assert_secured(r, what)
    assert INLINE.search(r.text) is None, (what, INLINE.search(r.text))


async def test_every_page_and_redirect_carries_the_security_headers(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    event_id = await add_event(db, rate=6)
    closed = await add_event(db, state="closed")
    async with running(make_app(phone="0120-000-111")) as client:
        w = f"/events/{event_id}"
        first = (await client.post(f"{w}/join", headers=JSON)).json()  # straight in
        assert first["state"] == "admitted"
        assert_page(await client.get("/"), "home")
        assert_page(await client.get("/?lang=en"), "home en")
        assert_page(await client.get(f"{w}/wait", headers=FORM), "wait, join button")
        joined = await client.post(f"{w}/join?lang=ja", headers=FORM)
        assert joined.status_code == 303, joined.text
        assert_secured(joined, "form join's redirect (the ticket in its Location)")
        waiting = await client.get(joined.headers["location"], headers=FORM)
        assert_page(waiting, "wait, waiting, with its script")
        assert '<script src="/static/wait.' in waiting.text
        admitted = await client.get(f"{w}/wait", params={"t": first["ticket"]}, headers=FORM)
        assert_page(admitted, "wait, admitted")
        assert_page(
            await client.get(f"{w}/wait", params={"t": "tampered"}, headers=FORM), "bad ticket"
        )
        assert_page(await client.get("/events/no-such-event/wait"), "no event", 404)
        assert_page(await client.get(f"{w}/shuffle"), "draw, not drawn yet")
        assert_page(await client.get(f"{w}/shuffle?lang=en"), "draw en")
        assert_page(await client.get("/events/no-such-event/shuffle"), "draw, no event", 404)
        assert_page(await client.post(f"/events/{closed}/join", headers=FORM), "closed", 409)
        # /enter: the pass rides in the Location to booking, the ticket in the way back.
        enter = await client.get(f"{w}/enter", params={"t": first["ticket"]}, headers=FORM)
        assert enter.status_code == 303 and "/enter?pass=" in enter.headers["location"]
        assert_secured(enter, "enter → booking")
        waiting_ticket = joined.headers["location"].split("t=")[1].split("&")[0]
        back = await client.get(f"{w}/enter", params={"t": waiting_ticket}, headers=FORM)
        assert back.status_code == 303 and "/wait?t=" in back.headers["location"]
        assert_secured(back, "enter → back to the waiting page")
        # The stylesheet and script the pages name, for a year, under their hash.
        for path in re.findall(r'(?:href|src)="(/static/[^"]+)"', waiting.text):
            asset = await client.get(path)
            assert asset.status_code == 200, path
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert asset.headers["x-content-type-options"] == "nosniff"
            assert asset.headers["content-type"].startswith(("text/css", "text/javascript"))
        # The status poll (the hottest request) and the API join carry nothing new.
        status = await client.get(f"{w}/status", params={"t": first["ticket"]})
        assert status.status_code == 200 and "content-security-policy" not in status.headers
        api = await client.post(f"{w}/join", headers=JSON)
        assert api.status_code == 201 and "content-security-policy" not in api.headers


async def test_calm_busy_pages_carry_them_too(
    db: asyncpg.Pool, make_app: AppFactory, settings: WaitroomSettings
) -> None:
    event_id = await add_event(db)
    dead = replace(settings.core, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with running(make_app(core=dead, redis_timeout_s=0.5)) as client:
        for path in ("wait", "shuffle"):
            page = await client.get(f"/events/{event_id}/{path}")
            assert_page(page, f"busy {path}", 503)
            assert page.headers["retry-after"] == "5"
        busy = await client.post(f"/events/{event_id}/join", headers=FORM)
        assert_page(busy, "busy form join", 503)


async def test_ticket_cookie_is_httponly_lax_and_secure_outside_development(
    db: asyncpg.Pool, make_app: AppFactory, settings: WaitroomSettings
) -> None:
    event_id = await add_event(db)
    for mode, secure in ((Mode.DEVELOPMENT, False), (Mode.PRODUCTION, True)):
        app = make_app(core=replace(settings.core, mode=mode))
        async with running(app) as client:
            for headers in (JSON, FORM):  # the hot path's join and the form's
                r = await client.post(f"/events/{event_id}/join", headers=headers)
                attrs = [a.strip() for a in r.headers["set-cookie"].split(";")]
                assert attrs[0].startswith(f"machiai_ticket_{event_id}=")
                lowered = {a.lower() for a in attrs}  # attribute names are case-insensitive
                assert {"httponly", "samesite=lax", f"path=/events/{event_id}"} <= lowered
                assert ("Secure" in attrs) is secure, (mode, attrs)
