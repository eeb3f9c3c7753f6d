"""Staff sign-in and sign-out, and the public, login-free endpoints (availability summary)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import errors, http
from booking import openapi as doc
from booking.http import Endpoint, body, ctx_of, ok, tokens_of
from booking.services.staff import staff_login, staff_logout
from machiai.openapi import Param, Reply, array, boolean, integer, obj, string, text
from machiai.tokens import STAFF_ROLES


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


async def logout(request: Request) -> Response:
    claims = http.staff(request, *STAFF_ROLES)
    await staff_logout(ctx_of(request), claims)
    # This process knows at once; the others within CHECK_TTL_S.
    http.staff_generations(request).forget(claims.staff_id)
    return ok({"logged_out": True})


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


AVAILABILITY = obj(
    {
        "event_id": doc.EVENT_ID,
        "days": array(
            obj(
                {
                    "date": doc.DATE,
                    "clinic_id": doc.UUID,
                    "clinic_name_ja": string(),
                    "clinic_name_en": string(),
                    "area": string(),
                    "remaining": integer(0),
                }
            )
        ),
    }
)
# A public answer caches (and answers 304 to its ETag).
CACHED = {"ETag": string(min_length=1), "Cache-Control": string(min_length=1)}

ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/staff/login",
        login,
        "Staff sign-in: a bearer token for the staff endpoints",
        request=obj({"login": text(64), "password": text(200)}),
        response=obj(
            {
                "token": string(min_length=1),
                "staff_id": doc.UUID,
                "role": string(enum=("admin", "operator", "clinic")),
                "municipality_code": doc.MUNICIPALITY_CODE,
                "clinic_id": string(fmt="uuid", nullable=True),
            }
        ),
        errors={401: ("login_refused",), 429: ("too_many_attempts",)},
        tags=("staff",),
    ),
    Endpoint(
        "POST",
        "/api/staff/logout",
        logout,
        "Staff sign-out everywhere: every token of this person stops working (this one and "
        "those of other devices, within 2 s), not only the one sent",
        auth="staff",
        roles=tuple(sorted(STAFF_ROLES)),
        response=obj({"logged_out": boolean()}),
        body_kind="none",
        tags=("staff",),
    ),
    Endpoint(
        "GET",
        "/api/public/events/{event_id}/availability",
        public_availability,
        "Places left per clinic and day (no login; Cache-Control and ETag, 304 on a match)",
        params=(
            doc.path("event_id", string(max_length=100)),
            Param("If-None-Match", "header", string(), description="an ETag it gave"),
        ),
        response=AVAILABILITY,
        replies={
            200: Reply("Places left", AVAILABILITY, headers=CACHED),
            304: Reply("Unchanged since the ETag sent in If-None-Match", headers=CACHED),
        },
        errors={404: ("not_found",)},
        body_kind="none",
        tags=("public",),
    ),
]
