"""Registry import (municipal admin): a CSV read as it arrives, validated row by row,
previewed (dry run) or applied in one transaction.

Invariants: the registry is never half loaded — a file with any bad row changes nothing,
and a good one is applied in one transaction. Merge (the default) removes nobody. Replace
removes exactly as many residents as the admin confirmed (``expect_removed``), and never
one with a confirmed booking still to come. The file is never whole in memory: rows go to
Postgres in batches as they are read, and Postgres compares and applies them.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterable, Callable
from contextlib import aclosing, suppress
from datetime import date
from enum import StrEnum
from typing import Any, Protocol

from booking import errors
from booking.services.context import Ctx
from booking.services.csv_rows import (
    MAX_ERRORS,
    CellError,
    RowError,
    check_row,
    date_cell,
    stream_records,
)
from booking.store import pg, pg_registry
from booking.store.pg_registry import StagedRow
from machiai.pg import Conn

COLUMNS = ("voucher_number", "birth_date", "municipality_code", "groups")
VOUCHER = re.compile(r"^[0-9]{10}$")
GROUP = re.compile(r"^[^\s|;,\x00-\x1f]{1,40}$")
SEPARATOR = re.compile(r"[|;]")  # between groups
# More than any municipality has residents (Yokohama, the largest, about 3.8 million);
# the body size limit (BOOKING_REGISTRY_MAX_BYTES) usually comes first.
MAX_ROWS = 10_000_000
# Rows sent to Postgres at a time: what the import holds in memory, whatever the file.
BATCH_ROWS = 10_000

Row = tuple[str, date, list[str]]


class Mode(StrEnum):
    MERGE = "merge"  # the file's rows are added or updated; nobody else changes
    REPLACE = "replace"  # and residents absent from the file are removed


async def _drain(body: AsyncIterable[bytes]) -> None:
    """Read what is left of a body that is refused: a client still sending it gets the
    refusal, not a connection closed under its upload."""
    async for _ in body:
        pass


def _converter(municipality: str, today: date) -> Callable[[dict[str, str]], Row]:
    def convert(cells: dict[str, str]) -> Row:
        voucher = cells["voucher_number"]
        if not VOUCHER.match(voucher):
            raise CellError("voucher_number", "must be exactly 10 digits")
        born = date_cell(cells["birth_date"], "birth_date")
        if born > today or born.year < 1890:
            raise CellError("birth_date", "not a plausible birth date")
        if cells["municipality_code"] != municipality:
            raise CellError("municipality_code", "not this municipality's code")
        groups = [g for g in SEPARATOR.split(cells["groups"]) if g.strip()]
        for group in groups:
            if not GROUP.match(group.strip()):
                raise CellError("groups", "each group: 1 to 40 characters without spaces")
        return voucher, born, sorted({g.strip() for g in groups})

    return convert


async def import_registry(
    ctx: Ctx,
    municipality: str,
    staff_id: str,
    body: AsyncIterable[bytes],
    *,
    mode: Mode = Mode.MERGE,
    dry_run: bool = False,
    expect_removed: int | None = None,
) -> dict[str, Any]:
    """Preview (dry run) or apply the file to the municipality's registry: merge, or
    replace when the number it removes is ``expect_removed`` (0 when not given)."""
    replace = mode is Mode.REPLACE
    convert = _converter(municipality, date.today())
    # The connection and its transaction are held while the file arrives: the staged rows
    # live in it, and a failure anywhere (a bad row, a refusal, a body too large, the client
    # gone) rolls it all back.
    async with pg.acquire(ctx.pool) as conn, conn.transaction():
        await pg_registry.stage(conn)
        if dry_run:
            groups = await _stage_file(conn, body, convert, _Staging(conn))
            await pg_registry.staged(conn)
            seen = await pg_registry.compare(conn, municipality)
            removed = seen.absent - seen.absent_booked if replace else 0
            kept = seen.absent_booked if replace else 0
            counts = _counts(seen.rows, seen.added, seen.updated, removed, kept)
            return {"dry_run": True, "mode": str(mode), **counts, "groups": groups, "errors": []}
        await pg_registry.lock(conn, municipality)
        before = await pg_registry.count(conn, municipality)
        # Applied batch by batch as the file is read; any refusal below rolls it all back.
        applying = _Applying(conn, municipality)
        groups = await _stage_file(conn, body, convert, applying)
        removed = kept = 0
        if replace:
            await pg_registry.staged(conn)
            absent = await pg_registry.absent(conn, municipality)
            # Promise: a replace removes exactly the number the admin confirmed. The
            # DELETE's own count decides (a booking made or cancelled since the preview
            # changes who stays), and a mismatch rolls everything back.
            removed = await pg_registry.remove_absent(conn, municipality)
            if removed != (expect_removed or 0):
                raise errors.RemovalsUnconfirmed(removed, expect_removed)
            kept = absent - removed
        counts = _counts(applying.rows, applying.added, applying.updated, removed, kept)
        await pg.audit(
            conn,
            municipality=municipality,
            actor_kind="staff",
            actor_id=staff_id,
            action="booking.registry.imported",
            target=municipality,
            before={"rows": before},
            after={"rows": before + applying.added - removed, "mode": str(mode), **counts},
        )
    return {"dry_run": False, "mode": str(mode), **counts, "groups": groups, "errors": []}


def _counts(rows: int, added: int, updated: int, removed: int, kept: int) -> dict[str, int]:
    return {
        "rows": rows,
        "added": added,
        "updated": updated,
        "unchanged": rows - added - updated,
        "removed": removed,
        "kept_booked": kept,
    }


class _Staging:
    """A preview's batches: staged only, compared once the whole file is in."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def write(self, batch: list[StagedRow], *, apply: bool) -> None:
        del apply  # a preview applies nothing
        await pg_registry.stage_rows(self.conn, batch)

    async def finish(self) -> None:
        return None


