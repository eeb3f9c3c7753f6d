"""``machiai admin``, run as a command: municipalities and staff accounts it makes sign in
through booking; deactivating, a role change and a new password take effect (sessions end);
every change is audited without a hash; refusals are one line, exit 2, and change nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import asyncpg
import httpx

from booking.settings import BookingSettings
from tests.booking.client import running
from tests.servers import PostgresForTests

CITY, OTHER = "011002", "012025"
PASSWORD = "stdin password, long enough"


async def admin(
    env_vars: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "machiai.cli", "admin", *args],
        env={**os.environ, **env_vars},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def said(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def shown_password(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("password (shown only now): ")]
    assert len(lines) == 1, out
    return lines[0].rpartition(": ")[2]


async def sign_in(client: httpx.AsyncClient, login: str, password: str) -> httpx.Response:
    return await client.post("/api/staff/login", json={"login": login, "password": password})


async def add_clinic(db: asyncpg.Pool, municipality: str) -> str:
    clinic: str = await db.fetchval(
        "INSERT INTO clinics (municipality_code, name_ja, name_en, area) "
        "VALUES ($1, '診療所', 'Clinic', '中央区') RETURNING id::text",
        municipality,
    )
    return clinic


async def test_accounts_made_by_the_cli_sign_in_and_changes_take_effect(
    db: asyncpg.Pool, env_vars: dict[str, str]
) -> None:
    out = said(await admin(env_vars, "municipality", "add", CITY, "--name-ja", "札幌市",
                           "--name-en", "Sapporo"))  # fmt: skip
    assert out.strip() == f"added municipality {CITY} (札幌市 / Sapporo)"
    clinic = await add_clinic(db, CITY)
    out = said(await admin(env_vars, "staff", "add", "ops-1", "--municipality", CITY,
                           "--role", "operator"))  # fmt: skip
    generated = shown_password(out)
    assert len(generated) >= 12
    out = said(await admin(env_vars, "staff", "add", "clinic-1", "--municipality", CITY,
                           "--role", "clinic", "--clinic", clinic, "--password-stdin",
                           stdin=PASSWORD + "\n"))  # fmt: skip
    assert "password" not in out and "clinic-1 (clinic" in out

    listed = said(await admin(env_vars, "staff", "list", "--municipality", CITY))
    assert [line.split()[:3] for line in listed.splitlines()] == [
        ["login", "municipality", "role"],
        ["clinic-1", CITY, "clinic"],
        ["ops-1", CITY, "operator"],
    ]
    assert "argon2" not in listed and generated not in listed

    settings = BookingSettings.from_env(env_vars)
    async with running(settings) as (_, client):
        ops = await sign_in(client, "ops-1", generated)
        assert ops.status_code == 200 and ops.json()["role"] == "operator"
        at_clinic = await sign_in(client, "clinic-1", PASSWORD)
        assert at_clinic.status_code == 200 and at_clinic.json()["clinic_id"] == clinic
        auth = {"Authorization": f"Bearer {ops.json()['token']}"}
        assert (await client.get("/api/operator/residents/0000000001/bookings",
                                 headers=auth)).status_code == 200  # fmt: skip

        out = said(await admin(env_vars, "staff", "reset-password", "ops-1"))
        assert "their sessions end within 2 s" in out
        renewed = shown_password(out)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = await client.get("/api/operator/residents/0000000001/bookings", headers=auth)
            if r.status_code == 401:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 401
        assert (await sign_in(client, "ops-1", generated)).status_code == 401
        assert (await sign_in(client, "ops-1", renewed)).status_code == 200

        said(await admin(env_vars, "staff", "role", "ops-1", "admin"))
        assert (await sign_in(client, "ops-1", renewed)).json()["role"] == "admin"
        out = said(await admin(env_vars, "staff", "role", "ops-1", "admin"))
        assert "unchanged" in out

        said(await admin(env_vars, "staff", "deactivate", "clinic-1"))
        assert (await sign_in(client, "clinic-1", PASSWORD)).status_code == 401
        out = said(await admin(env_vars, "staff", "deactivate", "clinic-1"))
        assert "inactive already" in out
    listed = said(await admin(env_vars, "staff", "list"))
    assert "clinic-1  " in listed and "inactive" in listed

    rows = await db.fetch(
        "SELECT municipality_code, actor_kind, actor_id, action, before, after FROM audit_log "
        "WHERE actor_kind = 'system' ORDER BY id"
    )
    assert [r["action"] for r in rows] == [
        "admin.municipality.added",
        "admin.staff.added",
        "admin.staff.added",
        "admin.staff.password_reset",
        "admin.staff.role_changed",
        "admin.staff.deactivated",
    ]
    assert {(r["municipality_code"], r["actor_id"]) for r in rows} == {(CITY, "machiai admin")}
    assert not any("argon2" in f"{r['before']}{r['after']}" for r in rows)
    # The audit rows chain like every other.
    assert (await asyncio.to_thread(subprocess.run,
            [sys.executable, "-m", "machiai.cli", "audit", "seal"],
            env={**os.environ, **env_vars}, capture_output=True)).returncode == 0  # fmt: skip
    verify = await asyncio.to_thread(subprocess.run,
        [sys.executable, "-m", "machiai.cli", "audit", "verify", "--max-unsealed-s", "0"],
        env={**os.environ, **env_vars}, capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stderr


async def test_refusals_are_one_line_exit_2_and_change_nothing(
    db: asyncpg.Pool, env_vars: dict[str, str]
) -> None:
    for code in (CITY, OTHER):
        said(await admin(env_vars, "municipality", "add", code, "--name-ja", "市",
                         "--name-en", "City"))  # fmt: skip
    clinic, foreign_clinic = await add_clinic(db, CITY), await add_clinic(db, OTHER)
    said(await admin(env_vars, "staff", "add", "ops-1", "--municipality", CITY,
                     "--role", "operator"))  # fmt: skip
    before = await db.fetchval("SELECT count(*) FROM audit_log")
    staff_before = await db.fetch("SELECT * FROM staff ORDER BY id")
    add = ("staff", "add", "new-1", "--municipality", CITY)
    cases: list[tuple[tuple[str, ...], str | None, str]] = [
        (("municipality", "add", CITY, "--name-ja", "市", "--name-en", "City"), None,
         f"municipality {CITY} exists already"),
        (("municipality", "add", "12345", "--name-ja", "市", "--name-en", "City"), None,
         "municipality code '12345' must be 6 digits"),
        (("staff", "add", "new-1", "--municipality", "999999", "--role", "operator"), None,
         "no municipality 999999"),
        ((*add, "--role", "boss"), None, "unknown role 'boss' (one of: admin, clinic, operator)"),
        ((*add, "--role", "clinic"), None, "role clinic needs --clinic CLINIC_UUID"),
        ((*add, "--role", "operator", "--clinic", clinic), None,
         "role operator has no clinic: leave out --clinic"),
        ((*add, "--role", "clinic", "--clinic", foreign_clinic), None,
         f"no clinic {foreign_clinic} in municipality {CITY}"),
        ((*add, "--role", "clinic", "--clinic", "nope"), None, "clinic 'nope' is not a UUID"),
        (("staff", "add", "ops-1", "--municipality", CITY, "--role", "admin"), None,
         "login 'ops-1' is taken already"),
        (("staff", "add", "X", "--municipality", CITY, "--role", "admin"), None,
         "login 'X' must be 3 to 64 of"),
        ((*add, "--role", "admin", "--password-stdin"), "short pass\n",
         "the password must have at least 12 characters"),
        (("staff", "deactivate", "nobody"), None, "no staff with login 'nobody'"),
        (("staff", "role", "nobody", "admin"), None, "no staff with login 'nobody'"),
        (("staff", "role", "ops-1", "boss"), None, "unknown role 'boss'"),
        (("staff", "reset-password", "nobody"), None, "no staff with login 'nobody'"),
        (("staff", "reset-password", "ops-1", "--password-stdin"), "\n",
         "the password must have at least 12 characters"),
        (("staff", "list", "--municipality", "999999"), None, "no municipality 999999"),
    ]  # fmt: skip
    done = await asyncio.gather(*(admin(env_vars, *args, stdin=stdin) for args, stdin, _ in cases))
    for (args, _, problem), result in zip(cases, done, strict=True):
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(f"machiai admin: {problem}"), (args, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stdout == "", args
    assert await db.fetchval("SELECT count(*) FROM audit_log") == before
    assert await db.fetch("SELECT * FROM staff ORDER BY id") == staff_before


async def test_the_first_account_on_a_fresh_database(
    env_vars: dict[str, str], postgres: PostgresForTests
) -> None:
    """A city's first administrator is made on a database nobody migrated yet: the command
    migrates it first (as seed-demo does) instead of failing on a missing table."""
    name = await postgres.create_database(migrated=False)
    try:
        env = {**env_vars, "DATABASE_URL": postgres.url_for(name)}
        said(await admin(env, "municipality", "add", CITY, "--name-ja", "市", "--name-en", "City"))
        out = said(await admin(env, "staff", "add", "first-admin", "--municipality", CITY,
                               "--role", "admin"))  # fmt: skip
        assert shown_password(out)
        conn = await asyncpg.connect(postgres.url_for(name))
        try:
            assert await conn.fetchval("SELECT role::text FROM staff WHERE login = 'first-admin'")
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 8
        finally:
            await conn.close()
    finally:
        await postgres.drop_database(name)
