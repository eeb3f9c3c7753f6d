"""Where messages about a booking go: the resident's e-mail address and language, kept on
the booking row (migration 0009), never in the registry and never in the audit log, so it
goes with the booking's retention (``machiai purge``)."""

from __future__ import annotations

import uuid

from machiai.pg import Conn


async def contact_of(
    conn: Conn, booking_id: uuid.UUID, municipality: str, voucher: str
) -> tuple[str | None, str] | None:
    """(address or None, locale) of the resident's own booking; None: not theirs / unknown."""
    row = await conn.fetchrow(
        "SELECT contact_email, contact_locale FROM bookings "
        "WHERE id = $1 AND municipality_code = $2 AND voucher_number = $3",
        booking_id,
        municipality,
        voucher,
    )
    return None if row is None else (row["contact_email"], row["contact_locale"])


async def set_contact(
    conn: Conn, booking_id: uuid.UUID, municipality: str, voucher: str, email: str, locale: str
) -> bool:
    """Set the address of the resident's own *active* booking (confirmed: a cancelled or
    past one sends nothing); False when there is no such booking (nothing written)."""
    found = await conn.fetchval(
        "UPDATE bookings SET contact_email = $4, contact_locale = $5, updated_at = now() "
        "WHERE id = $1 AND municipality_code = $2 AND voucher_number = $3 "
        "AND status = 'confirmed' RETURNING id",
        booking_id,
        municipality,
        voucher,
        email,
        locale,
    )
    return found is not None