class _Applying:
    """An import's batches, each staged and applied by Postgres while this process reads
    and checks the next one (one batch in flight: what the import holds stays bounded)."""

    def __init__(self, conn: Conn, municipality: str) -> None:
        self.conn = conn
        self.municipality = municipality
        self.rows = self.added = self.updated = 0
        self.pending: asyncio.Task[None] | None = None

    async def _apply(self, batch: list[StagedRow]) -> None:
        added, updated = await pg_registry.apply_rows(self.conn, self.municipality, batch)
        self.rows += len(batch)
        self.added += added
        self.updated += updated

    async def write(self, batch: list[StagedRow], *, apply: bool) -> None:
        """``apply`` is false once the file is known to be refused: its rows are still
        staged (repeated voucher numbers are reported with the bad rows), not applied."""
        await self.finish()
        if apply:
            self.pending = asyncio.create_task(self._apply(batch))
        else:
            await pg_registry.stage_rows(self.conn, batch)

    async def finish(self) -> None:
        """Wait for the batch in flight; its failure is raised here."""
        pending, self.pending = self.pending, None
        if pending is not None:
            await pending


class _Sink(Protocol):
    async def write(self, batch: list[StagedRow], *, apply: bool) -> None: ...
    async def finish(self) -> None: ...


async def _stage_file(
    conn: Conn,
    body: AsyncIterable[bytes],
    convert: Callable[[dict[str, str]], Row],
    sink: _Sink,
) -> dict[str, int]:
    """Hand the file's rows to ``sink`` in batches as they are read: the residents per
    group. A file with bad rows is one CsvInvalid listing them (up to MAX_ERRORS), in file
    order; once one is found, rows are only staged (it will all be rolled back)."""
    problems: list[RowError] = []
    groups: Counter[str] = Counter()
    batch: list[StagedRow] = []
    rows = 0
    try:
        async with aclosing(stream_records(body, COLUMNS)) as pieces:
            async for found in pieces:
                for number, cells in found:
                    if rows + len(problems) >= MAX_ROWS:
                        problems.append(RowError(number, "", f"more than {MAX_ROWS} rows"))
                        break
                    checked = check_row(number, cells, convert)
                    if isinstance(checked, RowError):
                        problems.append(checked)
                        if len(problems) >= MAX_ERRORS:
                            break
                        continue
                    voucher, born, row_groups = checked
                    batch.append((number, voucher, born, row_groups))
                    groups.update(row_groups)
                    rows += 1
                if len(problems) >= MAX_ERRORS or rows + len(problems) > MAX_ROWS:
                    break  # the refusal lists no more
                if len(batch) >= BATCH_ROWS:
                    await sink.write(batch, apply=not problems)
                    batch = []
        await _drain(body)
        if batch:
            await sink.write(batch, apply=not problems)
    except BaseException:
        # The batch in flight ends before the transaction is rolled back on its
        # connection (its own failure, if any, is not the one to report).
        with suppress(Exception):
            await sink.finish()
        with suppress(Exception):
            await _drain(body)
        raise
    await sink.finish()
    # Repeated voucher numbers: found by Postgres, which holds every row (this process
    # holds one batch).
    for row, first in await pg_registry.duplicates(conn, MAX_ERRORS):
        problems.append(RowError(row, "voucher_number", f"duplicate of row {first}"))
    if not rows and not problems:
        problems.append(RowError(1, "", "no data rows"))
    if problems:
        problems.sort(key=lambda p: p.row)
        raise errors.CsvInvalid(detail={"errors": [p.as_dict() for p in problems[:MAX_ERRORS]]})
    return dict(groups)
