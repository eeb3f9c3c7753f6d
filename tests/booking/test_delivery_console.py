"""The administrators' messages page over HTTP: channels saved (and refused in words),
dead deliveries listed with a retry button that revives them, audited; other tenants'
deliveries out of reach."""

from __future__ import annotations

import re

import asyncpg

from booking.delivery.worker import Worker
from booking.settings import BookingSettings
from tests.booking.client import running
from tests.booking.delivery_kit import Clock, Receiver, add_reminders, states, worker_settings
from tests.booking.factory import World, make_staff
from tests.booking.test_console_signin import csrf_of, sign_in

PAGE = "/staff/admin/delivery"
RETRY = re.compile(r'action="(/staff/admin/delivery/(\d+)/retry)"')


async def test_channels_from_the_console(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, admin = await make_staff(conn, world.municipality, "admin")
        _, operator = await make_staff(conn, world.municipality, "operator")
    async with running(settings) as (_, client):
        assert (await sign_in(client, admin)).status_code == 303
        page = await client.get(PAGE)
        assert page.status_code == 200, page.text
        assert "送信を中止したお知らせはありません" in page.text
        # None configured: the log alone is what is used, and what the form shows.
        assert 'id="log" name="log" value="on" checked' in page.text
        csrf = csrf_of(page.text)
        for url in ("", "ftp://bridge.example/hook", "https://"):
            refused = await client.post(
                f"{PAGE}/channels", data={"csrf": csrf, "webhook": "on", "webhook_url": url}
            )
            assert refused.status_code == 422 and 'href="#webhook_url"' in refused.text
        assert await db.fetchval("SELECT count(*) FROM delivery_channels") == 0
        saved = await client.post(
            f"{PAGE}/channels",
            data={
                "csrf": csrf,
                "email": "on",
                "webhook": "on",
                "webhook_url": "https://bridge.example/hook",
            },
        )
        assert saved.status_code == 303 and "done=channels" in saved.headers["location"]
        rows = await db.fetch(
            "SELECT channel, enabled, webhook_url FROM delivery_channels "
            "WHERE municipality_code = $1 ORDER BY channel",
            world.municipality,
        )
        assert [tuple(r) for r in rows] == [
            ("email", True, None),
            ("log", False, None),
            ("webhook", True, "https://bridge.example/hook"),
        ]
        again = await client.post(
            f"{PAGE}/channels",
            data={
                "csrf": csrf,
                "email": "on",
                "webhook": "on",
                "webhook_url": "https://bridge.example/hook",
            },
        )
        assert "done=unchanged" in again.headers["location"]
        audited = await db.fetch(
            "SELECT actor_kind, after FROM audit_log "
            "WHERE action = 'booking.delivery.channels_changed'"
        )
        assert len(audited) == 1 and audited[0]["actor_kind"] == "staff"
        # Without the form's secret nothing changes.
        forged = await client.post(f"{PAGE}/channels", data={"email": "on"})
        assert forged.status_code == 403
        assert await db.fetchval("SELECT count(*) FROM delivery_channels WHERE enabled") == 2

    async with running(settings) as (_, client):
        assert (await sign_in(client, operator)).status_code == 303
        assert (await client.get(PAGE)).status_code == 403


async def test_a_dead_message_is_listed_and_retried_from_the_console(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, admin = await make_staff(conn, world.municipality, "admin")
        _, foreign_admin = await make_staff(conn, world.other_municipality, "admin")
    # The bridge is down for two requests, then back.
    receiver = Receiver(script=["503", "503", "ok"])
    clock = Clock()
    async with receiver.serving() as url, running(settings) as (_, client):
        await db.execute(
            "INSERT INTO delivery_channels (municipality_code, channel, enabled, webhook_url) "
            "VALUES ($1, 'webhook', true, $2)",
            world.municipality,
            url,
        )
        await add_reminders(db, world.municipality, 1)
        worker = Worker(db, worker_settings(max_attempts=2), clock=clock)
        try:
            await worker.run_once()
            clock.advance(10)
            assert (await worker.run_once()).dead == 1
            assert await states(db) == {"dead": 1}

            async with running(settings) as (_, other):
                assert (await sign_in(other, foreign_admin)).status_code == 303
                elsewhere = await other.get(PAGE)
                assert RETRY.search(elsewhere.text) is None
                delivery_id = await db.fetchval("SELECT id FROM deliveries")
                tried = await other.post(
                    f"{PAGE}/{delivery_id}/retry", data={"csrf": csrf_of(elsewhere.text)}
                )
                assert "done=gone" in tried.headers["location"]
                assert await states(db) == {"dead": 1}

            assert (await sign_in(client, admin)).status_code == 303
            page = await client.get(PAGE)
            assert "webhook: HTTP 503" in page.text and "booking.reminder.due" in page.text
            assert "<dd>1</dd>" in page.text  # one given up
            action, shown_id = RETRY.findall(page.text)[0]
            assert int(shown_id) == delivery_id
            assert (await client.post(action, data={})).status_code == 403
            assert await states(db) == {"dead": 1}
            retried = await client.post(action, data={"csrf": csrf_of(page.text)})
            assert retried.status_code == 303 and "done=retried" in retried.headers["location"]
            row = await db.fetchrow("SELECT state::text, attempts FROM deliveries")
            assert row is not None and tuple(row) == ("pending", 0)
            assert (
                await db.fetchval(
                    "SELECT count(*) FROM audit_log WHERE action = 'booking.delivery.retried' "
                    "AND target = $1",
                    str(delivery_id),
                )
                == 1
            )
            done = await worker.run_once()
        finally:
            await worker.aclose()
    assert done.sent == 1 and await states(db) == {"sent": 1}
    assert len(receiver.accepted) == 1 and sum(receiver.tries.values()) == 3
