"""Registry import (municipal admin): a CSV read as it arrives, validated row by row,
previewed (dry run) or applied in one transaction.

Invariants: the registry is never half loaded — a file with any bad row changes nothing,
and a good one is applied in one transaction. Merge (the default) removes nobody. Replace
removes exactly as many residents as the admin confirmed (``expect_removed``), and never
one with a confirmed booking still to come. The file is never whole in memory: rows go to
Postgres in batches as they are read, and Postgres compares and applies them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterable, Callable
from contextlib import aclosing
from datetime import date
from enum import StrEnum
from typing import Any

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
    # The connection and its transaction are held while the file arrives: the staged rows
    # live in it, and a failure anywhere (a bad row, a refusal, a body too large, the client
    # gone) rolls it all back.
    async with pg.acquire(ctx.pool) as conn, conn.transaction():
        groups = await _stage_file(conn, body, _converter(municipality, date.today()))
        if not dry_run:
            await pg_registry.lock(conn, municipality)
        seen = await pg_registry.compare(conn, municipality)
        removed = seen.absent - seen.absent_booked if replace else 0
        if not dry_run:
            if replace:
                # Promise: a replace removes exactly the number the admin confirmed. The
                # DELETE's own count decides (a booking made or cancelled since the
                # comparison changes who stays), and a mismatch rolls everything back.
                removed = await pg_registry.remove_absent(conn, municipality)
                if removed != (expect_removed or 0):
                    raise errors.RemovalsUnconfirmed(removed, expect_removed)
            await pg_registry.upsert_staged(conn, municipality)
        counts = {
            "rows": seen.rows,
            "added": seen.added,
            "updated": seen.updated,
            "unchanged": seen.rows - seen.added - seen.updated,
            "removed": removed,
            "kept_booked": seen.absent - removed if replace else 0,
        }
        if not dry_run:
            await pg.audit(
                conn,
                municipality=municipality,
                actor_kind="staff",
                actor_id=staff_id,
                action="booking.registry.imported",
                target=municipality,
                before={"rows": seen.before},
                after={"rows": seen.before + seen.added - removed, "mode": str(mode), **counts},
            )
    return {"dry_run": dry_run, "mode": str(mode), **counts, "groups": groups, "errors": []}


async def _stage_file(
    conn: Conn, body: AsyncIterable[bytes], convert: Callable[[dict[str, str]], Row]
) -> dict[str, int]:
    """Stage the file's rows in batches as they are read: the residents per group. A file
    with bad rows is one CsvInvalid listing them (up to MAX_ERRORS), in file order."""
    problems: list[RowError] = []
    groups: Counter[str] = Counter()
    batch: list[StagedRow] = []
    rows = 0
    await pg_registry.stage(conn)
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
                    await pg_registry.stage_rows(conn, batch)
                    batch = []
    except errors.CsvInvalid:
        await _drain(body)
        raise
    await _drain(body)
    if batch:
        await pg_registry.stage_rows(conn, batch)
    await pg_registry.staged(conn)
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
