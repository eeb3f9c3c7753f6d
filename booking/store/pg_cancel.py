"""Cancel a booking: its place returns, in one transaction with audit, outbox and the
idempotency record. (Booking and changing are :mod:`booking.store.pg_confirm`.)"""

from __future__ import annotations

import uuid

from booking import errors
from booking.store import pg
from machiai.pg import Conn

UNBOOK_SQL = f"UPDATE slots SET {pg.unbook_set('$2::booking_channel')} WHERE id = $1 AND booked > 0"


async def cancel(
    conn: Conn,
    booking_id: uuid.UUID,
    municipality: str,
    voucher: str | None,
    actor_kind: str,
    actor_id: str,
    idem: tuple[str, str, str] | None,
    lock_timeout_ms: int,
) -> pg.Outcome:
    """Cancel a confirmed booking; its place returns. ``voucher`` None = any in the tenant."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
        row = await conn.fetchrow(
            "SELECT id, slot_id, dose_number, voucher_number, status::text, channel::text "
            "FROM bookings "
            "WHERE id = $1 AND municipality_code = $2 "
            "AND ($3::text IS NULL OR voucher_number = $3) FOR UPDATE",
            booking_id,
            municipality,
            voucher,
        )
        if row is None:
            raise errors.NoBooking()
        if row["status"] != "confirmed":
            raise errors.BookingState()
        later = await conn.fetchval(
            "SELECT true FROM bookings WHERE municipality_code = $1 AND voucher_number = $2 "
            "AND dose_number > $3 AND status IN ('confirmed', 'attended')",
            municipality,
            row["voucher_number"],
            row["dose_number"],
        )
        if later:
            raise errors.DoseRule()
        before = await pg.booking_by_id(conn, booking_id)
        await conn.execute(
            "UPDATE bookings SET status = 'cancelled', cancelled_at = now(), updated_at = now() "
            "WHERE id = $1",
            booking_id,
        )
        await conn.execute(UNBOOK_SQL, row["slot_id"], row["channel"])
        after = await pg.booking_by_id(conn, booking_id)
        assert after is not None
        await pg.audit(
            conn,
            municipality=municipality,
            actor_kind=actor_kind,
            actor_id=actor_id,
            action="booking.booking.cancelled",
            target=str(booking_id),
            before=before,
            after=after,
        )
        # Who cancelled (resident or staff), for the resident's message (booking/delivery).
        await pg.outbox(conn, "booking.booking.cancelled", {**after, "cancelled_by": actor_kind})
        response = {"booking": after}
        if idem is not None:
            await pg.record_idempotent(conn, idem[0], idem[1], idem[2], 200, response)
        states = await pg.slot_states(conn, [str(row["slot_id"])])
    return pg.Outcome(response=response, states=states)
