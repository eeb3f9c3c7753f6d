"""Every route of the staff consoles (all under /staff, plus their static files)."""

from __future__ import annotations

from starlette.routing import Route

from booking.console import (
    admin_audit,
    admin_delivery,
    admin_events,
    admin_export,
    admin_registry,
    admin_staff,
    clinic,
    operator,
    signin,
)
from booking.console.common import asset_routes


def routes() -> list[Route]:
    return [
        *signin.routes(),
        *clinic.routes(),
        *operator.routes(),
        *admin_events.routes(),
        *admin_staff.routes(),
        *admin_registry.routes(),
        *admin_audit.routes(),
        *admin_delivery.routes(),
        *admin_export.routes(),
        *asset_routes(),
    ]
