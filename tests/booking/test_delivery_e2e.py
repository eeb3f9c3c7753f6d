"""Issue 15's end-to-end promise: a booking made through the resident's pages (over real
HTTP, no JavaScript: pass, sign-in, slot, hold, review with an e-mail address, confirm)
produces exactly one e-mail at a local SMTP server and one signed webhook at a local
receiver that checks the signature; and a receiver that fails three times gets the
message on the fourth attempt."""

from __future__ import annotations

import asyncpg
import httpx

from booking.app import create_app
from booking.delivery.worker import Worker
from booking.services.inventory import rebuild_inventory
from booking.settings import BookingSettings
from tests.booking.delivery_kit import (
    Clock,
    Receiver,
    set_channels,
    smtp_server,
    states,
    worker_settings,
)
from tests.booking.factory import World, make_slot
from tests.booking.test_pages import follow, forms, sign_in
from tests.servers import serving


async def _book_through_the_pages(
    base: str, settings: BookingSettings, world: World, email: str
) -> str:
    """The no-JavaScript journey; the done page's confirmation code."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        slots = await sign_in(client, settings, world.event_id, 1)
        assert slots.status_code == 200, slots.text[:500]
        hold = forms(slots.text, "/book/hold")[0]
        slot_id = slots.text.split('name="slot_id" value="', 1)[1].split('"', 1)[0]
        review = await follow(
            client, await client.post("/book/hold", data={**hold, "slot_id": slot_id})
        )
        assert review.status_code == 200 and 'name="email"' in review.text
        confirm = forms(review.text, "/book/confirm")[0]
        done = await follow(
            client, await client.post("/book/confirm", data={**confirm, "email": email})
        )
        assert done.status_code == 200, done.text[:500]
        assert email in done.text  # the page says where messages will go
        return done.text.split('class="code"', 1)[1].split(">", 1)[1].split("<", 1)[0]


async def test_a_booking_through_the_pages_sends_one_email_and_one_signed_webhook(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        await make_slot(conn, world.clinic_id, world.event_id, 3, days=2)
    # The receiver fails three times (two 503s and a timeout), then takes the message.
    receiver = Receiver(script=["503", "hang", "503", "ok"], hang_s=1.0)
    app = create_app(settings)
    with smtp_server() as (sink, smtp):
        async with receiver.serving() as hook_url, serving(app) as base:
            await rebuild_inventory(app.state.ctx)
            await set_channels(db, world.municipality, email=True, webhook=hook_url)
            code = await _book_through_the_pages(base, settings, world, "hanako@example.jp")
            clock = Clock()
            worker = Worker(db, worker_settings(smtp=smtp), clock=clock)
            try:
                attempts = 0
                while await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'") \
                        or not attempts:  # fmt: skip
                    await worker.run_once()
                    clock.advance(10)  # past any backoff the settings allow
                    attempts += 1
                    assert attempts < 20
            finally:
                await worker.aclose()
    assert await states(db) == {"sent": 2}
    [mail] = sink.messages
    assert mail["To"] == "hanako@example.jp"
    assert code.replace(" ", "") in mail["Subject"].replace(" ", "")
    [hook] = receiver.accepted.values()
    assert hook["topic"] == "booking.booking.confirmed"
    assert receiver.refused == 0 and receiver.duplicates == 0
    [tries] = receiver.tries.values()
    assert tries == 4  # failed three times, accepted on the fourth
    row = await db.fetchrow("SELECT attempts FROM deliveries WHERE channel = 'webhook'")
    assert row is not None and row["attempts"] == 4
