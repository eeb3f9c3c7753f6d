"""The administrators' console over HTTP: the audit log viewer."""

from __future__ import annotations

import asyncio
import json
import re

import asyncpg
import httpx

from booking.settings import BookingSettings
from tests.booking.client import running
from tests.booking.factory import World, make_staff
from tests.booking.test_console_signin import csrf_of, sign_in

ROW = re.compile(r"<tr>\s*<td class=\"nowrap\" data-label=")


async def _log(
    db: asyncpg.Pool, municipality: str, actor: str, action: str, target: str, n: int = 1
) -> None:
    await db.executemany(
        "INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, target, before, "
        "after) VALUES ($1, 'staff', $2, $3, $4, $5::jsonb, $6::jsonb)",
        [
            (
                municipality,
                actor,
                action,
                target,
                json.dumps({"capacity": i, "closed": False}),
                json.dumps({"capacity": i + 1, "closed": False}),
            )
            for i in range(n)
        ],
    )


async def test_the_audit_log_viewer(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        admin_id, admin = await make_staff(conn, world.municipality, "admin")
        clerk_id, clerk = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
        _, operator = await make_staff(conn, world.municipality, "operator")
    await _log(db, world.municipality, clerk_id, "booking.slot.capacity_changed", "slot-a", 120)
    await _log(db, world.municipality, admin_id, "waitroom.event.paused", "ev-1")
    await _log(db, world.other_municipality, "someone", "booking.slot.capacity_changed", "x", 3)
    async with running(settings) as (_, client):
        assert (await sign_in(client, admin)).status_code == 303
        first = await client.get("/staff/admin/audit")
        assert first.status_code == 200, first.text
        # Newest first, a page of 50, the staff member's login instead of an id.
        assert len(ROW.findall(first.text)) == 50
        assert first.text.index("waitroom.event.paused") < first.text.index("capacity_changed")
        assert clerk in first.text and clerk_id not in first.text
        # Before → after, field by field: only what changed.
        assert "<code>capacity</code>: <del>119</del> → <ins>120</ins>" in first.text
        assert "<code>closed</code>" not in first.text
        # Paging by the last id seen: every entry of the municipality once, none of another.
        seen, page, pages = 0, first, 0
        while True:
            seen += len(ROW.findall(page.text))
            pages += 1
            older = re.search(r'<a href="([^"]+)">さらに前の記録</a>', page.text)
            if older is None:
                break
            page = await client.get(older.group(1).replace("&amp;", "&"))
        own = await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE municipality_code = $1", world.municipality
        )
        assert (seen, pages) == (own, 3)
        assert "someone" not in first.text

        by_who = await client.get("/staff/admin/audit", params={"actor": admin})
        assert "waitroom.event.paused" in by_who.text and "capacity_changed" not in by_who.text
        by_action = await client.get("/staff/admin/audit", params={"action": "waitroom"})
        assert len(ROW.findall(by_action.text)) == 1
        not_a_prefix = await client.get("/staff/admin/audit", params={"action": "waitroom.ev"})
        assert len(ROW.findall(not_a_prefix.text)) == 0
        by_target = await client.get("/staff/admin/audit", params={"target": "ev-1"})
        assert len(ROW.findall(by_target.text)) == 1
        future = await client.get("/staff/admin/audit", params={"from": "2999-01-01"})
        assert len(ROW.findall(future.text)) == 0 and "該当する記録はありません" in future.text
        bad = await client.get("/staff/admin/audit", params={"from": "1/2/2026", "action": "x;"})
        assert (
            bad.status_code == 422 and 'href="#from"' in bad.text and 'href="#action"' in bad.text
        )

    async with running(settings) as (_, client):
        assert (await sign_in(client, operator)).status_code == 303
        refused = await client.get("/staff/admin/audit")
        assert refused.status_code == 403


async def signed_out(client: httpx.AsyncClient) -> bool:
    """Within the promised few seconds (each process re-reads standing every 2 s)."""
    for _ in range(50):
        if (await client.get("/staff")).status_code == 303:
            return True
        await asyncio.sleep(0.1)
    return False


PASSWORD_SHOWN = re.compile(r'<p class="secret" lang="en"><code>([^<]+)</code></p>')


