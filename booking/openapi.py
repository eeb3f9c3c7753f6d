"""Booking's OpenAPI 3 document, generated from the endpoint table so every route is
listed; and the shapes the endpoints share (a slot, a hold, a booking).

Each endpoint names its own success body and the errors particular to it; the errors
every operation of its kind can answer are added here: ``busy`` (503) everywhere, a
malformed or oversized body where there is one, ``invalid_input`` where there is input,
and the sign-in refusals where a token is needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from booking.http import HOLD_ID_PATTERN, VOUCHER_PATTERN, Endpoint
from machiai import inputs
from machiai.health import HEALTH_OPERATIONS
from machiai.metrics import METRICS_OPERATION
from machiai.openapi import (
    DOCUMENT_OPERATION,
    Operation,
    Param,
    Reply,
    Schema,
    array,
    bearer,
    boolean,
    document,
    integer,
    obj,
    string,
)

UUID = string(fmt="uuid", pattern=inputs.UUID_PATTERN)
DATE = string(fmt="date", pattern=inputs.DATE_PATTERN)
DATE_TIME = string(fmt="date-time")
EVENT_ID = string(pattern=inputs.EVENT_ID_PATTERN, max_length=63)
VACCINE_CODE = string(pattern=inputs.VACCINE_CODE_PATTERN, max_length=40)
VOUCHER = string(pattern=VOUCHER_PATTERN, description="接種券番号: 10 digits")
HOLD_ID = string(pattern=HOLD_ID_PATTERN, description="<slot id>.<32 hex>, from POST /api/holds")
MUNICIPALITY_CODE = string(pattern=inputs.MUNICIPALITY_CODE_PATTERN)
# An instant as clients may send it: ISO 8601, Japan time when it has no offset.
INSTANT = string(
    pattern=inputs.INSTANT_PATTERN, description="ISO 8601 date-time; Japan time without offset"
)
BIRTH_DATE = string(fmt="date", pattern=inputs.DATE_PATTERN, description="YYYY-MM-DD")

SLOT_OFFER = obj(
    {
        "slot_id": UUID,
        "clinic_id": UUID,
        "area": string(),
        "starts_at": DATE_TIME,
        "duration_min": integer(1, 1440),
        "vaccine_code": VACCINE_CODE,
        "dose_number": integer(1, 9),
        "remaining": integer(0),
    }
)
SEARCH_RESULT = obj(
    {
        "slots": array(SLOT_OFFER, max_items=500, description="places left, soonest first"),
        "more": boolean(description="more slots match: narrow the search"),
    }
)
HOLD = obj(
    {
        "hold_id": HOLD_ID,
        "slot_id": UUID,
        "expires_in_ms": integer(0),
        "remaining": integer(0, description="places left in the slot after this hold"),
    }
)
_BOOKING_FIELDS: dict[str, Schema] = {
    "booking_id": UUID,
    "confirmation_code": string(pattern="^[A-Z0-9]{8}$"),
    "slot_id": UUID,
    "clinic_id": UUID,
    "clinic_name_ja": string(),
    "clinic_name_en": string(),
    "starts_at": DATE_TIME,
    "dose_number": integer(1, 9),
    "vaccine_code": VACCINE_CODE,
    "status": string(enum=("confirmed", "cancelled", "attended", "no_show")),
    "channel": string(enum=("web", "operator")),
    "created_at": DATE_TIME,
}
BOOKING = obj(_BOOKING_FIELDS)
BOOKING_WITH_VOUCHER = obj({**_BOOKING_FIELDS, "voucher_number": VOUCHER})
ONE_BOOKING = obj({"booking": BOOKING})
CLINIC_SLOT = obj(
    {
        "slot_id": UUID,
        "event_id": EVENT_ID,
        "starts_at": DATE_TIME,
        "duration_min": integer(1, 1440),
        "capacity": integer(0, 100_000),
        "booked": integer(0),
        "closed": boolean(),
        "vaccine_code": VACCINE_CODE,
        "dose_number": integer(1, 9),
        "publish_from": string(fmt="date-time", nullable=True),
        "publish_until": string(fmt="date-time", nullable=True),
    }
)
CSV = string(
    description="CSV, UTF-8 (BOM allowed) or Shift_JIS; dates as 1935-01-01, 1935/1/1 or "
    "1935年1月1日; numbers in the digits 0-9"
)
ROW_ERROR = obj({"row": integer(0), "column": string(), "reason": string()})

IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    "header",
    string(min_length=1, max_length=200),
    description="a retry with the same key gets the first answer",
)


def path(name: str, schema: Schema) -> Param:
    return Param(name, "path", schema, required=True)


def query(name: str, schema: Schema, *, required: bool = False, description: str = "") -> Param:
    """A query parameter; an optional one may be sent empty, which is as if not sent."""
    if not required and ("pattern" in schema or "format" in schema):
        schema = {"anyOf": [schema, string(max_length=0)]}
        description = f"{description} (empty: not given)".strip()
    return Param(name, "query", schema, required=required, description=description)


def doc_path(path: str) -> str:
    """A route's path as the document writes it: ``{slot_id:uuid}`` is ``{slot_id}``."""
    return re.sub(r"{(\w+):\w+}", r"{\1}", path)


