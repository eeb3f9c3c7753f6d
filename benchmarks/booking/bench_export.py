"""Ledger export benchmark — one command, loopback only:

    .venv/bin/python -m benchmarks.booking.bench_export [--rows 1000000]

Starts its own embedded Redis and Postgres (fsync on) and the real booking service under
uvicorn, as ``bench_confirm`` does (service on core 0, this process on core 1 on 2+
cores). Seeds ``--rows`` attended bookings of one municipality over 100 days in one
``INSERT … SELECT generate_series`` (no row passes through Python), then exports the
vaccination ledger of those days twice:

  http   GET /api/exports/ledger over real HTTP, read as it streams (this process never
         holds the file: it counts lines and hashes the bytes);
  cli    ``machiai export ledger --output FILE`` as a subprocess on the same database
         (its wall time includes the interpreter's start, about half a second).

It prints rows per second (wall clock, request to last byte / process start to exit),
the peak resident memory of the booking process and of the CLI process (sampled every
20 ms), and checks that both files are the same bytes with one line per row.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx
import psutil

from benchmarks.booking.bench_confirm import SECRET, booking_service
from benchmarks.booking.bench_registry_import import PeakRss
from machiai.tokens import StaffClaims, Tokens

MUNICIPALITY = "141003"  # Yokohama
JST = timezone(timedelta(hours=9))
FIRST = datetime(2031, 4, 1, tzinfo=JST)
DAYS = 100


async def seed(dsn: str, rows: int) -> str:
    """The municipality, a clinic with its code, an event, a slot a day, ``rows`` attended
    bookings (a lot on every third) and an admin; the admin's staff id."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO municipalities (code, name_ja, name_en) VALUES ($1, '横浜市', 'Yokohama')",
            MUNICIPALITY,
        )
        await conn.execute(
            "INSERT INTO vaccines (code, name_ja, name_en, dose_interval_days, max_doses) "
            "VALUES ('comirnaty', 'コミナティ', 'Comirnaty', 21, 2) ON CONFLICT DO NOTHING"
        )
        await conn.execute(
            "INSERT INTO events (id, municipality_code, name_ja, name_en, prequeue_at, "
            "opens_at, closes_at, admit_per_minute, max_active) "
            "VALUES ('bench-export', $1, '接種', 'Vaccination', $2, $2, $3, 60, 100)",
            MUNICIPALITY, FIRST - timedelta(days=30), FIRST + timedelta(days=DAYS),
        )  # fmt: skip
        clinic = await conn.fetchval(
            "INSERT INTO clinics (municipality_code, name_ja, name_en, area, code) "
            "VALUES ($1, '横浜市立みなと診療所', 'Minato Clinic', '中区', '1410030001') "
            "RETURNING id",
            MUNICIPALITY,
        )
        slots = await conn.fetch(
            "INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity, "
            "dose_number, vaccine_code) SELECT $1, 'bench-export', $2::timestamptz + "
            "d * interval '1 day', 480, 100000, 1, 'comirnaty' FROM generate_series(0, $3 - 1) d "
            "RETURNING id",
            clinic, FIRST, DAYS,
        )  # fmt: skip
        started = time.perf_counter()
        await conn.execute(
            "INSERT INTO bookings (confirmation_code, slot_id, municipality_code, "
            "voucher_number, dose_number, vaccine_code, slot_starts_at, status, channel, lot) "
            "SELECT 'B' || lpad(g::text, 7, '0'), ($1::uuid[])[g % $4 + 1], $2, "
            "(3000000000 + g)::text, 1, 'comirnaty', "
            "$3::timestamptz + (g % $4) * interval '1 day' + (g / $4 % 28800) * interval "
            "'1 second', 'attended', 'web', CASE WHEN g % 3 = 0 THEN 'FF' || (g % 10000) END "
            "FROM generate_series(1, $5) g",
            [s["id"] for s in slots], MUNICIPALITY, FIRST, DAYS, rows,
        )  # fmt: skip
        await conn.execute("VACUUM ANALYZE bookings")
        print(f"seeded {rows:,} attended bookings in {time.perf_counter() - started:.1f} s")
        staff_id = await conn.fetchval(
            "INSERT INTO staff (municipality_code, login, display_name, role, password_hash) "
            "VALUES ($1, $2, 'bench', 'admin', '!') RETURNING id::text",
            MUNICIPALITY,
            f"bench-{uuid.uuid4().hex[:8]}",
        )
        return str(staff_id)
    finally:
        await conn.close()


