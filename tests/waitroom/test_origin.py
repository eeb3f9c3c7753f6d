"""A join another site's page sends never costs a resident their ticket or place; a first
join from a city's site is not blocked (it lands on the waiting page and its button)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from starlette.types import Scope

from tests.waitroom.conftest import AppFactory, add_event, running
from waitroom.web.origin import from_another_site

HOST = "waitroom"  # the test client's base_url host
FORM = "application/x-www-form-urlencoded"
# What Chrome sends with a form on the waitroom's own page: its origin hidden (the pages'
# Referrer-Policy: no-referrer), Sec-Fetch-Site telling the truth.
OWN_PAGE = {"content-type": FORM, "origin": "null", "sec-fetch-site": "same-origin"}
# Another site's auto-submitting form, as a current browser sends it: the SameSite=Lax
# ticket cookie left out.
OTHER_SITE = {
    "content-type": FORM,
    "origin": "http://prize.example",
    "sec-fetch-site": "cross-site",
    "cookie": "x=1",
}


def scope_with(**headers: str) -> Scope:
    return {
        "type": "http",
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


@pytest.mark.parametrize(
    ("headers", "elsewhere"),
    [
        ({}, False),  # an API client, curl, a load test
        ({"host": HOST}, False),
        ({"sec_fetch_site": "same-origin", "origin": "null"}, False),
        ({"sec_fetch_site": "none"}, False),  # typed, bookmarked
        ({"sec_fetch_site": "cross-site"}, True),
        ({"sec_fetch_site": "same-site", "origin": "https://www.city.example"}, True),
        # Sec-Fetch-Site decides when it is there; without it, the Origin against the Host.
        ({"sec_fetch_site": "same-origin", "origin": "http://prize.example"}, False),
        ({"host": "wait.city.example", "origin": "https://wait.city.example"}, False),
        ({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}, False),
        ({"host": "wait.city.example", "origin": "https://prize.example"}, True),
        ({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8001"}, True),
        ({"host": "wait.city.example", "origin": "null"}, False),
    ],
)
def test_from_another_site(headers: dict[str, str], elsewhere: bool) -> None:
    assert from_another_site(scope_with(**headers)) is elsewhere


def _ticket_in(location: str) -> str:
    return location.split("t=")[1].split("&")[0]


async def _position(client: httpx.AsyncClient, event_id: str, ticket: str) -> int:
    r = await client.get(f"/events/{event_id}/status", headers={"x-machiai-ticket": ticket})
    position: int = r.json()["position"]
    return position


async def test_a_join_from_another_site_keeps_the_ticket_and_the_place(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    event_id = await add_event(db, rate=6)
    w = f"/events/{event_id}"
    json_only = {"accept": "application/json", "cookie": "x=1"}
    async with running(make_app()) as client:
        await client.post(f"{w}/join", headers=json_only)  # straight in
        mine = await client.post(f"{w}/join?lang=ja", headers={**OWN_PAGE, "cookie": "x=1"})
        assert mine.status_code == 303 and "set-cookie" in mine.headers
        ticket = _ticket_in(mine.headers["location"])
        cookie = f"machiai_ticket_{event_id}={ticket}"
        place = await _position(client, event_id, ticket)
        someone = (await client.post(f"{w}/join", headers=json_only)).json()
        theirs = someone["ticket"]
        client.cookies.clear()

        lures = [
            # A current browser: no cookie sent, and the lure's own ticket in the form.
            ({**OTHER_SITE}, f"t={theirs}"),
            ({**OTHER_SITE}, ""),
            # An empty text/plain form: no body, so it would take the API's fast path.
            ({**OTHER_SITE, "content-type": "text/plain"}, ""),
            # An older browser: the cookie sent, no Sec-Fetch-Site, only the Origin.
            (
                {"content-type": FORM, "origin": "http://prize.example", "cookie": cookie},
                f"t={theirs}",
            ),
            # A city's own subdomain (same site, another origin).
            ({**OTHER_SITE, "sec-fetch-site": "same-site"}, f"t={theirs}"),
        ]
        for headers, body in lures:
            r = await client.post(f"{w}/join", headers=headers, content=body)
            assert r.status_code == 303, (headers, r.status_code, r.text[:200])
            assert r.headers["location"] == f"{w}/wait?lang=ja", headers
            assert "set-cookie" not in r.headers, headers  # the resident's cookie stays
            # The browser follows with a GET, which carries the Lax cookie: the place held.
            page = await client.get(r.headers["location"], headers={"cookie": cookie})
            assert page.status_code == 200 and f"t={ticket}" in page.text
            assert await _position(client, event_id, ticket) == place

        # No place was handed out meanwhile: the next one is right behind "someone".
        later = (await client.post(f"{w}/join", headers=json_only)).json()
        assert later["position"] == someone["position"] + 1
        refused = await client.post(
            f"{w}/join", headers={**OTHER_SITE, "accept": "application/json"}
        )
        assert refused.status_code == 403 and "set-cookie" not in refused.headers
        assert refused.json()["error"]["code"] == "cross_site_join"


async def test_a_first_join_from_a_city_site_is_not_blocked(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    """The city links to the waiting page (a GET) or posts a form to the join: either way
    the resident gets the waiting page with its button, and the button joins."""
    event_id = await add_event(db, rate=6)
    w = f"/events/{event_id}"
    async with running(make_app()) as client:
        link = await client.get(
            f"{w}/wait", headers={"sec-fetch-site": "cross-site", "cookie": "x=1"}
        )
        assert link.status_code == 200 and f'action="{w}/join?lang=ja"' in link.text
        form = await client.post(f"{w}/join?lang=en", headers=OTHER_SITE)
        assert form.status_code == 303 and form.headers["location"] == f"{w}/wait?lang=en"
        page = await client.get(form.headers["location"], headers={"cookie": "x=1"})
        assert f'action="{w}/join?lang=en"' in page.text
        joined = await client.post(f"{w}/join?lang=en", headers={**OWN_PAGE, "cookie": "x=1"})
        assert joined.status_code == 303 and "/wait?t=" in joined.headers["location"]
        assert "set-cookie" in joined.headers
        # An older browser on the waitroom's own page: Origin equal to the Host.
        older = await client.post(
            f"{w}/join",
            headers={"content-type": FORM, "origin": f"http://{HOST}", "cookie": "x=1"},
        )
        assert older.status_code == 303 and "/wait?t=" in older.headers["location"]
