"""Municipal admin: the vaccination ledger as a CSV download (booking/services/exports.py).

GET /api/exports/ledger?from=YYYY-MM-DD&to=YYYY-MM-DD[&encoding=utf-8|shift_jis]
answers the file (streamed; UTF-8 with a BOM, or Shift_JIS as cp932), or a JSON error
before any byte of it: a bad range is 422 ``invalid_input`` naming the field."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from booking import http
from booking import openapi as doc
from booking.http import Endpoint, ctx_of, query
from booking.services import exports
from booking.services.csv_export import CsvEncoding, attachment
from machiai.openapi import Reply, string
from machiai.pages import SECURITY_HEADERS

ENCODINGS = [e.value for e in CsvEncoding]


def encoding_of(raw: str | None) -> CsvEncoding:
    """The encoding asked for by its exact name (an API refuses a name it does not know,
    where the console's links read the usual spellings)."""
    if raw is None:
        return CsvEncoding.UTF8
    try:
        return CsvEncoding(raw)
    except ValueError:
        raise http.invalid(
            "encoding", "must be utf-8 or shift_jis", "utf-8 か shift_jis です"
        ) from None


async def ledger(request: Request) -> Response:
    claims = http.staff(request, "admin")
    fields = query(request)
    span = exports.ledger_range(claims.municipality_code, fields.day("from"), fields.day("to"))
    encoding = encoding_of(request.query_params.get("encoding"))
    pieces = exports.ledger_csv(
        ctx_of(request).pool,
        span,
        encoding,
        exports.Exporter("staff", claims.staff_id),
    )
    name = exports.ledger_filename(span)
    return StreamingResponse(
        await exports.started(pieces),
        media_type=f"text/csv; charset={encoding.charset}",
        headers={**SECURITY_HEADERS, "Content-Disposition": attachment(name)},
    )


DAY_RANGE = f"{exports.FIRST_DAY} to {exports.LAST_DAY}, Japan time"
ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/exports/ledger",
        ledger,
        "The vaccination ledger of the administrator's municipality: every attended "
        "vaccination whose appointment fell on a day of [from, to] (Japan time), as CSV "
        "with the columns " + ",".join(exports.LEDGER_HEADER) + " (voucher number, "
        "municipality code, date, clinic code, clinic name, vaccine, dose, lot number). "
        "Streamed; audited as booking.export.ledger",
        auth="staff",
        roles=("admin",),
        params=(
            doc.query("from", doc.DATE, required=True, description=f"first day ({DAY_RANGE})"),
            doc.query("to", doc.DATE, required=True, description="last day, on or after from"),
            doc.query(
                "encoding",
                string(enum=ENCODINGS),
                description="utf-8 (default, with a byte-order mark) or shift_jis (cp932)",
            ),
        ),
        replies={
            200: Reply(
                "The ledger as CSV",
                string(),
                media_type="text/csv",
                headers={"Content-Disposition": string()},
            )
        },
        body_kind="none",
        tags=("admin",),
    ),
]
