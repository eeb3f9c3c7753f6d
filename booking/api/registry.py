"""Municipal admin: registry CSV import (preview with ?dry_run=true, then apply)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import http
from booking.http import Endpoint, ctx_of, ok, query
from booking.services.registry_import import import_registry


async def import_csv(request: Request) -> Response:
    claims = http.staff(request, "admin")
    dry_run = query(request).boolean("dry_run") or False
    data = await request.body()
    result = await import_registry(
        ctx_of(request), claims.municipality_code, claims.staff_id, data, dry_run
    )
    return ok(result)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/registry/import",
        import_csv,
        "Import the eligibility registry (CSV: voucher_number,birth_date,municipality_code,"
        "groups with groups separated by |); all or nothing; replaces the previous registry",
        auth="staff",
        params={"dry_run": "true: validate and preview only"},
        response={"dry_run": "bool", "rows": "int", "groups": "object", "errors": "array"},
        body_kind="csv",
        tags=("admin",),
    ),
]
