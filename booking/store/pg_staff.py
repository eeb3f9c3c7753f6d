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


async def active_staff(conn: Conn, login: str) -> StaffLogin | None:
    row = await conn.fetchrow(
        "SELECT id::text, municipality_code, role::text, clinic_id::text, password_hash "
        "FROM staff WHERE login = $1 AND active",
        login,
    )
    if row is None:
        return None
    return StaffLogin(
        row["id"], row["municipality_code"], row["role"], row["clinic_id"], row["password_hash"]
    )
