"""The admin API: staff tokens, own municipality only, live changes, audit, bad input → 4xx."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import asyncpg

from machiai.tokens import Tokens
from tests.waitroom.conftest import (
    OTHER_MUNICIPALITY,
    T0_MS,
    AppFactory,
    FakeClock,
    add_event,
    at,
    line_of,
    running,
    staff_token,
)

NEW_EVENT = {
    "name_ja": "70歳以上 接種予約",
    "name_en": "Bookings 70+",
    "prequeue_at": at(T0_MS + 3600_000).isoformat(),
    "opens_at": at(T0_MS + 7200_000).isoformat(),
    "closes_at": at(T0_MS + 86400_000).isoformat(),
    "admit_per_minute": 120,
    "max_active": 50,
}


async def test_create_update_stats_and_audit(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Tokens, clock: FakeClock
) -> None:
    await add_event(db)  # the municipality exists
    auth = {"authorization": f"Bearer {staff_token(tokens)}"}
    app = make_app()
    async with running(app) as client:
        created = await client.post(
            "/admin/events", json={"id": "ev-new-70", **NEW_EVENT}, headers=auth
        )
        assert created.status_code == 201 and created.json()["event"]["state"] == "scheduled"
        dup = await client.post(
            "/admin/events", json={"id": "ev-new-70", **NEW_EVENT}, headers=auth
        )
        assert dup.status_code == 409 and dup.json()["error"]["code"] == "event_exists"
        early = await client.post("/events/ev-new-70/join", headers={"accept": "application/json"})
        assert early.status_code == 409 and early.json()["error"]["code"] == "event_not_open_yet"
        changed = await client.patch(
            "/admin/events/ev-new-70", json={"admit_per_minute": 30, "max_active": 7}, headers=auth
        )
        assert changed.status_code == 200 and changed.json()["event"]["admit_per_minute"] == 30
        stats = await client.get("/admin/events/ev-new-70/stats", headers=auth)
        live = stats.json()["live"]
        assert (live["admit_per_minute"], live["max_active"], live["state"]) == (30, 7, "scheduled")
        # Times change live too: open it now.
        opened = await client.patch(
            "/admin/events/ev-new-70",
            json={
                "prequeue_at": at(clock.now - 1000).isoformat(),
                "opens_at": at(clock.now).isoformat(),
            },
            headers=auth,
        )
        assert opened.status_code == 200
        joined = await client.post("/events/ev-new-70/join", headers={"accept": "application/json"})
        assert joined.status_code == 201
        snap = await line_of(app).refresh("ev-new-70")
        assert snap.live.state == "open" and snap.live.rate == 30
    # What the administrator did; the clock opening the event is audited too (actor
    # 'system'), whenever a refresh happens to see it, so it is not part of this list.
    rows = await db.fetch(
        "SELECT action, before, after FROM audit_log WHERE target = 'ev-new-70' "
        "AND actor_kind = 'staff' ORDER BY id"
    )
    assert [r["action"] for r in rows] == [
        "waitroom.event.created",
        "waitroom.event.updated",
        "waitroom.event.updated",
    ]
    assert rows[1]["before"] is not None and '"admit_per_minute": 120' in rows[1]["before"]
    assert '"admit_per_minute": 30' in rows[1]["after"]


async def test_auth_roles_and_tenants(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Tokens
) -> None:
    event_id = await add_event(db)
    other_event = await add_event(db, municipality=OTHER_MUNICIPALITY)
    async with running(make_app()) as client:
        none = await client.post(f"/admin/events/{event_id}/pause")
        assert none.status_code == 401 and none.json()["error"]["code"] == "unauthorized"
        forged = await client.post(
            f"/admin/events/{event_id}/pause", headers={"authorization": "Bearer forged.token.x"}
        )
        assert forged.status_code == 401
        ticket = (
            await client.post(f"/events/{event_id}/join", headers={"accept": "application/json"})
        ).json()["ticket"]
        as_staff = await client.post(
            f"/admin/events/{event_id}/pause", headers={"authorization": f"Bearer {ticket}"}
        )
        assert as_staff.status_code == 401  # a ticket is not a staff token (salt per purpose)
        clinic = {"authorization": f"Bearer {staff_token(tokens, role='clinic')}"}
        assert (
            await client.post(f"/admin/events/{event_id}/pause", headers=clinic)
        ).status_code == 403
        admin = {"authorization": f"Bearer {staff_token(tokens)}"}
        # Another city's event does not exist for this administrator.
        for method, path in (
            ("POST", f"/admin/events/{other_event}/pause"),
            ("PATCH", f"/admin/events/{other_event}"),
            ("GET", f"/admin/events/{other_event}/stats"),
        ):
            r = await client.request(
                method, path, headers=admin, json={} if method == "PATCH" else None
            )
            assert r.status_code == 404, (path, r.text)
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_bad_admin_input_is_a_4xx(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Tokens
) -> None:
    event_id = await add_event(db)
    admin = {"authorization": f"Bearer {staff_token(tokens)}"}
    async with running(make_app()) as client:
        cases = [
            {"admit_per_minute": 0},
            {"admit_per_minute": "60"},
            {"max_active": True},
            {"opens_at": "tomorrow"},
            {"opens_at": "2030-01-01T09:00:00"},  # no time zone
            {"closes_at": at(T0_MS - 86400_000 * 365).isoformat()},  # before opening
            {"name_ja": ""},
            {"state": "open"},  # unknown field: state changes have their own endpoints
            [1, 2],
        ]
        for body in cases:
            r = await client.patch(f"/admin/events/{event_id}", json=body, headers=admin)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", (
                body,
                r.text,
            )
        r = await client.patch(
            f"/admin/events/{event_id}",
            content=b"{oops",
            headers={**admin, "content-type": "application/json"},
        )
        assert r.status_code == 422
        missing = await client.post("/admin/events", json={"id": "x-1"}, headers=admin)
        assert missing.status_code == 422
        bad_id = await client.post(
            "/admin/events", json={"id": "Bad Id", **NEW_EVENT}, headers=admin
        )
        assert bad_id.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_oversized_bodies_and_unknown_municipality(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Tokens
) -> None:
    event_id = await add_event(db)
    admin = {"authorization": f"Bearer {staff_token(tokens)}"}
    stranger = {"authorization": f"Bearer {staff_token(tokens, municipality='011002')}"}
    async with running(make_app()) as client:
        big = await client.patch(
            f"/admin/events/{event_id}", content=b"{" + b" " * 20_000 + b"}", headers=admin
        )
        assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
        join = await client.post(
            f"/events/{event_id}/join",
            content=b"t=" + b"x" * 5000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert join.status_code == 413
        # An administrator of a municipality that is not registered cannot exist (a staff
        # row names a registered one), so such a token grants nothing: 401, nothing written.
        r = await client.post(
            "/admin/events", json={"id": "ev-orphan", **NEW_EVENT}, headers=stranger
        )
        assert r.status_code == 401
    assert await db.fetchval("SELECT count(*) FROM events WHERE id = 'ev-orphan'") == 0


async def test_clock_driven_states_reach_postgres_once(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock
) -> None:
    event_id = await add_event(
        db,
        state="scheduled",
        prequeue_at_ms=T0_MS + 60_000,
        opens_at_ms=T0_MS + 120_000,
        closes_at_ms=T0_MS + 180_000,
    )
    one, two = make_app(), make_app()
    async with running(one), running(two):
        for at_ms, expected in (
            (T0_MS, "scheduled"),
            (T0_MS + 60_000, "prequeue"),
            (T0_MS + 120_000, "open"),
            (T0_MS + 180_000, "closed"),
        ):
            clock.now = at_ms
            for app in (one, two):  # two processes see every change
                await line_of(app).refresh(event_id)
                await asyncio.gather(*line_of(app)._recording)
            assert (
                await db.fetchval("SELECT state::text FROM events WHERE id = $1", event_id)
                == expected
            )
    rows = await db.fetch(
        "SELECT actor_kind, action, before->>'state' AS b, after->>'state' AS a FROM audit_log "
        "WHERE target = $1 ORDER BY id",
        event_id,
    )
    assert [(r["actor_kind"], r["action"], r["b"], r["a"]) for r in rows] == [
        ("system", "waitroom.event.clock_state", "scheduled", "prequeue"),
        ("system", "waitroom.event.clock_state", "prequeue", "open"),
        ("system", "waitroom.event.clock_state", "open", "closed"),
    ]


async def test_the_phone_share_is_set_changed_and_audited(
    db: asyncpg.Pool, make_app: AppFactory, tokens: Tokens
) -> None:
    """An event keeps a share of every slot for the call centre until a release time: set at
    creation (0 and null when not given), changed live, validated (422 naming the field),
    audited like every other change of the event."""
    await add_event(db)  # the municipality exists
    admin = {"authorization": f"Bearer {staff_token(tokens)}"}
    release = at(T0_MS + 43_200_000).isoformat()
    async with running(make_app()) as client:
        plain = await client.post(
            "/admin/events", json={"id": "ev-web", **NEW_EVENT}, headers=admin
        )
        assert plain.status_code == 201
        assert (
            plain.json()["event"]["phone_share_pct"],
            plain.json()["event"]["phone_release_at"],
        ) == (
            0,
            None,
        )
        kept = await client.post(
            "/admin/events",
            json={
                "id": "ev-phone",
                **NEW_EVENT,
                "phone_share_pct": 20,
                "phone_release_at": release,
            },
            headers=admin,
        )
        assert kept.status_code == 201, kept.text
        event = kept.json()["event"]
        assert event["phone_share_pct"] == 20
        assert datetime.fromisoformat(event["phone_release_at"]) == datetime.fromisoformat(release)
        for body in (
            {"phone_share_pct": 101},
            {"phone_share_pct": -1},
            {"phone_share_pct": "20"},
            {"phone_share_pct": 20.5},
            {"phone_share_pct": True},
            {"phone_share_pct": None},
            {"phone_release_at": "the day before"},
            {"phone_release_at": "2030-01-01T09:00:00"},  # no time zone
            {"phone_release_at": 1_900_000_000},
        ):
            r = await client.patch("/admin/events/ev-phone", json=body, headers=admin)
            assert r.status_code == 422, (body, r.text)
            error = r.json()["error"]
            assert error["code"] == "invalid_input" and error["detail"]["field"] == next(iter(body))
        bad = await client.post(
            "/admin/events",
            json={"id": "ev-bad", **NEW_EVENT, "phone_share_pct": 150},
            headers=admin,
        )
        assert (
            bad.status_code == 422 and bad.json()["error"]["detail"]["field"] == "phone_share_pct"
        )
        changed = await client.patch(
            "/admin/events/ev-phone",
            json={"phone_share_pct": 30, "phone_release_at": None},
            headers=admin,
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["event"]["phone_share_pct"] == 30
        assert changed.json()["event"]["phone_release_at"] is None
    row = await db.fetchrow(
        "SELECT phone_share_pct, phone_release_at FROM events WHERE id = 'ev-phone'"
    )
    assert row is not None and (row["phone_share_pct"], row["phone_release_at"]) == (30, None)
    assert await db.fetchval("SELECT count(*) FROM events WHERE id = 'ev-bad'") == 0
    rows = await db.fetch(
        "SELECT action, before, after FROM audit_log WHERE target = 'ev-phone' ORDER BY id"
    )
    assert [r["action"] for r in rows] == ["waitroom.event.created", "waitroom.event.updated"]
    before, after = json.loads(rows[1]["before"]), json.loads(rows[1]["after"])
    assert (before["phone_share_pct"], after["phone_share_pct"]) == (20, 30)
    assert before["phone_release_at"] is not None and after["phone_release_at"] is None
