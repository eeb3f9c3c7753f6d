"""The waiting page over HTTP: ja/en, no JS, no cookies, small, calm when Redis is down."""

from __future__ import annotations

import re
from dataclasses import replace

import asyncpg

from machiai.embedded import free_port
from tests.waitroom.conftest import AppFactory, FakeClock, add_event, line_of, running
from waitroom.settings import WaitroomSettings

FORM = {"content-type": "application/x-www-form-urlencoded", "cookie": "x=1"}
MAX_PAGE_BYTES = 15 * 1024


async def test_join_form_then_waiting_page_in_japanese(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock
) -> None:
    event_id = await add_event(db, rate=6)
    async with running(make_app()) as client:
        await client.post(f"/events/{event_id}/join", headers={"accept": "application/json"})
        start = await client.get(f"/events/{event_id}/wait", headers={"cookie": "x=1"})
        assert start.status_code == 200 and 'lang="ja"' in start.text
        assert (
            f'action="/events/{event_id}/join?lang=ja"' in start.text and "列に並ぶ" in start.text
        )
        joined = await client.post(f"/events/{event_id}/join?lang=ja", headers=FORM)
        assert joined.status_code == 303
        where = joined.headers["location"]
        assert where.startswith(f"/events/{event_id}/wait?t=") and where.endswith("&lang=ja")
        # Cookies off: the ticket travels in the URL alone.
        page = await client.get(where, headers={"cookie": "x=1"})
        html = page.text
        assert page.status_code == 200 and len(page.content) < MAX_PAGE_BYTES
        assert 'aria-live="polite"' in html and 'role="status"' in html
        assert "次があなたの番です。" in html and "65歳以上 接種予約" in html
        refresh = re.search(
            r'<noscript><meta http-equiv="refresh" content="(\d+);url=([^"]+)"', html
        )
        assert refresh is not None and refresh.group(2).replace("&amp;", "&") == where
        assert 1 <= int(refresh.group(1)) <= 3
        assert page.headers["cache-control"] == "no-store"


async def test_english_by_query_or_accept_language(db: asyncpg.Pool, make_app: AppFactory) -> None:
    event_id = await add_event(db, rate=6)
    async with running(make_app()) as client:
        await client.post(f"/events/{event_id}/join", headers={"accept": "application/json"})
        ticket = (
            await client.post(
                f"/events/{event_id}/join", headers={"accept": "application/json", "cookie": "x=1"}
            )
        ).json()["ticket"]
        by_query = await client.get(f"/events/{event_id}/wait", params={"t": ticket, "lang": "en"})
        by_header = await client.get(
            f"/events/{event_id}/wait",
            params={"t": ticket},
            headers={"accept-language": "en-GB,en;q=0.9"},
        )
        for page in (by_query, by_header):
            assert 'lang="en"' in page.text and "You are next." in page.text
            assert "Bookings 65+" in page.text and len(page.content) < MAX_PAGE_BYTES


async def test_same_resource_as_json(db: asyncpg.Pool, make_app: AppFactory) -> None:
    event_id = await add_event(db, rate=6)
    async with running(make_app()) as client:
        ticket = (
            await client.post(f"/events/{event_id}/join", headers={"accept": "application/json"})
        ).json()["ticket"]
        r = await client.get(f"/events/{event_id}/wait", headers={"accept": "application/json"})
        assert r.status_code == 200 and r.json()["state"] == "admitted"
        status = await client.get(f"/events/{event_id}/status", params={"t": ticket})
        assert r.json()["position"] == status.json()["position"]


