"""Chance, not just position: a line longer than the stock is told so, early and plainly."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from machiai import keys as shared
from tests.waitroom.conftest import T0_MS, AppFactory, FakeClock, add_event, line_of, running
from waitroom.settings import WaitroomSettings

JSON = {"accept": "application/json", "cookie": "x=1"}
PHONE = "0120-000-111"


async def test_more_people_ahead_than_places_left(
    db: asyncpg.Pool,
    make_app: AppFactory,
    clock: FakeClock,
    redis: aioredis.Redis,
    settings: WaitroomSettings,
) -> None:
    event_id = await add_event(db, rate=6)
    app = make_app(phone=PHONE)
    async with running(app) as client:
        # Booking counted 3 places left, after opening.
        await redis.hset(
            shared.event_inventory(settings.core.redis_prefix, event_id),
            mapping={"remaining": 3, "updated_ms": T0_MS},
        )
        await line_of(app).refresh(event_id)
        answers = [
            (await client.post(f"/events/{event_id}/join", headers=JSON)).json() for _ in range(12)
        ]
        by_ahead = {a["ahead"]: a for a in answers if a["state"] == "waiting"}
        assert "more_ahead_than_slots" not in by_ahead[2]  # 2 ahead, 3 places: a chance
        far = by_ahead[5]  # 5 ahead, 3 places: they will probably be gone
        assert far["more_ahead_than_slots"] is True and far["slots_left"] == 3
        status = await client.get(f"/events/{event_id}/status", params={"t": far["ticket"]})
        assert status.json()["more_ahead_than_slots"] is True
        ja = (await client.get(f"/events/{event_id}/wait", params={"t": far["ticket"]})).text
        assert "あなたの前に 5\u00a0人" in ja and "残りの予約枠：3" in ja
        assert "枠がなくなる見込みです" in ja  # what it means
        assert "順番はそのまま残ります" in ja  # standby: keep the page, keep the place
        assert f"お電話でも予約できます：{PHONE}" in ja  # the phone
        en = await client.get(f"/events/{event_id}/wait", params={"t": far["ticket"], "lang": "en"})
        assert "More people are ahead of you than there are places left" in en.text
        near = await client.get(f"/events/{event_id}/wait", params={"t": by_ahead[2]["ticket"]})
        assert "枠がなくなる見込み" not in near.text.split("<script")[0]
