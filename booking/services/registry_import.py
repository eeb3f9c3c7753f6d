"""Registry import (municipal admin): validated row by row, previewed, replaced atomically.

Invariant: the registry is never half loaded — a file with any bad row changes
nothing, and a good one replaces the old registry in one transaction.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from booking import errors
from booking.services.context import Ctx
from booking.services.csv_rows import CellError, Parsed, RowError, date_cell, decode, parse
from booking.store import pg, pg_registry

COLUMNS = ("voucher_number", "birth_date", "municipality_code", "groups")
VOUCHER = re.compile(r"^[0-9]{10}$")
GROUP = re.compile(r"^[^\s|;,\x00-\x1f]{1,40}$")
MAX_ROWS = 2_000_000

Row = tuple[str, date, list[str]]


def _converter(municipality: str, today: date) -> Any:
    def convert(cells: dict[str, str]) -> Row:
        voucher = cells["voucher_number"]
        if not VOUCHER.match(voucher):
            raise CellError("voucher_number", "must be exactly 10 digits")
        born = date_cell(cells["birth_date"], "birth_date")
        if born > today or born.year < 1890:
            raise CellError("birth_date", "not a plausible birth date")
        if cells["municipality_code"] != municipality:
            raise CellError("municipality_code", "not this municipality's code")
        groups = [g for g in re.split(r"[|;]", cells["groups"]) if g.strip()]
        for group in groups:
            if not GROUP.match(group.strip()):
                raise CellError("groups", "each group: 1 to 40 characters without spaces")
        return voucher, born, sorted({g.strip() for g in groups})

    return convert


async def import_registry(
    ctx: Ctx, municipality: str, staff_id: str, data: bytes, dry_run: bool
) -> dict[str, Any]:
    """Preview (dry run) or replace the municipality's registry with the file."""
    parsed: Parsed[Row] = parse(
        decode(data), COLUMNS, (), _converter(municipality, date.today()), MAX_ROWS
    )
    problems = list(parsed.errors)
    seen: dict[str, int] = {}
    for number, (voucher, _, _) in zip(parsed.row_numbers, parsed.rows, strict=True):
        if voucher in seen:
            problems.append(RowError(number, "voucher_number", f"duplicate of row {seen[voucher]}"))
        seen.setdefault(voucher, number)
    if not parsed.rows and not problems:
        problems.append(RowError(1, "", "no data rows"))
    problems.sort(key=lambda p: p.row)
    if problems:
        raise errors.CsvInvalid(detail={"errors": [p.as_dict() for p in problems[:1000]]})
    groups: dict[str, int] = {}
    for _, _, gs in parsed.rows:
        for g in gs:
            groups[g] = groups.get(g, 0) + 1
    summary: dict[str, Any] = {"rows": len(parsed.rows), "groups": groups, "errors": []}
    if dry_run:
        return {"dry_run": True, **summary}
    async with pg.acquire(ctx.pool) as conn:
        before, after = await pg_registry.replace_registry(
            conn, municipality, staff_id, parsed.rows
        )
    return {"dry_run": False, "replaced": before, **summary}
