"""SQL of the eligibility registry import."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from booking.store import pg
from machiai.pg import Conn

IMPORT_S = 600.0


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
        # A city's registry is large: these two get longer than the pool's statement deadline.
        await conn.execute(
            "DELETE FROM registry WHERE municipality_code = $1", municipality, timeout=IMPORT_S
        )
        await conn.copy_records_to_table(
            "registry",
            records=[(municipality, v, b, g) for v, b, g in rows],
            columns=["municipality_code", "voucher_number", "birth_date", "eligibility_groups"],
            timeout=IMPORT_S,
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
