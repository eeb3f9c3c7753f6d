"""Registry import benchmark — one command, loopback only:

    .venv/bin/python -m benchmarks.booking.bench_registry_import [--rows 100000 1000000]

Starts its own embedded Redis and Postgres (fsync on) and the real booking service under
uvicorn, as ``bench_confirm`` does (service on core 0, this process on core 1 on 2+
cores). For each size it sends a generated registry CSV through HTTP, chunked as it is
generated (this process never holds the file either), three times:

  merge    into an empty registry: every row added;
  again    the same file merged again: every row known and unchanged (still written:
           ``imported_at`` says when the city last sent each resident);
  preview  a replace with nine tenths of the file, as a dry run: the tenth left out
           counted as removed, nothing written.

It prints rows per second of each (wall clock, from the first byte sent to the answer)
and the booking process's resident memory: before, and the highest seen while the
imports ran (sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import psutil

from benchmarks.booking.bench_confirm import SECRET, booking_service
from machiai.tokens import StaffClaims, Tokens

MUNICIPALITY = "141003"  # Yokohama
HEADER = b"voucher_number,birth_date,municipality_code,groups\n"


def generated(rows: int, per_piece: int = 2_000) -> Iterator[bytes]:
    yield HEADER
    for start in range(0, rows, per_piece):
        yield "".join(
            f"{3_000_000_000 + n},{1930 + n % 70}/{1 + n % 12}/{1 + n % 28},{MUNICIPALITY},"
            f"{'65+|medical' if n % 7 == 0 else '65+'}\n"
            for n in range(start, min(rows, start + per_piece))
        ).encode()


class PeakRss:
    """The highest resident memory of a process while the block runs."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def seed(dsn: str) -> str:
    """The municipality and an admin (who has no password: the token is signed here):
    the admin's staff id."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO municipalities (code, name_ja, name_en) "
            "VALUES ($1, '横浜市', 'Yokohama') ON CONFLICT DO NOTHING",
            MUNICIPALITY,
        )
        staff_id = await conn.fetchval(
            "INSERT INTO staff (municipality_code, login, display_name, role, password_hash) "
            "VALUES ($1, $2, 'bench', 'admin', '!') RETURNING id::text",
            MUNICIPALITY,
            f"bench-{uuid.uuid4().hex[:8]}",
        )
        return str(staff_id)
    finally:
        await conn.close()


async def empty_registry(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM registry WHERE municipality_code = $1", MUNICIPALITY)
        await conn.execute("VACUUM ANALYZE registry")
    finally:
        await conn.close()


def post(client: httpx.Client, query: str, body: Iterator[bytes]) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    r = client.post(f"/api/registry/import{query}", content=body)
    took = time.perf_counter() - started
    if r.status_code != 200:
        raise RuntimeError(f"import refused: {r.status_code} {r.text[:500]}")
    return took, r.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    with booking_service() as service:
        staff_id = asyncio.run(seed(service.dsn))
        token = Tokens([SECRET]).dump_staff(StaffClaims(staff_id, MUNICIPALITY, "admin", None))
        base = psutil.Process(service.pid).memory_info().rss
        print(f"booking process at rest: {base / 2**20:.0f} MiB", flush=True)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{service.port}",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
            timeout=3600,
        ) as client:
            for rows in args.rows:
                asyncio.run(empty_registry(service.dsn))
                size = sum(len(p) for p in generated(rows))
                print(f"\n{rows:,} rows, {size / 2**20:.1f} MiB", flush=True)
                runs = (
                    ("merge", "", rows),
                    ("again", "", rows),
                    ("preview", "?mode=replace&dry_run=true", rows * 9 // 10),
                )
                for label, query, sent in runs:
                    with PeakRss(service.pid) as rss:
                        took, answer = post(client, query, generated(sent))
                    counts = {
                        k: answer[k] for k in ("rows", "added", "updated", "unchanged", "removed")
                    }
                    print(
                        f"  {label:8} {sent / took:10,.0f} rows/s  ({took:6.1f} s)  "
                        f"peak RSS {rss.peak / 2**20:6.0f} MiB  {counts}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
