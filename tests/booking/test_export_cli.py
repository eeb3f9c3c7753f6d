"""``machiai export``, run as a command: the ledger's bytes are the API's download (stdout
and --output FILE), audited as the CLI; the day list's are the clinic console's; a bad
argument is one line on stderr, exit 2, no output and no audit entry."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from booking.services.context import Ctx
from booking.settings import BookingSettings
from tests.booking.client import running
from tests.booking.factory import World
from tests.booking.test_console_clinic import booked, clinic_login, signed_in, today
from tests.booking.test_export_ledger import URL, seed_ledger


async def export(env_vars: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "machiai.cli", "export", *args],
        env={**os.environ, **env_vars},
        capture_output=True,
        timeout=120,
    )


async def audited(db: asyncpg.Pool) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        "SELECT actor_kind, actor_id, target FROM audit_log "
        "WHERE action = 'booking.export.ledger' ORDER BY id"
    )
    return [(r["actor_kind"], r["actor_id"], r["target"]) for r in rows]


async def test_the_ledger_on_the_command_line_is_the_download(
    settings: BookingSettings,
    env_vars: dict[str, str],
    db: asyncpg.Pool,
    world: World,
    tmp_path: Path,
) -> None:
    seeded = await seed_ledger(db, world, settings)
    async with running(settings) as (_, client):
        utf8 = (await client.get(URL, headers=seeded.admin)).content
        sjis = (await client.get(URL + "&encoding=shift_jis", headers=seeded.admin)).content
    args = ("ledger", "--municipality", world.municipality, "--from", "2031-04-01")
    out = await export(env_vars, *args, "--to", "2031-04-02")
    assert out.returncode == 0, out.stderr
    assert out.stdout == utf8 and out.stderr == b""
    target = tmp_path / "台帳.csv"
    to_file = await export(
        env_vars, *args, "--to", "2031-04-02", "--encoding", "shift_jis", "--output", str(target)
    )
    assert to_file.returncode == 0 and to_file.stdout == b""
    assert target.read_bytes() == sjis
    assert sorted(p.name for p in tmp_path.iterdir()) == ["台帳.csv"]  # no part file left
    system = ("system", "machiai export", "2031-04-01/2031-04-02")
    assert (await audited(db))[2:] == [system, system]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--municipality", "13100", "--from", "2031-04-01", "--to", "2031-04-02"), "6 digits"),
        (("--municipality", "999999", "--from", "2031-04-01", "--to", "2031-04-02"), "999999"),
        (("--municipality", "131001", "--from", "2031-04-31", "--to", "2031-05-02"), "--from"),
        (("--municipality", "131001", "--from", "2031-04-02", "--to", "2031-04-01"), "--to"),
        (("--municipality", "131001", "--from", "2031-04-02"), "--to"),
        (("--municipality", "131001", "--from", "2031-04-01", "--to", "2031-04-02",
          "--encoding", "latin-1"), "--encoding"),
    ],
)  # fmt: skip
async def test_a_bad_ledger_argument_is_one_line_and_exit_2(
    env_vars: dict[str, str], db: asyncpg.Pool, world: World, args: tuple[str, ...], says: str
) -> None:
    out = await export(env_vars, "ledger", *args)
    assert out.returncode == 2 and out.stdout == b""
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("machiai export ledger: "), lines
    assert says in lines[0]
    assert await audited(db) == []


async def test_the_day_list_on_the_command_line_is_the_consoles(
    settings: BookingSettings,
    env_vars: dict[str, str],
    db: asyncpg.Pool,
    world: World,
    ctx: Ctx,
    tmp_path: Path,
) -> None:
    login = await clinic_login(db, world)
    day = today()
    first = await booked(ctx, db, world, 1, day, 9)
    await booked(ctx, db, world, 2, day, 10)
    await db.execute(
        "UPDATE bookings SET status = 'attended', lot = 'FF2847' WHERE id = $1::uuid", first
    )
    async with running(settings) as (_, client):
        await signed_in(client, login)
        url = f"/staff/clinic/day.csv?date={day.isoformat()}"
        ja = (await client.get(url)).content
        en_sjis = (await client.get(url + "&lang=en&encoding=shift_jis")).content
    assert b"FF2847" in ja
    args = ("day-list", "--clinic", world.clinic_id, "--date", day.isoformat())
    out = await export(env_vars, *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ja
    target = tmp_path / "day.csv"
    again = await export(
        env_vars, *args, "--lang", "en", "--encoding", "shift_jis", "--output", str(target)
    )
    assert again.returncode == 0, again.stderr
    assert target.read_bytes() == en_sjis

    for bad, says in (
        (("--clinic", "not-a-clinic", "--date", day.isoformat()), "--clinic"),
        (("--clinic", str(uuid.uuid4()), "--date", day.isoformat()), "--clinic"),
        (("--clinic", world.clinic_id, "--date", "tomorrow"), "--date"),
        (("--clinic", world.clinic_id), "--date"),
    ):
        refused = await export(env_vars, "day-list", *bad)
        assert refused.returncode == 2 and refused.stdout == b""
        lines = refused.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("machiai export day-list: "), lines
        assert says in lines[0]
