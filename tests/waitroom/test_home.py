"""The waitroom's `/` is a small page, not a JSON 404; the waiting page leads to one's booking."""

from __future__ import annotations

import asyncpg

from tests.waitroom.conftest import T0_MS, AppFactory, add_event, running

PHONE = "0120-000-222"


async def test_home_page_lists_what_is_open_in_japanese_with_an_english_switch(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    app = make_app(phone=PHONE, booking_url="https://book.example.city")
    async with running(app) as client:
        empty = await client.get("/")
        assert empty.status_code == 200 and empty.headers["content-type"].startswith("text/html")
        assert 'lang="ja"' in empty.text and "いま受付中の予約はありません。" in empty.text
        assert f"お問い合わせ・電話での予約：{PHONE}" in empty.text
        open_now = await add_event(db)
        soon = await add_event(db, state="prequeue", opens_at_ms=T0_MS + 3600_000)
        await add_event(db, state="closed")
        await add_event(
            db,
            state="scheduled",
            prequeue_at_ms=T0_MS + 86400_000,
            opens_at_ms=T0_MS + 2 * 86400_000,
        )
        app2 = make_app(phone="", booking_url="https://book.example.city")
    async with running(app2) as client:
        home = await client.get("/")
        assert f'href="/events/{open_now}/wait?lang=ja"' in home.text and "受付中" in home.text
        assert f'href="/events/{soon}/wait?lang=ja"' in home.text and "受付開始" in home.text
        assert home.text.count("/wait?lang=ja") == 2  # not the closed one, not the later one
        assert "ワクチン接種コールセンター" in home.text  # no number set: the city's centre
        assert 'href="https://book.example.city/mine?lang=ja"' in home.text
        switch = 'href="/?lang=en"'
        assert switch in home.text
        en = await client.get("/?lang=en")
        assert 'lang="en"' in en.text and "Bookings open now" in en.text
        assert "Bookings 65+" in en.text and 'href="/?lang=ja"' in en.text


async def test_waiting_page_links_to_my_booking(db: asyncpg.Pool, make_app: AppFactory) -> None:
    event_id = await add_event(db, rate=6)
    app = make_app(booking_url="https://book.example.city")
    async with running(app) as client:
        await client.post(f"/events/{event_id}/join", headers={"accept": "application/json"})
        ticket = (
            await client.post(
                f"/events/{event_id}/join", headers={"accept": "application/json", "cookie": "x=1"}
            )
        ).json()["ticket"]
        page = await client.get(f"/events/{event_id}/wait", params={"t": ticket})
        mine = f'href="https://book.example.city/mine?event={event_id}&amp;lang=ja"'
        assert mine in page.text and "予約の確認・変更・キャンセル" in page.text
        start = await client.get(f"/events/{event_id}/wait", params={"lang": "en"})
        assert mine.replace("lang=ja", "lang=en") in start.text
        assert "See, change or cancel my booking" in start.text
