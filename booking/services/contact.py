"""A resident's address for messages about their booking, read and set by the resident.

Invariant: a resident reads and sets only the address of their own booking (the session's
resident or household member: the store's WHERE names municipality and voucher), and only
an active (confirmed) booking takes a new one.
"""

from __future__ import annotations

from booking import errors
from booking.domain import Resident
from booking.services.confirm import Contact
from booking.services.context import Ctx
from booking.store import pg, pg_contact


async def contact_of(ctx: Ctx, resident: Resident, booking_id: str) -> Contact:
    """Where messages about the resident's booking go (``email`` None: nowhere yet)."""
    parsed = pg.parse_uuid(booking_id)
    found = None
    if parsed is not None:
        async with pg.acquire(ctx.pool) as conn:
            found = await pg_contact.contact_of(
                conn, parsed, resident.municipality, resident.voucher
            )
    if found is None:
        raise errors.NoBooking()
    return Contact(found[0], found[1])


async def set_contact(ctx: Ctx, resident: Resident, booking_id: str, contact: Contact) -> None:
    """Messages about the resident's active booking go to ``contact`` from now on."""
    parsed = pg.parse_uuid(booking_id)
    if parsed is None or contact.email is None:
        raise errors.NoBooking()
    async with pg.acquire(ctx.pool) as conn:
        done = await pg_contact.set_contact(
            conn, parsed, resident.municipality, resident.voucher, contact.email, contact.locale
        )
    if not done:
        raise errors.NoBooking()