def over_http(port: int, token: str, pid: int) -> tuple[float, int, str, int]:
    """(seconds, lines, sha256 of the bytes, peak RSS of the service)"""
    last = FIRST.date() + timedelta(days=DAYS - 1)
    digest = hashlib.sha256()
    lines = 0
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=3600) as client,
        PeakRss(pid) as rss,
    ):
        started = time.perf_counter()
        with client.stream(
            "GET",
            f"/api/exports/ledger?from={FIRST.date()}&to={last}",
            headers={"Authorization": f"Bearer {token}"},
        ) as r:
            if r.status_code != 200:
                raise RuntimeError(f"export refused: {r.status_code} {r.read()[:500]!r}")
            for chunk in r.iter_raw():
                digest.update(chunk)
                lines += chunk.count(b"\r\n")
        took = time.perf_counter() - started
    return took, lines, digest.hexdigest(), rss.peak


def over_cli(dsn: str, output: Path) -> tuple[float, int, str, int]:
    """(seconds, lines, sha256 of the file, peak RSS of the CLI process)"""
    last = FIRST.date() + timedelta(days=DAYS - 1)
    env = {
        **os.environ,
        "MACHIAI_ENV": "development",
        "DATABASE_URL": dsn,
        # Only Postgres is read; a Redis URL is given so that no embedded Redis is started
        # (the export never connects to it).
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "MACHIAI_DATA_DIR": str(output.parent / "data"),
    }
    command = [
        sys.executable, "-m", "machiai.cli", "export", "ledger", "--municipality",
        MUNICIPALITY, "--from", str(FIRST.date()), "--to", str(last), "--output", str(output),
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    if (os.cpu_count() or 1) >= 2:
        psutil.Process(process.pid).cpu_affinity([1])
    with PeakRss(process.pid) as rss:
        code = process.wait()
    took = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"machiai export ledger exited {code}")
    digest = hashlib.sha256()
    lines = 0
    with output.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            lines += block.count(b"\r\n")
    return took, lines, digest.hexdigest(), rss.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with booking_service() as service, tempfile.TemporaryDirectory() as tmp:
        staff_id = asyncio.run(seed(service.dsn, args.rows))
        token = Tokens([SECRET]).dump_staff(StaffClaims(staff_id, MUNICIPALITY, "admin", None))
        at_rest = psutil.Process(service.pid).memory_info().rss
        print(f"booking process at rest: {at_rest / 2**20:.0f} MiB", flush=True)
        took, lines, http_sha, peak = over_http(service.port, token, service.pid)
        print(
            f"  http  {args.rows / took:10,.0f} rows/s  ({took:6.1f} s)  "
            f"service peak RSS {peak / 2**20:5.0f} MiB",
            flush=True,
        )
        assert lines == args.rows + 1, lines  # the header and one line per row
        file = Path(tmp) / "ledger.csv"
        took, lines, cli_sha, peak = over_cli(service.dsn, file)
        print(
            f"  cli   {args.rows / took:10,.0f} rows/s  ({took:6.1f} s)  "
            f"CLI peak RSS {peak / 2**20:5.0f} MiB  ({file.stat().st_size / 2**20:.0f} MiB file)",
            flush=True,
        )
        assert lines == args.rows + 1, lines
        assert cli_sha == http_sha, "the CLI's file differs from the download"
        print("  the CLI's file and the download are the same bytes", flush=True)


if __name__ == "__main__":
    main()
