"""The waitroom's redirect into booking carries its request id (``rid``): booking's log of
the arrival is written under that id (the waitroom's side: tests/waitroom/test_tokens.py)."""

from __future__ import annotations

import httpx

from booking.app import create_app
from booking.settings import BookingSettings
from tests.booking.client import mint_pass
from tests.booking.factory import World
from tests.machiai.test_request_id import json_lines


async def test_booking_logs_the_arrival_under_the_waitrooms_request_id(
    settings: BookingSettings, world: World
) -> None:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://booking") as client,
    ):
        with json_lines("booking") as lines:
            pass_token = mint_pass(settings, world.event_id)
            page = await client.get(f"/enter?pass={pass_token}&rid=wr-7f3a9c2e11")
    assert page.status_code == 200
    arrived = [line for line in lines if "arrived from the waitroom" in str(line["message"])]
    assert [line["request_id"] for line in arrived] == ["wr-7f3a9c2e11"]
