"""Staff sign-in and the public, login-free endpoints (availability summary)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import errors, http
from booking.http import Endpoint, body, ctx_of, ok, tokens_of
from booking.services.staff import staff_login


async def login(request: Request) -> Response:
    fields = await body(request)
    name = fields.text("login", max_len=64)
    password = fields.text("password", max_len=200)
    token, claims = await staff_login(
        ctx_of(request), tokens_of(request), name, password, http.client_address(request)
    )
    return ok(
        {
            "token": token,
            "staff_id": claims.staff_id,
            "role": claims.role,
            "municipality_code": claims.municipality_code,
            "clinic_id": claims.clinic_id,
        }
    )


async def public_availability(request: Request) -> Response:
    event_id = http.path_param(request, "event_id")
    found = await request.app.state.availability.public_summary(ctx_of(request), event_id)
    if found is None:
        raise errors.NotFound()
    data, etag = found
    headers = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={ctx_of(request).settings.public_cache_s}",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/json", headers=headers)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/staff/login",
        login,
        "Staff sign-in: a bearer token for the staff endpoints",
        request={"login": "string", "password": "string"},
        response={
            "token": "string",
            "staff_id": "string",
            "role": "string: admin | operator | clinic",
            "municipality_code": "string",
            "clinic_id": "string or null",
        },
        tags=("staff",),
    ),
    Endpoint(
        "GET",
        "/api/public/events/{event_id}/availability",
        public_availability,
        "Places left per clinic and day (no login; Cache-Control and ETag)",
        response={
            "event_id": "string",
            "days": "array of date, clinic_id, clinic_name_ja, clinic_name_en, area, remaining",
        },
        body_kind="none",
        tags=("public",),
    ),
]
