"""Municipal admin: registry CSV import (preview with ?dry_run=true, then apply)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import http
from booking import openapi as doc
from booking.http import Endpoint, ctx_of, ok, query
from booking.services.registry_import import import_registry
from machiai.openapi import array, boolean, integer, obj, string


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
        roles=("admin",),
        params=(doc.query("dry_run", string(enum=("true", "false", "1", "0"))),),
        request={
            **doc.CSV,
            "example": "voucher_number,birth_date,municipality_code,groups\n"
            "1000000001,1935/1/1,131001,65+\n"
            "1000000002,1948-06-15,131001,65+|medical\n",
        },
        response=obj(
            {
                "dry_run": boolean(),
                "rows": integer(0),
                "groups": {**obj(), "additionalProperties": integer(0)},
                "errors": array(doc.ROW_ERROR),
            },
            {"replaced": integer(0, description="rows of the registry replaced")},
        ),
        errors={422: ("csv_invalid",)},
        body_kind="csv",
        tags=("admin",),
    ),
]
