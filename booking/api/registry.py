"""Municipal admin: registry CSV import (preview with ?dry_run=true, then apply; merge by
default, replace with the number of removals confirmed)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import errors, http
from booking import openapi as doc
from booking.http import Endpoint, ctx_of, ok, query
from booking.services.registry_import import (
    MAX_ROWS,
    Mode,
    import_registry,
)
from machiai.openapi import array, boolean, integer, obj, string

# Its own body size limit (BOOKING_REGISTRY_MAX_BYTES, booking/app.py): a city's file.
IMPORT_PATH = "/api/registry/import"


def _mode(request: Request) -> Mode:
    raw = request.query_params.get("mode")
    if raw is None:
        return Mode.MERGE
    try:
        return Mode(raw)
    except ValueError:
        raise http.invalid("mode", "must be merge or replace", "merge か replace です") from None


async def import_csv(request: Request) -> Response:
    claims = http.staff(request, "admin")
    fields = query(request)
    dry_run = fields.boolean("dry_run") or False
    mode = _mode(request)
    expect_removed = fields.opt_integer("expect_removed", minimum=0, maximum=MAX_ROWS)
    if expect_removed is not None and mode is not Mode.REPLACE:
        # A confirmation of removals where nothing is removed: the caller meant a replace.
        raise http.invalid(
            "expect_removed",
            "applies to mode=replace only",
            "mode=replace のときだけ指定できます",
        )
    # The body is read as it arrives (a city's file is far larger than other bodies).
    result = await import_registry(
        ctx_of(request),
        claims.municipality_code,
        claims.staff_id,
        request.stream(),
        mode=mode,
        dry_run=dry_run,
        expect_removed=expect_removed,
    )
    return ok(result)


COUNT = integer(0)
ENDPOINTS = [
    Endpoint(
        "POST",
        IMPORT_PATH,
        import_csv,
        "Import the eligibility registry (CSV: voucher_number,birth_date,municipality_code,"
        "groups with groups separated by |); all or nothing. mode=merge (default) adds and "
        "updates the file's residents and removes nobody; mode=replace also removes the "
        "residents the file leaves out (except those with a confirmed booking to come), only "
        "when expect_removed is the number removed (see the dry run)",
        auth="staff",
        roles=("admin",),
        params=(
            doc.query("dry_run", string(enum=("true", "false", "1", "0"))),
            doc.query(
                "mode",
                string(enum=[m.value for m in Mode]),
                description="merge (default) or replace",
            ),
            doc.query(
                "expect_removed",
                integer(0, MAX_ROWS),
                description="mode=replace: the number of residents it removes (default 0)",
            ),
        ),
        request={
            **doc.CSV,
            "example": "voucher_number,birth_date,municipality_code,groups\n"
            "1000000001,1935/1/1,131001,65+\n"
            "1000000002,1948-06-15,131001,65+|medical\n",
        },
        response=obj(
            {
                "dry_run": boolean(),
                "mode": string(enum=[m.value for m in Mode]),
                "rows": integer(0, description="rows in the file"),
                "added": integer(0, description="residents new to the registry"),
                "updated": integer(
                    0, description="known residents whose birth date or groups change"
                ),
                "unchanged": COUNT,
                "removed": integer(0, description="residents removed (mode=replace)"),
                "kept_booked": integer(
                    0,
                    description="residents left out of a replacing file but kept: they have a "
                    "confirmed booking to come",
                ),
                "groups": {**obj(), "additionalProperties": COUNT},
                "errors": array(doc.ROW_ERROR),
            }
        ),
        errors={409: (errors.RemovalsUnconfirmed.code,), 422: ("csv_invalid",)},
        body_kind="csv",
        tags=("admin",),
    ),
]
