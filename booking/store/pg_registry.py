"""SQL of the eligibility registry import: a file staged in a temporary table, compared with
the registry, then applied in set-based statements.

Everything here runs in the caller's transaction: the staged table lives until its end
(``ON COMMIT DROP``; a rollback drops it too), so a pooled connection keeps nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import asyncpg

from booking import errors
from machiai.pg import Conn

# A city's registry is millions of rows: these statements get longer than the pool's
# statement deadline.
IMPORT_S = 600.0

# One staged row: (file row number, voucher number, birth date, eligibility groups).
StagedRow = tuple[int, str, date, list[str]]

_STAGE = """
CREATE TEMP TABLE registry_incoming (
    file_row            integer NOT NULL,
    voucher_number      text NOT NULL,
    birth_date          date NOT NULL,
    eligibility_groups  text[] NOT NULL
) ON COMMIT DROP"""

# A resident absent from a replacing file stays while they have a confirmed booking still
# to come: it is theirs to cancel or change, and signing in for that needs the registry row.
_BOOKED = """EXISTS (
    SELECT 1 FROM bookings b
    WHERE b.municipality_code = r.municipality_code AND b.voucher_number = r.voucher_number
      AND b.status = 'confirmed' AND b.slot_starts_at > now())"""

_ABSENT = f"""
SELECT r.voucher_number, {_BOOKED} AS booked FROM registry r
WHERE r.municipality_code = $1
  AND NOT EXISTS (SELECT 1 FROM registry_incoming i WHERE i.voucher_number = r.voucher_number)
"""


@dataclass(frozen=True, slots=True)
class Comparison:
    """The staged file against the municipality's registry."""

    before: int  # residents in the registry now
    rows: int  # rows in the file
    added: int  # in the file, not in the registry
    updated: int  # in both, with another birth date or other groups
    absent: int  # in the registry, not in the file
    absent_booked: int  # of those, with a confirmed booking still to come


async def stage(conn: Conn) -> None:
    """An empty staging table for this transaction's file."""
    await conn.execute(_STAGE)


async def stage_rows(conn: Conn, rows: Sequence[StagedRow]) -> None:
    await conn.copy_records_to_table(
        "registry_incoming",
        records=rows,
        columns=["file_row", "voucher_number", "birth_date", "eligibility_groups"],
        timeout=IMPORT_S,
    )


async def staged(conn: Conn) -> None:
    """The file is staged: statistics for the planner (temporary tables get none by
    themselves, and the joins below are over millions of rows)."""
    await conn.execute("ANALYZE registry_incoming", timeout=IMPORT_S)


# One batch of the file, applied as it arrives: staged for the checks that need the whole
# file (repeated voucher numbers, a replace's absentees), and upserted into the registry in
# the same statement, so Postgres applies one batch while this process reads the next.
# The counts come from the registry as it was before the statement (one snapshot for
# every part of it). A voucher number repeated within the batch is applied once here (the
# upsert cannot touch a row twice); the whole-file check then refuses the file.
_APPLY_BATCH = """
WITH b AS MATERIALIZED (
    SELECT t.file_row, t.voucher_number, t.birth_date,
           string_to_array(t.groups, '|') AS eligibility_groups
    FROM unnest($2::integer[], $3::text[], $4::date[], $5::text[])
         AS t(file_row, voucher_number, birth_date, groups)
), staged AS (
    INSERT INTO registry_incoming (file_row, voucher_number, birth_date, eligibility_groups)
    SELECT file_row, voucher_number, birth_date, eligibility_groups FROM b
), latest AS (
    SELECT DISTINCT ON (voucher_number) voucher_number, birth_date, eligibility_groups
    FROM b ORDER BY voucher_number, file_row DESC
), applied AS (
    INSERT INTO registry (municipality_code, voucher_number, birth_date, eligibility_groups)
    SELECT $1, voucher_number, birth_date, eligibility_groups FROM latest
    ON CONFLICT (municipality_code, voucher_number) DO UPDATE
    SET birth_date = EXCLUDED.birth_date,
        eligibility_groups = EXCLUDED.eligibility_groups,
        imported_at = now()
)
SELECT count(*) FILTER (WHERE r.voucher_number IS NULL) AS added,
       count(*) FILTER (WHERE r.birth_date <> l.birth_date
                           OR r.eligibility_groups <> l.eligibility_groups) AS updated
FROM latest l
LEFT JOIN registry r ON r.municipality_code = $1 AND r.voucher_number = l.voucher_number
"""


