"""The administrators' event pages, against a real waitroom on a real port: the console asks
the waitroom (the owner of an event's live state) with the administrator's token."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta

import asyncpg

from booking.settings import BookingSettings
from machiai.embedded import free_port
from tests.booking.client import running
from tests.booking.factory import World, make_staff
from tests.booking.test_console_signin import csrf_of, sign_in
from tests.servers import serving
from waitroom.app import create_app as waitroom_app
from waitroom.settings import WaitroomSettings


def local(at: datetime) -> str:
    return at.astimezone(UTC).astimezone().strftime("%Y-%m-%dT%H:%M")


def jst(days: float) -> str:
    moment = datetime.now(UTC) + timedelta(days=days)
    return (moment + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M")


NEW = {
    "id": "covid-65plus-2027",
    "name_ja": "65歳以上 接種予約",
    "name_en": "Bookings 65+",
    "prequeue_at": jst(1),
    "opens_at": jst(1.1),
    "closes_at": jst(30),
    "admit_per_minute": "600",
    "max_active": "1,000",
    "phone_share_pct": "",
    "phone_release_at": "",
    "eligibility_group": "",
}


async def test_an_administrator_runs_events_from_the_console(
    settings: BookingSettings, env_vars: dict[str, str], db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, admin = await make_staff(conn, world.municipality, "admin")
        _, clerk = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
    async with serving(waitroom_app(WaitroomSettings.from_env(env_vars))) as waitroom:
        console = dataclasses.replace(settings, waitroom_url=waitroom)
        async with running(console) as (_, client):
            assert (await sign_in(client, admin)).status_code == 303
            listed = await client.get("/staff/admin/events")
            assert listed.status_code == 200 and world.event_id in listed.text
            assert world.other_event_id not in listed.text

            form = await client.get("/staff/admin/events/new")
            csrf = csrf_of(form.text)
            # Checked here first: every field at fault is named.
            bad = await client.post(
                "/staff/admin/events",
                data={**NEW, "csrf": csrf, "id": "-Bad", "admit_per_minute": "0", "opens_at": "x"},
            )
            assert bad.status_code == 422
            for field in ("id", "admit_per_minute", "opens_at"):
                assert f'href="#{field}"' in bad.text
            # The waitroom's own rule (the order of the times) comes back in words.
            order = await client.post(
                "/staff/admin/events",
                data={**NEW, "csrf": csrf, "opens_at": jst(40)},
            )
            assert order.status_code == 422 and "受付開始 &lt; 受付終了" in order.text
            created = await client.post("/staff/admin/events", data={**NEW, "csrf": csrf})
            assert created.status_code == 303, created.text
            page = await client.get(created.headers["location"])
            assert "予約受付を作成しました" in page.text
            row = await db.fetchrow(
                "SELECT municipality_code, max_active, state::text FROM events WHERE id = $1",
                NEW["id"],
            )
            assert row is not None and tuple(row) == (world.municipality, 1000, "scheduled")
            again = await client.post("/staff/admin/events", data={**NEW, "csrf": csrf})
            assert again.status_code == 422 and "すでにあります" in again.text

            # A change: only what changed goes to the waitroom, which records it.
            changed = await client.post(
                f"/staff/admin/events/{NEW['id']}",
                data={**NEW, "csrf": csrf, "admit_per_minute": "300"},
            )
            assert changed.status_code == 303 and "done=changed" in changed.headers["location"]
            assert (
                await db.fetchval("SELECT admit_per_minute FROM events WHERE id = $1", NEW["id"])
                == 300
            )
            audit = await db.fetch(
                "SELECT action, after->>'admit_per_minute' AS rate FROM audit_log "
                "WHERE target = $1 ORDER BY id",
                NEW["id"],
            )
            assert [(r["action"], r["rate"]) for r in audit] == [
                ("waitroom.event.created", "600"),
                ("waitroom.event.updated", "300"),
            ]

            # Pause: a confirmation page first; a form without the session's secret does nothing.
            confirm = await client.get(
                f"/staff/admin/events/{NEW['id']}/confirm", params={"action": "pause"}
            )
            assert confirm.status_code == 200 and "何も変更せずに戻る" in confirm.text
            forged = await client.post(
                f"/staff/admin/events/{NEW['id']}/state", data={"action": "pause"}
            )
            assert forged.status_code == 403
            assert (
                await db.fetchval("SELECT state::text FROM events WHERE id = $1", NEW["id"])
                == "scheduled"
            )
            paused = await client.post(
                f"/staff/admin/events/{NEW['id']}/state", data={"action": "pause", "csrf": csrf}
            )
            assert paused.status_code == 303
            assert (
                await db.fetchval("SELECT state::text FROM events WHERE id = $1", NEW["id"])
                == "paused"
            )
            twice = await client.post(
                f"/staff/admin/events/{NEW['id']}/state", data={"action": "pause", "csrf": csrf}
            )
            assert twice.status_code == 409

            live = await client.get(f"/staff/admin/events/{world.event_id}/live")
            assert live.status_code == 200
            assert 'data-refresh="10"' in live.text and "<svg" in live.text
            assert (
                re.search(r"待機中の人数</dt><dd>\d", live.text) and "案内速度の係数" in live.text
            )
            assert "予約処理の p95" in live.text

            # Another municipality's event does not exist here.
            foreign = await client.get(f"/staff/admin/events/{world.other_event_id}")
            assert foreign.status_code == 404

        # The waitroom down: the live page says so and still shows the bookings; a change
        # is "busy", not a crash.
        gone = dataclasses.replace(settings, waitroom_url=f"http://127.0.0.1:{free_port()}")
        async with running(gone) as (_, client):
            assert (await sign_in(client, admin)).status_code == 303
            live = await client.get(f"/staff/admin/events/{world.event_id}/live")
            assert live.status_code == 200 and "待合室に接続できない" in live.text
            page = await client.get(f"/staff/admin/events/{NEW['id']}")
            busy = await client.post(
                f"/staff/admin/events/{NEW['id']}/state",
                data={"action": "resume", "csrf": csrf_of(page.text)},
            )
            assert busy.status_code == 503

        async with running(console) as (_, client):
            assert (await sign_in(client, clerk)).status_code == 303
            assert (await client.get("/staff/admin/events")).status_code == 403


def test_the_chart_counts_each_minute_of_the_last_half_hour() -> None:
    from booking.console.admin_events import CHART_MINUTES, chart

    now = datetime(2026, 12, 1, 0, 30, 40, tzinfo=UTC)
    minute = now.replace(second=0)
    per_minute = {
        minute: 4,
        minute - timedelta(minutes=1): 8,
        minute - timedelta(minutes=CHART_MINUTES): 99,  # just outside the window
    }
    drawn = chart(per_minute, now)
    bars = drawn["bars"]
    assert len(bars) == CHART_MINUTES == 30
    assert [b["n"] for b in bars[-2:]] == [8, 4] and drawn["total"] == 12 and drawn["top"] == 8
    # The tallest bar fills the height; the others in proportion, from the baseline.
    assert bars[-2]["h"] == drawn["height"] and bars[-1]["h"] == drawn["height"] / 2
    assert bars[-1]["y"] + bars[-1]["h"] == drawn["height"]
    assert (drawn["first"], drawn["last"]) == ("09:01", "09:30")  # Japan time
