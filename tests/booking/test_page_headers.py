"""Every answer of booking's resident pages — ``/enter`` whatever it answers (the form, a
refusal, the redirect into booking), every page after it and the redirects between them —
carries the pages' security headers (``machiai.pages``): CSP with frame-ancestors 'none',
X-Frame-Options, no Referer, nosniff, no-store."""

from __future__ import annotations

import re
from html import unescape

import asyncpg
import httpx

from booking.services.inventory import rebuild_inventory
from booking.settings import BookingSettings
from tests.booking.client import mint_pass, running
from tests.booking.factory import World, make_slot, voucher
from tests.booking.test_pages import choices, forms, hidden, param

INLINE = re.compile(r"<style|\sstyle=|\son[a-z]+=|javascript:|<script(?![^>]*\ssrc=)")


def assert_secured(r: httpx.Response, what: str, status: int) -> None:
    assert r.status_code == status, (what, r.status_code, r.text[:300])
    csp = r.headers.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("frame-ancestors") == ["'none'"], (what, csp)
    assert directives.get("script-src") == ["'self'"], (what, csp)
    assert directives.get("style-src") == ["'self'"], (what, csp)
    assert "unsafe-inline" not in csp, what
    assert r.headers.get("x-frame-options") == "DENY", what
    assert r.headers.get("referrer-policy") == "no-referrer", what
    assert r.headers.get("x-content-type-options") == "nosniff", what
    assert r.headers.get("cache-control") == "no-store", what
    if status != 303:
        assert r.headers["content-type"].startswith("text/html"), what
        assert INLINE.search(r.text) is None, (what, INLINE.search(r.text))


def identity(pass_token: str, n: int, year: str = "1950") -> dict[str, str]:
    return {"pass": pass_token, "voucher": voucher(n), "year": year, "month": "4", "day": "1"}


async def test_enter_and_every_page_after_it_carry_the_security_headers(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        slot = await make_slot(conn, world.clinic_id, world.event_id, 3, days=2)
    async with running(settings) as (app, client):
        await rebuild_inventory(app.state.ctx)
        ok = 200
        assert_secured(await client.get("/"), "home", ok)
        assert_secured(await client.get("/?lang=en"), "home en", ok)
        # /enter: whatever it answers.
        pass_token = mint_pass(settings, world.event_id)
        form = await client.get("/enter", params={"pass": pass_token})
        assert_secured(form, "enter's form", ok)
        assert_secured(await client.head("/enter", params={"pass": pass_token}), "HEAD", ok)
        assert_secured(await client.get("/enter"), "enter without a pass", 401)
        assert_secured(await client.get("/enter?pass=forged"), "enter, forged pass", 401)
        bad = {**identity(pass_token, 1), "month": "13"}
        assert_secured(await client.post("/enter", data=bad), "enter, bad date", 422)
        wrong = identity(pass_token, 1, year="1951")
        assert_secured(await client.post("/enter", data=wrong), "enter, refused", 403)
        entered = await client.post("/enter", data=identity(hidden(form.text, "pass"), 1))
        assert_secured(entered, "enter → slots (the session in its Location)", 303)
        again = await client.post("/enter", data=identity(pass_token, 1))
        assert_secured(again, "enter, pass used", 409)
        # The pages after it, and the redirects between them.
        slots = await client.get(entered.headers["location"])
        assert_secured(slots, "slots", ok)
        token = param(str(slots.url), "s")
        hold_form = next(f for f in choices(slots.text) if f["slot_id"] == slot)
        held = await client.post("/book/hold", data=hold_form)
        assert_secured(held, "hold", 303)
        review = await client.get(held.headers["location"])
        assert_secured(review, "review", ok)
        confirmed = await client.post("/book/confirm", data=forms(review.text, "/book/confirm")[0])
        assert_secured(confirmed, "confirm", 303)
        assert_secured(await client.get(confirmed.headers["location"]), "done", ok)
        mine = await client.get("/book/mine", params={"s": token})
        assert_secured(mine, "my bookings", ok)
        cancel_link = re.search(r'href="(/book/cancel\?[^"]+)"', mine.text)
        assert cancel_link
        assert_secured(await client.get(unescape(cancel_link.group(1))), "cancel?", ok)
        household = await client.get("/book/household", params={"s": token})
        assert_secured(household, "household", ok)
        finished = await client.post("/book/finish", data={"s": token})
        assert_secured(finished, "finish", 303)
        assert_secured(await client.get("/book/mine", params={"s": token}), "ended", 401)
        lookup = await client.get("/mine", params={"event": world.event_id})
        assert_secured(lookup, "my bookings without queueing", ok)
        # The stylesheet and script, a year in the cache under their hash.
        for path in re.findall(r'(?:href|src)="(/static/[^"]+)"', lookup.text):
            asset = await client.get(path)
            assert asset.status_code == 200, path
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert asset.headers["x-content-type-options"] == "nosniff"