async def apply_rows(conn: Conn, municipality: str, rows: Sequence[StagedRow]) -> tuple[int, int]:
    """Stage and upsert one batch (see _APPLY_BATCH): (added, updated) by it. Groups travel
    joined by ``|``, which a group never holds (the import's GROUP pattern)."""
    row = await conn.fetchrow(
        _APPLY_BATCH,
        municipality,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        ["|".join(r[3]) for r in rows],
        timeout=IMPORT_S,
    )
    assert row is not None
    return int(row["added"]), int(row["updated"])


async def count(conn: Conn, municipality: str) -> int:
    """Residents in the municipality's registry."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM registry WHERE municipality_code = $1", municipality
        )
    )


async def absent(conn: Conn, municipality: str) -> int:
    """Residents not in the staged file."""
    found = await conn.fetchval(
        f"SELECT count(*) FROM ({_ABSENT}) a", municipality, timeout=IMPORT_S
    )
    return int(found)


async def duplicates(conn: Conn, limit: int) -> list[tuple[int, int]]:
    """(row, first row with the same voucher number) for rows repeating a voucher number,
    in file order, at most ``limit``."""
    rows = await conn.fetch(
        "SELECT file_row, first FROM (SELECT file_row, min(file_row) OVER "
        "(PARTITION BY voucher_number) AS first FROM registry_incoming) d "
        "WHERE file_row > first ORDER BY file_row LIMIT $1",
        limit,
        timeout=IMPORT_S,
    )
    return [(int(r["file_row"]), int(r["first"])) for r in rows]


async def lock(conn: Conn, municipality: str) -> None:
    """One import of a municipality's registry at a time (until the transaction ends);
    another one under way makes this one ``busy``."""
    try:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('registry:' || $1))", municipality
        )
    except asyncpg.exceptions.LockNotAvailableError as exc:
        raise errors.Busy(retry_after_s=30) from exc


async def compare(conn: Conn, municipality: str) -> Comparison:
    """What applying the staged file would change (read only)."""
    row = await conn.fetchrow(
        f"""
        WITH file AS (
            SELECT count(*) AS rows,
                   count(*) FILTER (WHERE r.voucher_number IS NULL) AS added,
                   count(*) FILTER (WHERE r.birth_date <> i.birth_date
                                       OR r.eligibility_groups <> i.eligibility_groups)
                       AS updated
            FROM registry_incoming i
            LEFT JOIN registry r
                   ON r.municipality_code = $1 AND r.voucher_number = i.voucher_number
        ), absent AS (
            SELECT count(*) AS absent, count(*) FILTER (WHERE booked) AS absent_booked
            FROM ({_ABSENT}) a
        )
        SELECT (SELECT count(*) FROM registry WHERE municipality_code = $1) AS before,
               file.*, absent.*
        FROM file, absent
        """,
        municipality,
        timeout=IMPORT_S,
    )
    assert row is not None
    return Comparison(
        before=int(row["before"]),
        rows=int(row["rows"]),
        added=int(row["added"]),
        updated=int(row["updated"]),
        absent=int(row["absent"]),
        absent_booked=int(row["absent_booked"]),
    )


async def remove_absent(conn: Conn, municipality: str) -> int:
    """Remove the residents the staged file leaves out, except those with a booking still
    to come: how many were removed."""
    removed = await conn.fetchval(
        f"""
        WITH gone AS (
            DELETE FROM registry r
            WHERE r.municipality_code = $1
              AND NOT EXISTS (SELECT 1 FROM registry_incoming i
                              WHERE i.voucher_number = r.voucher_number)
              AND NOT {_BOOKED}
            RETURNING 1
        )
        SELECT count(*) FROM gone
        """,
        municipality,
        timeout=IMPORT_S,
    )
    return int(removed)
