"""The files a city hands on: the vaccination ledger (予防接種台帳) and a clinic's day list.

The ledger is every attended vaccination of one municipality whose appointment fell on a
day of [first_day, last_day] in Japan time, one row each, in a layout a ledger system
imports (fixed Japanese column names, ISO dates, codes as digits): the same file from the
API, the admin console and ``machiai export ledger``.

Promises, each kept at the line that names it:

* **Streamed**: rows leave a cursor a batch at a time and the file leaves in pieces
  (``csv_export``), so a million rows never sit in memory.
* **Only the municipality's own, only attended**: the store's one WHERE clause.
* **Every export is audited** (``booking.export.ledger``: the range, the encoding and the
  number of rows) before its first row leaves, so a download cut short is on record too.
* **The count is the file's**: counted in the snapshot the rows are read from.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import asyncpg

from booking import errors
from booking.services.csv_export import CsvEncoding, csv_stream
from booking.store import pg, pg_clinic, pg_export

JST = timezone(timedelta(hours=9))
LEDGER_ACTION = "booking.export.ledger"
# The ledger's columns. Fixed, in Japanese (a ledger system reads them by name), whatever
# language the console is in: the file from the console, the API and the CLI is one file.
LEDGER_HEADER = (
    "接種券番号",  # voucher number, 10 digits (empty once purged: machiai purge)
    "自治体コード",  # municipality code, 6 digits
    "接種日",  # day of the appointment, Japan time, YYYY-MM-DD
    "医療機関コード",  # the clinic's 10-digit code (migration 0011), empty when not set
    "医療機関名",  # the clinic's name, for a clinic without a code
    "ワクチン",  # vaccine code
    "接種回数",  # dose number
    "ロット番号",  # lot number, empty when not recorded
)
# Rows fetched per cursor round trip: enough that Postgres' round trips are a small share
# of the time, few enough that one batch is a few MiB at most.
BATCH_ROWS = 5_000
# The widest range an export takes: ten years (a city's whole programme), a guard against
# a typed year that reads the whole table by mistake rather than a limit on size.
MAX_DAYS = 3_660
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2999, 12, 31)


@dataclass(frozen=True, slots=True)
class LedgerRange:
    """A municipality and the days [first_day, last_day] of Japan time."""

    municipality: str
    first_day: date
    last_day: date

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first_day, time(), JST)

    @property
    def until(self) -> datetime:
        """The end, exclusive: midnight after the last day (the whole day counts)."""
        return datetime.combine(self.last_day + timedelta(days=1), time(), JST)

    @property
    def target(self) -> str:
        """The range as the audit log names it (ISO 8601 interval of days)."""
        return f"{self.first_day.isoformat()}/{self.last_day.isoformat()}"


@dataclass(frozen=True, slots=True)
class Exporter:
    """Who exports, as the audit log names them: a staff member, or the CLI (system)."""

    kind: str
    actor_id: str


CLI = Exporter("system", "machiai export")


def ledger_range(municipality: str, first_day: date, last_day: date) -> LedgerRange:
    """The range, or ``invalid_input`` naming the field: the last day before the first, or
    a range longer than ``MAX_DAYS``."""
    for name, day in (("from", first_day), ("to", last_day)):
        # Days a vaccination in this system can have; also keeps midnight of the day
        # after within what a date-time can hold (9999-12-31 has no next day).
        if not FIRST_DAY <= day <= LAST_DAY:
            raise errors.Invalid(
                f"{name}: a date from {FIRST_DAY} to {LAST_DAY}",
                f"{name}: {FIRST_DAY} から {LAST_DAY} までの日付を入力してください",
                detail={"field": name},
            )
    if last_day < first_day:
        raise errors.Invalid(
            "to: must be on or after from",
            "to: 終了日は開始日以降の日付にしてください",
            detail={"field": "to"},
        )
    if (last_day - first_day).days >= MAX_DAYS:
        raise errors.Invalid(
            f"to: a range is at most {MAX_DAYS} days",
            f"to: 期間は {MAX_DAYS} 日以内にしてください",
            detail={"field": "to"},
        )
    return LedgerRange(municipality, first_day, last_day)


async def municipality_exists(pool: asyncpg.Pool, code: str) -> bool:
    async with pg.acquire(pool) as conn:
        return await pg_export.municipality_exists(conn, code)


async def ledger_csv(
    pool: asyncpg.Pool, span: LedgerRange, encoding: CsvEncoding, exporter: Exporter
) -> AsyncGenerator[bytes, None]:
    """The ledger file in pieces. Holds one pooled connection (and briefly a second, for
    the audit entry) until the last piece is taken or the consumer stops."""
    async with (
        pg.acquire(pool) as conn,
        # Promise: the count is the file's. One snapshot for the count and every batch.
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        rows = await pg_export.count_ledger(conn, span.municipality, span.since, span.until)
        # Promise: every export is audited before its first row leaves. Committed on its
        # own (the reading transaction is read-only, and a cut download must stay recorded).
        async with pg.acquire(pool) as other:
            await pg.audit(
                other,
                municipality=span.municipality,
                actor_kind=exporter.kind,
                actor_id=exporter.actor_id,
                action=LEDGER_ACTION,
                target=span.target,
                after={
                    "from": span.first_day.isoformat(),
                    "to": span.last_day.isoformat(),
                    "encoding": encoding.value,
                    "rows": rows,
                },
            )
        # Promise: streamed. One batch of rows in memory, one piece of the file at a time.
        batches = pg_export.ledger_batches(
            conn, span.municipality, span.since, span.until, BATCH_ROWS
        )
        async for piece in csv_stream(LEDGER_HEADER, batches, encoding):
            yield piece


async def started(pieces: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """``pieces`` with the first one already taken: a failure before the first row (busy,
    say) is still an answer of its own, not a response cut after its headers. The rest is
    taken as it is asked for, and ``pieces`` is closed (its connection released) however
    the consumer stops."""
    first = await anext(pieces)

    async def rest() -> AsyncIterator[bytes]:
        try:
            yield first
            async for piece in pieces:
                yield piece
        finally:
            await pieces.aclose()

    return rest()


def ledger_filename(span: LedgerRange) -> str:
    return (
        f"ledger-{span.municipality}-{span.first_day.isoformat()}-{span.last_day.isoformat()}.csv"
    )


async def clinic_day(
    pool: asyncpg.Pool, clinic_id: str, day: date
) -> tuple[str, list[dict[str, Any]]]:
    """The municipality of the clinic and its bookings of ``day`` (as the clinic console's
    list has them), for ``machiai export day-list``; an unknown clinic is ``not_found``."""
    parsed = pg.parse_uuid(clinic_id)
    if parsed is None:
        raise errors.NotFound()
    async with pg.acquire(pool) as conn:
        municipality = await pg_export.clinic_municipality(conn, parsed)
        if municipality is None:
            raise errors.NotFound()
        return municipality, await pg_clinic.clinic_bookings(conn, str(parsed), day)
