"""A resident's bookings, as the resident and the call centre see them."""

from __future__ import annotations

from typing import Any

from booking.domain import Resident
from booking.services.context import Ctx
from booking.store import pg


async def resident_bookings(ctx: Ctx, resident: Resident) -> list[dict[str, Any]]:
    """Every booking of the resident (every status), by dose then creation."""
    async with pg.acquire(ctx.pool) as conn:
        return await pg.resident_bookings(conn, resident.municipality, resident.voucher)