def operation(ep: Endpoint) -> Operation:
    """The endpoint as the document tells it, with the errors common to its kind."""
    errors: dict[int, set[str]] = {503: {"busy"}}
    has_input = ep.params or ep.request is not None or ep.body_kind == "csv"
    if has_input:
        errors.setdefault(422, set()).update({"invalid_input", "invalid_character"})
    if ep.body_kind in ("json", "csv") and ep.method in ("POST", "PATCH", "PUT"):
        errors[413] = {"body_too_large"}
    if ep.body_kind == "json" and ep.method in ("POST", "PATCH", "PUT"):
        errors[400] = {"malformed_json"}
    if ep.auth == "session":
        errors.setdefault(401, set()).update({"unauthorized", "session_expired"})
    elif ep.auth == "staff":
        errors.setdefault(401, set()).add("unauthorized")
        errors.setdefault(403, set()).add("forbidden")
    if any(p.location == "path" for p in ep.params):
        # A path that names nothing (or nothing this caller may see) is not found.
        errors.setdefault(404, set()).add("not_found")
    for status, codes in ep.errors.items():
        errors.setdefault(status, set()).update(codes)
    body: Schema | None = None
    media = "application/json"
    if ep.body_kind == "json" and ep.method in ("POST", "PATCH", "PUT"):
        body = ep.request if ep.request is not None else obj()
    elif ep.body_kind == "csv":
        body = ep.request if ep.request is not None else string()
        media = "text/csv"
    roles = f" Staff roles: {', '.join(ep.roles)}." if ep.roles else ""
    return Operation(
        method=ep.method,
        path=doc_path(ep.path),
        summary=ep.summary,
        description=roles.strip(),
        replies={
            ep.status: Reply("Created" if ep.status == 201 else "OK", ep.response),
            **ep.replies,
        },
        errors={status: tuple(sorted(codes)) for status, codes in errors.items()},
        tags=ep.tags,
        security=() if ep.auth == "none" else (ep.auth,),
        params=ep.params,
        body=body,
        body_media=media,
        # A JSON body may be left out where it carries nothing (an empty one is {}).
        body_required=ep.request is not None or ep.body_kind == "csv",
    )


def build_openapi(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    return document(
        title="machiai booking API",
        description="Residents (session token), operators, clinics and admins (staff token). "
        'Errors: {"error": {"code", "message"}}, Japanese by default, English with '
        "Accept-Language: en. A busy answer (503) says when to retry in Retry-After.",
        operations=[
            *(operation(ep) for ep in endpoints),
            *HEALTH_OPERATIONS,
            METRICS_OPERATION,
            DOCUMENT_OPERATION,
        ],
        security_schemes={
            "session": bearer("resident session: the token from POST /api/sessions"),
            "staff": bearer("staff token from POST /api/staff/login"),
        },
    )