async def test_admitted_page_forwards_to_booking_without_js(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    event_id = await add_event(db)
    async with running(make_app()) as client:
        ticket = (
            await client.post(f"/events/{event_id}/join", headers={"accept": "application/json"})
        ).json()["ticket"]
        page = await client.get(f"/events/{event_id}/wait", params={"t": ticket})
        assert "あなたの番です" in page.text
        enter_url = f"/events/{event_id}/enter?t={ticket}&amp;lang=ja"
        assert f'content="3;url={enter_url}"' in page.text and f'href="{enter_url}"' in page.text
        go = await client.get(enter_url.replace("&amp;", "&"), follow_redirects=False)
        assert go.status_code == 303 and go.headers["location"].startswith(
            "http://127.0.0.1:8001/enter?pass="
        )


async def test_unknown_event_and_bad_ticket_pages(db: asyncpg.Pool, make_app: AppFactory) -> None:
    event_id = await add_event(db)
    async with running(make_app()) as client:
        missing = await client.get("/events/no-such-event/wait")
        assert missing.status_code == 404 and "見つかりませんでした" in missing.text
        missing_json = await client.get(
            "/events/no-such-event/status", headers={"x-machiai-ticket": "x"}
        )
        assert missing_json.status_code in (403, 404)
        bad = await client.get(f"/events/{event_id}/wait", params={"t": "tampered"})
        assert bad.status_code == 200 and "整理券が確認できませんでした" in bad.text
        malformed = await client.get("/events/BAD_ID!/wait")
        assert malformed.status_code == 422 and malformed.json()["error"]["code"] == "invalid_input"
        junk = await client.post(
            f"/events/{event_id}/join",
            content=b"{not json",
            headers={"content-type": "application/json", "accept": "application/json"},
        )
        assert junk.status_code == 422


async def test_redis_unreachable_gives_calm_page_never_500(
    db: asyncpg.Pool, make_app: AppFactory, settings: WaitroomSettings
) -> None:
    event_id = await add_event(db)
    dead = replace(settings.core, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with running(make_app(core=dead, redis_timeout_s=0.5)) as client:
        page = await client.get(f"/events/{event_id}/wait")
        assert page.status_code == 503 and page.headers["retry-after"] == "5"
        assert "このページを開いたままお待ちください" in page.text
        assert '<meta http-equiv="refresh" content="5;' in page.text
        en = await client.get(f"/events/{event_id}/wait", params={"lang": "en"})
        assert "Please keep this page open" in en.text
        for method, path in (("POST", "join"), ("GET", "status"), ("POST", "enter")):
            r = await client.request(
                method,
                f"/events/{event_id}/{path}",
                headers={"accept": "application/json", "x-machiai-ticket": "x"},
            )
            assert r.status_code in (403, 503), (path, r.status_code)
        joined = await client.post(
            f"/events/{event_id}/join", headers={"accept": "application/json"}
        )
        assert joined.status_code == 503 and joined.json()["error"]["code"] == "busy"
        assert "retry-after" in joined.headers


async def test_stale_snapshot_is_not_shown_as_truth(db: asyncpg.Pool, make_app: AppFactory) -> None:
    event_id = await add_event(db)
    app = make_app()
    async with running(app) as client:
        ticket = (
            await client.post(f"/events/{event_id}/join", headers={"accept": "application/json"})
        ).json()["ticket"]
        line = line_of(app)
        entry = line._events[event_id]
        assert entry.snapshot is not None
        # As if the refresher had not reached Redis for a minute.
        entry.snapshot = replace(entry.snapshot, fetched_mono=entry.snapshot.fetched_mono - 60)
        page = await client.get(f"/events/{event_id}/wait", params={"t": ticket})
        assert page.status_code == 503 and "このページを開いたままお待ちください" in page.text
        status = await client.get(f"/events/{event_id}/status", params={"t": ticket})
        assert status.status_code == 503 and status.json()["error"]["code"] == "busy"


async def test_refused_form_join_is_a_page_not_json(
    db: asyncpg.Pool, make_app: AppFactory, settings: WaitroomSettings
) -> None:
    closed = await add_event(db, state="closed")
    async with running(make_app(join_per_minute=6, join_burst=2)) as client:
        r = await client.post(f"/events/{closed}/join?lang=ja", headers=FORM)
        assert r.status_code == 409 and "text/html" in r.headers["content-type"]
        assert "この予約受付は終了しました。" in r.text
        open_event = await add_event(db)
        first = await client.post(f"/events/{open_event}/join?lang=en", headers=FORM)
        assert first.status_code == 303
        limited = await client.post(f"/events/{open_event}/join?lang=en", headers=FORM)
        assert limited.status_code == 429 and "Too many requests" in limited.text
        assert int(limited.headers["retry-after"]) >= 1
    dead = replace(settings.core, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with running(make_app(core=dead, redis_timeout_s=0.5)) as client:
        busy = await client.post(f"/events/{closed}/join", headers=FORM)
        assert busy.status_code == 503 and "このページを開いたままお待ちください" in busy.text


async def test_status_finds_the_ticket_in_header_query_or_cookie(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    event_id = await add_event(db, rate=6)
    async with running(make_app()) as client:
        await client.post(f"/events/{event_id}/join", headers={"accept": "application/json"})
        client.cookies.clear()
        mine = await client.post(f"/events/{event_id}/join", headers={"accept": "application/json"})
        ticket = mine.json()["ticket"]
        assert "HttpOnly" in mine.headers["set-cookie"]
        assert f"Path=/events/{event_id}" in mine.headers["set-cookie"]
        by_cookie = await client.get(f"/events/{event_id}/status")
        by_query = await client.get(
            f"/events/{event_id}/status", params={"t": ticket}, headers={"cookie": "x=1"}
        )
        by_header = await client.get(
            f"/events/{event_id}/status", headers={"x-machiai-ticket": ticket, "cookie": "x=1"}
        )
        for r in (by_cookie, by_query, by_header):
            assert r.status_code == 200 and r.json()["position"] == 1, r.text
            assert r.headers["content-type"] == "application/json"
        head = await client.head(f"/events/{event_id}/status")
        assert head.status_code == 200
        nothing = await client.get(f"/events/{event_id}/status", headers={"cookie": "x=1"})
        assert nothing.status_code == 401 and nothing.json()["error"]["code"] == "ticket_missing"
        english = await client.get(
            f"/events/{event_id}/status", headers={"cookie": "x=1", "accept-language": "en"}
        )
        assert english.json()["error"]["message"] == "No ticket was sent. Please join the line."
        unknown = await client.get("/events/no-such-event/status", params={"t": ticket})
        assert unknown.status_code == 403  # the ticket is checked before the event is looked up
