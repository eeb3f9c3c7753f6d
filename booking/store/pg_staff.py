"""SQL of staff sign-in."""

from __future__ import annotations

from dataclasses import dataclass

from machiai.pg import Conn


@dataclass(frozen=True, slots=True)
class StaffLogin:
    """An active staff account as sign-in needs it."""

    staff_id: str
    municipality: str
    role: str
    clinic_id: str | None
    password_hash: str
    generation: int


async def active_staff(conn: Conn, login: str) -> StaffLogin | None:
    row = await conn.fetchrow(
        "SELECT id::text, municipality_code, role::text, clinic_id::text, password_hash, "
        "generation FROM staff WHERE login = $1 AND active",
        login,
    )
    if row is None:
        return None
    return StaffLogin(
        row["id"],
        row["municipality_code"],
        row["role"],
        row["clinic_id"],
        row["password_hash"],
        row["generation"],
    )


async def replace_hash(conn: Conn, staff_id: str, old_hash: str, new_hash: str) -> bool:
    """Store a fresh hash of the same password; a password changed meanwhile is kept (the
    guard on the old hash), so a sign-in never undoes a reset."""
    done = await conn.execute(
        "UPDATE staff SET password_hash = $3 WHERE id = $1::uuid AND password_hash = $2",
        staff_id,
        old_hash,
        new_hash,
    )
    return done != "UPDATE 0"


async def municipality_clinics(conn: Conn, municipality: str) -> list[tuple[str, str, str]]:
    """(id, name_ja, name_en) of the municipality's clinics, for a clinic account's choice."""
    rows = await conn.fetch(
        "SELECT id::text, name_ja, name_en FROM clinics WHERE municipality_code = $1 "
        "ORDER BY name_ja",
        municipality,
    )
    return [(r["id"], r["name_ja"], r["name_en"]) for r in rows]