async def test_staff_accounts_from_the_console(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        admin_id, admin = await make_staff(conn, world.municipality, "admin")
        _, foreign = await make_staff(conn, world.other_municipality, "operator")
    async with running(settings) as (_, client), running(settings) as (_, newcomer):
        assert (await sign_in(client, admin)).status_code == 303
        page = await client.get("/staff/admin/staff")
        assert page.status_code == 200 and admin in page.text and foreign not in page.text
        csrf = csrf_of(page.text)
        form = {"csrf": csrf, "login": "Bad Login", "display_name": "", "role": "clinic"}
        bad = await client.post("/staff/admin/staff", data=form)
        assert bad.status_code == 422
        for field in ("login", "display_name", "clinic"):
            assert f'href="#{field}"' in bad.text, field
        made = await client.post(
            "/staff/admin/staff",
            data={
                "csrf": csrf,
                "login": "hoken-1",
                "display_name": "保健 一郎",
                "role": "clinic",
                "clinic": world.clinic_id,
            },
        )
        assert made.status_code == 200, made.text
        shown = PASSWORD_SHOWN.search(made.text)
        assert shown is not None
        password = shown.group(1)
        # Shown once: the list does not show it again, and nothing stored holds it.
        assert password not in (await client.get("/staff/admin/staff")).text
        stored = await db.fetchval("SELECT password_hash FROM staff WHERE login = 'hoken-1'")
        assert stored.startswith("$argon2id$") and password not in stored
        taken = await client.post(
            "/staff/admin/staff",
            data={"csrf": csrf, "login": "hoken-1", "display_name": "x", "role": "operator"},
        )
        assert taken.status_code == 422 and "使われています" in taken.text

        # The new person signs in with it.
        assert (await sign_in(newcomer, "hoken-1", password)).status_code == 303
        assert (await newcomer.get("/staff")).status_code == 200

        # Reset (after a confirmation page): a new password, the old console signed out.
        confirm = await client.get("/staff/admin/staff/hoken-1/confirm", params={"action": "reset"})
        assert confirm.status_code == 200
        reset = await client.post("/staff/admin/staff/hoken-1/reset", data={"csrf": csrf})
        shown = PASSWORD_SHOWN.search(reset.text)
        assert reset.status_code == 200 and shown is not None and shown.group(1) != password
        assert await signed_out(newcomer)
        assert (await sign_in(newcomer, "hoken-1", password)).status_code == 401
        assert (await sign_in(newcomer, "hoken-1", shown.group(1))).status_code == 303

        # A role change and a deactivation sign the person out; forged forms do nothing.
        forged = await client.post("/staff/admin/staff/hoken-1/deactivate", data={})
        assert forged.status_code == 403
        role = await client.post(
            "/staff/admin/staff/hoken-1/role", data={"csrf": csrf, "role": "operator"}
        )
        assert role.status_code == 303
        assert await signed_out(newcomer)
        gone = await client.post("/staff/admin/staff/hoken-1/deactivate", data={"csrf": csrf})
        assert gone.status_code == 303
        assert await db.fetchval("SELECT active FROM staff WHERE login = 'hoken-1'") is False
        # Not one's own rights, not another municipality's account.
        own = await client.post(
            f"/staff/admin/staff/{admin}/role", data={"csrf": csrf, "role": "operator"}
        )
        assert own.status_code == 422 and "自分自身" in own.text
        other = await client.post(f"/staff/admin/staff/{foreign}/deactivate", data={"csrf": csrf})
        assert other.status_code == 404
        assert await db.fetchval("SELECT active FROM staff WHERE login = $1", foreign) is True
    actions = await db.fetch(
        "SELECT actor_kind, actor_id, action FROM audit_log WHERE action LIKE 'admin.staff.%' "
        "ORDER BY id"
    )
    assert [(r["actor_kind"], r["actor_id"], r["action"]) for r in actions] == [
        ("staff", admin_id, "admin.staff.added"),
        ("staff", admin_id, "admin.staff.password_reset"),
        ("staff", admin_id, "admin.staff.role_changed"),
        ("staff", admin_id, "admin.staff.deactivated"),
    ]
