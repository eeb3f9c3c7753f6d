"""SQL of the eligibility registry import."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from booking.store import pg
from machiai.pg import Conn


async def replace_registry(
    conn: Conn, municipality: str, staff_id: str, rows: Sequence[tuple[str, date, list[str]]]
) -> tuple[int, int]:
    """Swap the municipality's registry for ``rows`` in one transaction: (before, after)."""
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('registry:' || $1))", municipality
        )
        before = int(
            await conn.fetchval(
                "SELECT count(*) FROM registry WHERE municipality_code = $1", municipality
            )
        )
        await conn.execute("DELETE FROM registry WHERE municipality_code = $1", municipality)
        await conn.copy_records_to_table(
            "registry",
            records=[(municipality, v, b, g) for v, b, g in rows],
            columns=["municipality_code", "voucher_number", "birth_date", "eligibility_groups"],
        )
        await pg.audit(
            conn,
            municipality=municipality,
            actor_kind="staff",
            actor_id=staff_id,
            action="booking.registry.imported",
            target=municipality,
            before={"rows": before},
            after={"rows": len(rows)},
        )
    return before, len(rows)
