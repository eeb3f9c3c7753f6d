"""The resident pages without JavaScript, as a browser without scripts sends them: plain
form posts, 303 redirects, the session in the URL and the forms (no cookies)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from booking.services.inventory import rebuild_inventory
from booking.settings import BookingSettings
from tests.booking.client import mint_pass, running
from tests.booking.factory import BIRTH, World, make_slot, voucher
from tests.booking.helpers import pg_slot

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name}"
    return unescape(found.group(1))


def forms(html: str, action: str) -> list[dict[str, str]]:
    """Every form posting to ``action``, as the fields a browser would send."""
    out = []
    for match in re.finditer(
        rf'<form method="post" action="{action}"[^>]*>(.*?)</form>', html, re.S
    ):
        out.append(
            {
                unescape(n): unescape(v)
                for n, v in re.findall(r'name="([^"]+)" value="([^"]*)"', match.group(1))
            }
        )
    return out


def choices(html: str) -> list[dict[str, str]]:
    """The times offered: the hold form's fields with each button's slot id."""
    found = forms(html, "/book/hold")
    if not found:
        return []
    buttons = re.findall(r'<button type="submit" name="slot_id" value="([^"]+)"', html)
    return [{**found[0], "slot_id": unescape(b)} for b in buttons]


def param(url: str, name: str) -> str:
    return parse_qs(urlsplit(url).query)[name][0]


async def follow(client: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    assert response.status_code == 303, response.text[:500]
    return await client.get(response.headers["location"])


async def sign_in(
    client: httpx.AsyncClient, settings: BookingSettings, event_id: str, n: int
) -> httpx.Response:
    pass_token = mint_pass(settings, event_id)
    page = await client.get("/enter", params={"pass": pass_token})
    assert page.status_code == 200
    r = await client.post(
        "/enter",
        data={
            "pass": hidden(page.text, "pass"),
            "voucher": voucher(n)[:5] + " " + voucher(n)[5:].translate(FULL_WIDTH),
            "year": "昭和25",
            "month": "４",
            "day": "1",
        },
    )
    return await follow(client, r)


def assert_page(r: httpx.Response) -> None:
    assert r.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    assert len(r.content) < 30 * 1024


async def test_sign_in_choose_review_confirm_without_javascript(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    assert BIRTH.year == 1950  # 昭和25
    now = datetime.now(UTC)
    async with db.acquire() as conn:
        first = await make_slot(conn, world.clinic_id, world.event_id, 2, days=2)
        second_dose = await make_slot(conn, world.clinic_id, world.event_id, 2, days=3, dose=2)
        unpublished = await make_slot(
            conn, world.clinic_id, world.event_id, 2, days=4, publish_from=now + timedelta(days=1)
        )
    async with running(settings) as (app, client):
        await rebuild_inventory(app.state.ctx)
        slots = await sign_in(client, settings, world.event_id, 1)
        assert slots.status_code == 200, slots.text
        assert_page(slots)
        assert "診療所" in slots.text and "中区" in slots.text
        assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日（[月火水木金土日]）", slots.text)
        offered = [f["slot_id"] for f in choices(slots.text)]
        # Only what this resident may book now: dose 1, inside its publish window.
        assert offered == [first], (offered, second_dose, unpublished)
        held = await client.post("/book/hold", data=choices(slots.text)[0])
        review = await follow(client, held)
        assert review.status_code == 200 and "診療所" in review.text
        assert 'id="countdown"' in review.text
        # More time, once.
        extend = forms(review.text, "/book/extend")[0]
        again = await follow(client, await client.post("/book/extend", data=extend))
        assert "x=1" in str(again.url) and not forms(again.text, "/book/extend")
        twice = await follow(client, await client.post("/book/extend", data=extend))
        assert "延長は1回まで" in twice.text
        confirm = forms(again.text, "/book/confirm")[0]
        done = await follow(client, await client.post("/book/confirm", data=confirm))
        assert done.status_code == 200 and 'class="panel-success"' in done.text
        assert 'role="alert"' not in done.text
        code = re.search(r'class="code">([A-Z0-9]{8})<', done.text)
        assert code and "診療所" in done.text
        # The same form sent again (a double tap) books once.
        double = await follow(client, await client.post("/book/confirm", data=confirm))
        assert code.group(1) in double.text
        assert await pg_slot(db, first) == (2, 1)
        ics_link = re.search(r'href="(/book/ics[^"]+)"', done.text)
        assert ics_link
        ics = await client.get(unescape(ics_link.group(1)))
        assert ics.headers["content-type"].startswith("text/calendar")
        assert "BEGIN:VEVENT" in ics.text and code.group(1) in ics.text


async def test_bad_input_is_explained_next_to_the_field_and_at_the_top(
    settings: BookingSettings, world: World
) -> None:
    async with running(settings) as (_, client):
        pass_token = mint_pass(settings, world.event_id)
        r = await client.post(
            "/enter",
            data={"pass": pass_token, "voucher": "12345", "year": "19x0", "month": "13", "day": ""},
        )
        assert r.status_code == 422
        assert_page(r)
        assert 'class="error-summary"' in r.text
        for field in ("voucher", "year", "month", "day"):
            assert f'href="#{field}"' in r.text and f'id="{field}-error"' in r.text
        assert 'aria-invalid="true"' in r.text and 'value="12345"' in r.text
        wrong = await client.post(
            "/enter",
            data={
                "pass": pass_token,
                "voucher": voucher(2),
                "year": "1951",
                "month": "4",
                "day": "1",
            },
        )
        unknown = await client.post(
            "/enter",
            data={
                "pass": pass_token,
                "voucher": "9999999999",
                "year": "1951",
                "month": "4",
                "day": "1",
            },
        )
        # One refusal for every identity failure: no oracle.
        assert wrong.status_code == unknown.status_code == 403
        assert re.sub(r'value="[^"]*"', "", wrong.text) == re.sub(
            r'value="[^"]*"', "", unknown.text
        )
        expired = await client.get("/book/slots", params={"s": "forged"})
        assert expired.status_code == 401 and "<!doctype html>" in expired.text
        assert 'href="/?lang=ja"' in expired.text or 'href="/"' in expired.text
        # The pass can open one session only.
        first = await client.post(
            "/enter",
            data={
                "pass": pass_token,
                "voucher": voucher(3),
                "year": "1950",
                "month": "4",
                "day": "1",
            },
        )
        assert first.status_code == 303
        reused = await client.post(
            "/enter",
            data={
                "pass": pass_token,
                "voucher": voucher(3),
                "year": "1950",
                "month": "4",
                "day": "1",
            },
        )
        assert reused.status_code == 409 and "すでに使われています" in reused.text


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_home_page_is_a_page_in_both_languages(
    settings: BookingSettings, world: World, lang: str
) -> None:
    async with running(settings) as (_, client):
        r = await client.get("/", params={"lang": lang})
    assert r.status_code == 200
    assert_page(r)
    assert f'<html lang="{lang}">' in r.text
    assert f"/events/{world.event_id}/wait" in r.text and f"event={world.event_id}" in r.text
    assert ("予約" in r.text) == (lang == "ja")


async def test_my_bookings_cancel_and_change(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        one = await make_slot(conn, world.clinic_id, world.event_id, 3, days=2)
        two = await make_slot(conn, world.clinic_id, world.event_id, 3, days=5)
    async with running(settings) as (app, client):
        await rebuild_inventory(app.state.ctx)
        slots = await sign_in(client, settings, world.event_id, 4)
        token = param(str(slots.url), "s")
        hold_form = next(f for f in choices(slots.text) if f["slot_id"] == one)
        review = await follow(client, await client.post("/book/hold", data=hold_form))
        await follow(
            client, await client.post("/book/confirm", data=forms(review.text, "/book/confirm")[0])
        )
        mine = await client.get("/book/mine", params={"s": token})
        assert mine.status_code == 200 and "予約済み" in mine.text
        change = re.search(r'href="(/book/slots\?[^"]*replaces=[^"]+)"', mine.text)
        assert change
        choose = await client.get(unescape(change.group(1)))
        target = next(f for f in choices(choose.text) if f["slot_id"] == two)
        review = await follow(client, await client.post("/book/hold", data=target))
        assert "この日時に変更する" in review.text
        done = await follow(
            client, await client.post("/book/confirm", data=forms(review.text, "/book/confirm")[0])
        )
        assert "予約を変更しました" in done.text
        assert await pg_slot(db, one) == (3, 0) and await pg_slot(db, two) == (3, 1)
        mine = await client.get("/book/mine", params={"s": token})
        cancel_link = re.search(r'href="(/book/cancel\?[^"]+)"', mine.text)
        assert cancel_link
        ask = await client.get(unescape(cancel_link.group(1)))
        assert ask.status_code == 200 and "キャンセルしますか" in ask.text
        cancelled = await follow(
            client, await client.post("/book/cancel", data=forms(ask.text, "/book/cancel")[0])
        )
        assert "キャンセルしました" in cancelled.text
        assert await pg_slot(db, two) == (3, 0)  # the place is back at once
        assert (await app.state.ctx.redis.slot_left([two]))[two] == 3


async def test_lookup_without_queueing_sees_and_cancels_but_cannot_book(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 3)
    async with running(settings) as (app, client):
        await rebuild_inventory(app.state.ctx)
        slots = await sign_in(client, settings, world.event_id, 5)
        review = await follow(client, await client.post("/book/hold", data=choices(slots.text)[0]))
        await follow(
            client, await client.post("/book/confirm", data=forms(review.text, "/book/confirm")[0])
        )
        page = await client.get("/mine", params={"event": world.event_id})
        assert page.status_code == 200
        mine = await follow(
            client,
            await client.post(
                "/mine",
                data={
                    "event": world.event_id,
                    "voucher": voucher(5),
                    "year": "1950",
                    "month": "4",
                    "day": "1",
                },
            ),
        )
        assert "予約済み" in mine.text and f"/events/{world.event_id}/wait" in mine.text
        token = param(str(mine.url), "s")
        refused = await client.get("/book/slots", params={"s": token})
        assert refused.status_code == 403 and "列" in refused.text
        held = await client.post("/book/hold", data={"s": token, "slot_id": sid})
        assert held.status_code == 403
        assert await pg_slot(db, sid) == (3, 1)


async def test_household_member_books_their_own_dose(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        sid = await make_slot(conn, world.clinic_id, world.event_id, 5)
    async with running(settings) as (app, client):
        await rebuild_inventory(app.state.ctx)
        slots = await sign_in(client, settings, world.event_id, 6)
        token = param(str(slots.url), "s")
        page = await client.get("/book/household", params={"s": token})
        assert page.status_code == 200
        wrong = await client.post(
            "/book/household",
            data={"s": token, "voucher": voucher(7), "year": "1960", "month": "4", "day": "1"},
        )
        assert wrong.status_code == 403
        added = await client.post(
            "/book/household",
            data={"s": token, "voucher": voucher(7), "year": "1950", "month": "4", "day": "1"},
        )
        member_slots = await follow(client, added)
        assert param(str(member_slots.url), "who") == voucher(7)
        for who in (voucher(7), voucher(6)):
            choose = await client.get(
                "/book/slots", params={"s": param(str(member_slots.url), "s"), "who": who}
            )
            form = next(f for f in choices(choose.text) if f["slot_id"] == sid)
            review = await follow(client, await client.post("/book/hold", data=form))
            await follow(
                client,
                await client.post("/book/confirm", data=forms(review.text, "/book/confirm")[0]),
            )
        owners = await db.fetch("SELECT voucher_number FROM bookings WHERE slot_id = $1::uuid", sid)
        assert sorted(r["voucher_number"] for r in owners) == [voucher(6), voucher(7)]


async def test_finish_ends_either_kind_of_session_at_once(
    settings: BookingSettings, world: World
) -> None:
    """A URL left in the history of a shared phone grants nothing after "finish": for a
    session from the line and for one opened from "my bookings"."""
    async with running(settings) as (_, client):
        slots = await sign_in(client, settings, world.event_id, 8)
        admitted = param(str(slots.url), "s")
        mine = await follow(
            client,
            await client.post(
                "/mine",
                data={
                    "event": world.event_id,
                    "voucher": voucher(9),
                    "year": "1950",
                    "month": "4",
                    "day": "1",
                },
            ),
        )
        lookup = param(str(mine.url), "s")
        for token, page in ((admitted, "/book/slots"), (lookup, "/book/mine")):
            assert (await client.get(page, params={"s": token})).status_code == 200
            finished = await client.post("/book/finish", data={"s": token})
            assert finished.status_code == 303
            after = await client.get(page, params={"s": token})
            assert after.status_code == 401 and "<!doctype html>" in after.text, page


async def test_a_refused_post_is_a_page_in_the_language_asked_for(
    settings: BookingSettings, world: World
) -> None:
    """What a page post is refused for (too large, a forged session) is told on a page, in
    the language of the form or the browser: never the JSON the API speaks."""
    async with running(settings) as (_, client):
        large = await client.post(
            "/book/hold",
            content=b"s=x&note=" + b"a" * 20_000,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept-Language": "en",
            },
        )
        assert large.status_code == 413
        assert_page(large)
        assert "What was sent is too large" in large.text

        forged = await client.post(
            "/book/hold", data={"s": "forged.session", "slot": "x", "lang": "en"}
        )
        assert forged.status_code == 401
        assert_page(forged)
        assert 'lang="en"' in forged.text and "ご予約" not in forged.text


async def test_digits_that_are_not_ascii_are_no_number_to_a_page(
    settings: BookingSettings, world: World
) -> None:
    """ "²" or "①" in a page number or a hold's time: isdigit() takes them, int() does not."""
    async with running(settings) as (_, client):
        slots = await sign_in(client, settings, world.event_id, 10)
        token = param(str(slots.url), "s")
        for odd in ("²", "①", "٣"):
            page = await client.get("/book/slots", params={"s": token, "page": odd})
            assert page.status_code == 200, odd
            review = await client.get("/book/review", params={"s": token, "u": odd})
            assert review.status_code < 500, odd
