"""An administrator's view of their municipality's events, read from Postgres (the live
state and every change belong to the waitroom: booking.services.waitroom_admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from booking.services.context import Ctx
from booking.store import pg, pg_events
from machiai.tokens import StaffClaims


async def municipality_events(ctx: Ctx, admin: StaffClaims) -> list[dict[str, Any]]:
    async with pg.acquire(ctx.pool) as conn:
        return await pg_events.municipality_events(conn, admin.municipality_code)


async def municipality_event(ctx: Ctx, admin: StaffClaims, event_id: str) -> dict[str, Any] | None:
    """The event if it is the administrator's municipality's (another's is not found)."""
    async with pg.acquire(ctx.pool) as conn:
        return await pg_events.municipality_event(conn, admin.municipality_code, event_id)


async def bookings_per_minute(
    ctx: Ctx, event_id: str, since: datetime, until: datetime
) -> dict[datetime, int]:
    async with pg.acquire(ctx.pool) as conn:
        return await pg_events.bookings_per_minute(conn, event_id, since, until)
