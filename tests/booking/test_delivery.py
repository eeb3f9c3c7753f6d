"""The delivery worker against a local SMTP server and a local webhook receiver: fan-out,
retries with backoff, the dead state, two workers on one outbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg

from booking.delivery.channels.log import LogChannel
from booking.delivery.channels.webhook import WebhookChannel
from booking.delivery.fanout import idempotency_key
from booking.delivery.worker import Worker
from booking.services.confirm import cancel_booking
from booking.services.context import Ctx
from tests.booking.delivery_kit import (
    SECRET,
    Clock,
    Receiver,
    add_reminders,
    set_channels,
    smtp_server,
    states,
    worker_settings,
)
from tests.booking.factory import World, make_slot
from tests.booking.helpers import book, resident, web


async def drain(worker: Worker, clock: Clock, step_s: float, passes: int = 30) -> int:
    """Passes until nothing is pending, the clock moving ``step_s`` between them."""
    for done in range(1, passes + 1):
        await worker.run_once()
        clock.advance(step_s)
        if not await worker.pool.fetchval(
            "SELECT count(*) FROM deliveries WHERE state = 'pending'"
        ):
            return done
    raise AssertionError("deliveries still pending")


async def test_a_booking_sends_one_email_and_one_signed_webhook(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        slot = await make_slot(conn, world.clinic_id, world.event_id, 5)
    receiver = Receiver()
    with smtp_server() as (sink, smtp):
        async with receiver.serving() as url:
            await set_channels(db, world.municipality, email=True, webhook=url)
            made = await book(ctx, web(world.municipality), resident(world.municipality, 1), slot)
            booking = made["booking"]
            # The confirmation page stores the address with the booking (another part's work).
            await db.execute(
                "UPDATE bookings SET contact_email = 'hanako@example.jp', contact_locale = 'en' "
                "WHERE id = $1::uuid",
                booking["booking_id"],
            )
            # A slot change is no resident's message: published, nothing sent.
            await db.execute(
                "INSERT INTO outbox (topic, payload) VALUES ('booking.slot.closed', '{}'::jsonb)"
            )
            clock = Clock()
            worker = Worker(db, worker_settings(smtp=smtp), clock=clock)
            try:
                await drain(worker, clock, 1)
            finally:
                await worker.aclose()
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    assert await states(db) == {"sent": 2}
    [mail] = sink.messages
    assert mail["To"] == "hanako@example.jp" and mail["From"] == "yoyaku@city.example"
    code = booking["confirmation_code"]
    assert mail["Subject"] == f"Your vaccination booking is confirmed ({code})"
    assert "Vaccination site: Clinic" in mail.get_content()
    [hook] = receiver.accepted.values()
    assert hook["topic"] == "booking.booking.confirmed"
    assert hook["payload"]["booking_id"] == booking["booking_id"]
    assert hook["text"]["locale"] == "en" and code in hook["text"]["subject"]
    assert receiver.refused == 0 and receiver.duplicates == 0

    # A cancellation says who cancelled, in the resident's language.
    await cancel_booking(ctx, web(world.municipality), booking["booking_id"], None)
    with smtp_server() as (sink, smtp):
        worker = Worker(db, worker_settings(smtp=smtp), clock=clock)
        try:
            async with receiver.serving() as url:
                await set_channels(db, world.municipality, email=True, webhook=url)
                await drain(worker, clock, 1)
        finally:
            await worker.aclose()
    [mail] = sink.messages
    assert "You cancelled this booking." in mail.get_content()


async def test_japanese_is_the_default_and_no_channels_means_the_log(
    db: asyncpg.Pool, world: World
) -> None:
    await add_reminders(db, world.municipality, 3)
    log = LogChannel()
    clock = Clock()
    worker = Worker(db, worker_settings(), channels={"log": log}, clock=clock)
    await drain(worker, clock, 1)
    assert log.sent == 3
    rows = await db.fetch("SELECT channel, recipient, locale, idempotency_key FROM deliveries")
    assert {(r["channel"], r["recipient"], r["locale"]) for r in rows} == {("log", "log", "ja")}
    # Stable keys: the same message, channel and recipient always make the same key.
    outbox_ids = await db.fetch("SELECT outbox_id FROM deliveries ORDER BY outbox_id")
    assert sorted(r["idempotency_key"] for r in rows) == sorted(
        idempotency_key(r["outbox_id"], "log", "log") for r in outbox_ids
    )


async def test_a_receiver_failing_three_times_gets_the_message_on_the_fourth(
    db: asyncpg.Pool, world: World
) -> None:
    # Two 503s and a request that outlasts the sender's patience, then it takes it.
    receiver = Receiver(script=["503", "hang", "503", "ok"], hang_s=1.0)
    clock = Clock()
    async with receiver.serving() as url:
        await set_channels(db, world.municipality, webhook=url)
        await add_reminders(db, world.municipality, 2)
        settings = worker_settings(timeout_s=0.3, backoff_base_s=1, backoff_cap_s=4)
        worker = Worker(db, settings, clock=clock)
        try:
            first = await worker.run_once()
            assert (first.fanned, first.claimed, first.retried) == (2, 2, 2)
            row = await db.fetchrow(
                "SELECT next_attempt_at, last_error, leased_until FROM deliveries LIMIT 1"
            )
            assert row is not None
            # Full jitter within the first step's ceiling (base x 2^0), lease released.
            assert clock() <= row["next_attempt_at"] < clock() + timedelta(seconds=1)
            assert row["leased_until"] is None and row["last_error"] == "webhook: HTTP 503"
            await drain(worker, clock, 4)
        finally:
            await worker.aclose()
    rows = await db.fetch("SELECT state::text, attempts, last_error FROM deliveries")
    assert [(r["state"], r["attempts"]) for r in rows] == [("sent", 4), ("sent", 4)]
    assert {r["last_error"] for r in rows} == {"webhook: HTTP 503"}
    assert sorted(receiver.tries.values()) == [4, 4]
    assert len(receiver.accepted) == 2 and receiver.duplicates == 0


async def test_backoff_waits_grow_and_stay_under_the_cap(db: asyncpg.Pool, world: World) -> None:
    receiver = Receiver(script=["503"])
    clock = Clock()
    async with receiver.serving() as url:
        await set_channels(db, world.municipality, webhook=url)
        await add_reminders(db, world.municipality, 40)
        settings = worker_settings(max_attempts=4, backoff_base_s=10, backoff_cap_s=25)
        worker = Worker(db, settings, clock=clock)
        try:
            waits: list[list[float]] = []
            for _ in range(3):
                await worker.run_once()
                rows = await db.fetch("SELECT next_attempt_at FROM deliveries")
                waits.append([(r["next_attempt_at"] - clock()).total_seconds() for r in rows])
                clock.advance(25)
            last = await worker.run_once()
        finally:
            await worker.aclose()
    # Attempt n waits uniformly in [0, min(cap, base x 2^(n-1))): 10, 20, then the cap 25.
    for ceiling, seen in zip((10, 20, 25), waits, strict=True):
        assert all(0 <= w < ceiling for w in seen)
        assert max(seen) > ceiling / 2  # spread over the range, not all at its start
    # The fourth attempt fails too: dead, with the reason kept.
    assert last.dead == 40 and await states(db) == {"dead": 40}


async def test_two_workers_send_each_message_once(
    db: asyncpg.Pool, database_url: str, world: World
) -> None:
    receiver = Receiver()
    async with receiver.serving() as url:
        await set_channels(db, world.municipality, webhook=url)
        await add_reminders(db, world.municipality, 300)
        clock = Clock()
        pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=3) for _ in range(2)]
        workers = [Worker(p, worker_settings(batch_size=20), clock=clock) for p in pools]
        claimed = [0, 0]

        async def work(i: int) -> None:
            while await db.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            ) or await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'pending'"):
                done = await workers[i].run_once()
                claimed[i] += done.claimed
                await asyncio.sleep(0)

        try:
            await asyncio.gather(work(0), work(1))
        finally:
            for w, p in zip(workers, pools, strict=True):
                await w.aclose()
                await p.close()
    assert await states(db) == {"sent": 300}
    assert len(receiver.accepted) == 300 and sum(receiver.tries.values()) == 300
    assert receiver.duplicates == 0 and sum(claimed) == 300 and min(claimed) > 0


async def test_a_wrong_key_is_refused_by_the_receiver_and_ends_dead(
    db: asyncpg.Pool, world: World
) -> None:
    receiver = Receiver(secret="another-key-" + "y" * 32)
    clock = Clock()
    async with receiver.serving() as url:
        await set_channels(db, world.municipality, webhook=url)
        await add_reminders(db, world.municipality, 1)
        channel = WebhookChannel([SECRET], 1.0)
        worker = Worker(db, worker_settings(), channels={"webhook": channel}, clock=clock)
        try:
            done = await worker.run_once()
        finally:
            await worker.aclose()
    # A 4xx other than 408/425/429 is the receiver refusing the request itself: no retry.
    assert (done.dead, receiver.refused, receiver.accepted) == (1, 1, {})
    assert await db.fetchval("SELECT last_error FROM deliveries") == "webhook: HTTP 401"
