"""The waitroom's OpenAPI 3 document (served at ``/openapi.json``): the line's JSON API
(join, status, enter, the pre-queue seed) and the administrators' event API.

The routes live in ``waitroom/app.py`` (hot paths first) and ``web/admin.py``; a test
holds this table and the routes to the same paths and methods. The pages (waiting page,
shuffle page, home, static files) are for people and are not part of it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from machiai import inputs
from machiai.health import HEALTH_OPERATIONS
from machiai.metrics import METRICS_OPERATION
from machiai.openapi import (
    DOCUMENT_OPERATION,
    Operation,
    Param,
    Reply,
    Schema,
    bearer,
    boolean,
    document,
    header_key,
    integer,
    number,
    obj,
    string,
    text,
)
from waitroom.services.estimate_wait import Phase
from waitroom.services.manage_event import INT_FIELDS, PHONE_SHARE_PCT, TEXT_FIELDS

EVENT_STATES = ("scheduled", "prequeue", "open", "paused", "sold_out", "closed")
EVENT_ID = string(pattern=inputs.EVENT_ID_PATTERN, max_length=63)
INSTANT = string(
    pattern=inputs.INSTANT_WITH_OFFSET_PATTERN, description="ISO 8601 date-time with its offset"
)
DATE_TIME = string(fmt="date-time")
TICKET_QUERY = Param("t", "query", string(), description="the ticket, where no header can be sent")
EVENT_PATH = Param("event_id", "path", EVENT_ID, required=True)
UNKNOWN_EVENT = {404: ("event_not_found",), 422: ("invalid_input",)}
TICKET_REFUSALS = {
    401: ("ticket_missing",),
    403: ("ticket_invalid", "ticket_expired", "ticket_wrong_event"),
    409: ("ticket_unknown",),
}

STATUS: Schema = obj(
    {
        "event_id": EVENT_ID,
        "state": string(enum=[p.value for p in Phase]),
        "event_state": string(enum=EVENT_STATES),
        "position": integer(1, nullable=True, description="1 = next"),
        "ahead": integer(0, nullable=True),
        "estimated_wait_s": integer(0, nullable=True),
        "admission_rate_per_min": number(minimum=0, nullable=True),
        "slots_left": integer(0, nullable=True),
        "poll_after_s": integer(1, description="when to ask again"),
    },
    {
        "estimated_wait_low_s": integer(0),
        "estimated_wait_high_s": integer(0),
        "more_ahead_than_slots": boolean(),
        "prequeue_no": integer(0),
        "line_index": integer(0),
        "opens_in_s": integer(0),
        "enter_within_s": integer(0),
        "enter_url": string(),
    },
)
JOINED: Schema = {
    **STATUS,
    "properties": {
        **STATUS["properties"],
        "ticket": string(min_length=1, description="send it as X-Machiai-Ticket"),
        "status_url": string(),
    },
    "required": [*STATUS["required"], "ticket", "status_url"],
}
EVENT: Schema = obj(
    {
        "id": EVENT_ID,
        "municipality_code": string(pattern=inputs.MUNICIPALITY_CODE_PATTERN),
        "name_ja": string(),
        "name_en": string(),
        "prequeue_at": DATE_TIME,
        "opens_at": DATE_TIME,
        "closes_at": DATE_TIME,
        "admit_per_minute": integer(*INT_FIELDS["admit_per_minute"]),
        "max_active": integer(*INT_FIELDS["max_active"]),
        "eligibility_group": string(nullable=True),
        "state": string(enum=EVENT_STATES),
        "phone_share_pct": integer(*PHONE_SHARE_PCT),
        "phone_release_at": string(fmt="date-time", nullable=True),
    }
)
ONE_EVENT = obj({"event": EVENT})
_CHANGES: dict[str, Schema] = {
    **{name: text(size) for name, size in TEXT_FIELDS.items()},
    "prequeue_at": INSTANT,
    "opens_at": INSTANT,
    "closes_at": INSTANT,
    **{name: integer(low, high) for name, (low, high) in INT_FIELDS.items()},
    "eligibility_group": {**text(40), "nullable": True},
    "phone_share_pct": integer(*PHONE_SHARE_PCT),
    "phone_release_at": {**INSTANT, "nullable": True},
}
_REQUIRED = ("id", "name_ja", "name_en", "prequeue_at", "opens_at", "closes_at",
             "admit_per_minute", "max_active")  # fmt: skip
NEW_EVENT = obj(
    {"id": EVENT_ID, **{n: _CHANGES[n] for n in _REQUIRED if n != "id"}},
    {n: s for n, s in _CHANGES.items() if n not in _REQUIRED},
    closed=True,
    description="times in order: prequeue_at <= opens_at < closes_at",
)
NEW_EVENT["example"] = {
    "id": "city-65plus",
    "name_ja": "65歳以上 接種予約",
    "name_en": "Bookings, 65 and over",
    "prequeue_at": "2031-04-01T08:30:00+09:00",
    "opens_at": "2031-04-01T09:00:00+09:00",
    "closes_at": "2031-04-30T17:00:00+09:00",
    "admit_per_minute": 600,
    "max_active": 2000,
    "eligibility_group": "65+",
}
EVENT_CHANGES = obj({}, _CHANGES, closed=True)
STATS = obj(
    {
        "event": EVENT,
        "live": obj(
            {
                "state": string(enum=EVENT_STATES),
                "sold_out": boolean(),
                "line_length": integer(0),
                "prequeue_count": integer(0),
                "admitted": integer(0),
                "waiting": integer(0),
                "active": integer(0),
                "active_sessions": integer(0),
                "active_admitted_without_pass": integer(0),
                "active_passes_outstanding": integer(0),
                "admit_per_minute": integer(0),
                "max_active": integer(0),
                "backpressure_factor": number(minimum=0),
                "achieved_per_minute": integer(0),
                "forecast_per_minute": number(minimum=0),
                "slots_left": integer(nullable=True),
                "redis_time_ms": integer(0),
            }
        ),
    }
)
BUSY = {503: ("busy",)}
STAFF = {401: ("unauthorized", "token_expired"), 403: ("forbidden",)}
BODY = {413: ("body_too_large",), 422: ("invalid_input", "invalid_character")}
REDIRECT = Reply(
    "A browser (no Accept: application/json) is sent on with a redirect",
    headers={"Location": string(min_length=1)},
)


def _admin_action(action: str, verb: str) -> Operation:
    return Operation(
        "POST",
        f"/admin/events/{{event_id}}/{action}",
        f"{verb} the event's line",
        replies={200: Reply("The event after the change", ONE_EVENT)},
        errors={**BUSY, **STAFF, **UNKNOWN_EVENT, 409: ("invalid_state_change", "event_closed")},
        tags=("admin",),
        security=("staff",),
        params=(EVENT_PATH,),
    )


def _enter(method: str) -> Operation:
    """GET (the waiting page's link) and POST (its button, or a client) alike."""
    return Operation(
        method,
        "/events/{event_id}/enter",
        "The admitted ticket's pass into booking (JSON with Accept: application/json)",
        replies={
            200: Reply(
                "The pass, and where to take it",
                obj(
                    {
                        "pass": string(min_length=1),
                        "redirect_url": string(min_length=1),
                        "expires_at_ms": integer(0),
                    }
                ),
            ),
            303: REDIRECT,
        },
        errors={
            **BUSY,
            **UNKNOWN_EVENT,
            **TICKET_REFUSALS,
            **(BODY if method == "POST" else {}),
            409: (
                "ticket_unknown",
                "event_closed",
                "not_admitted_yet",
                "already_entered",
                "event_not_open_yet",
            ),
            410: ("turn_expired",),
        },
        tags=("line",),
        security=("ticket",),
        params=(EVENT_PATH, TICKET_QUERY),
        body=obj({}, {"ticket": string(description="the ticket held")})
        if method == "POST"
        else None,
        body_required=False,
    )


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/events/{event_id}/status",
        "Where the ticket stands: position, people ahead, estimated wait, when to ask again",
        replies={200: Reply("The ticket's status", STATUS)},
        errors={**BUSY, **UNKNOWN_EVENT, **TICKET_REFUSALS},
        tags=("line",),
        security=("ticket",),
        params=(EVENT_PATH, TICKET_QUERY),
    ),
    Operation(
        "POST",
        "/events/{event_id}/join",
        "Join the line: a signed ticket with the next number (a valid ticket sent keeps its "
        "place); the ticket also comes as a cookie",
        replies={
            200: Reply(
                "The ticket sent keeps its place",
                JOINED,
                headers={"Set-Cookie": string(min_length=1)},
            ),
            201: Reply("A new place in line", JOINED, headers={"Set-Cookie": string(min_length=1)}),
            303: REDIRECT,
        },
        errors={
            **BUSY,
            **UNKNOWN_EVENT,
            **BODY,
            403: ("cross_site_join",),
            # Before the pre-queue opens, join_line-1.lua refuses (NOT_OPEN_YET).
            409: ("event_closed", "event_not_open_yet"),
            429: ("too_many_requests",),
        },
        tags=("line",),
        params=(EVENT_PATH, TICKET_QUERY),
        body=obj({}, {"ticket": string(description="the ticket held, if any")}),
        body_required=False,
    ),
    _enter("GET"),
    _enter("POST"),
    Operation(
        "GET",
        "/events/{event_id}/prequeue-seed",
        "The pre-queue shuffle's inputs, published at opening: anyone can recompute every place",
        replies={
            200: Reply(
                "The seed",
                obj(
                    {
                        "event_id": EVENT_ID,
                        "prequeue_count": integer(0),
                        "seed": string(),
                        "opened_at_ms": integer(nullable=True),
                        "algorithm": string(),
                    }
                ),
            )
        },
        errors={**BUSY, **UNKNOWN_EVENT, 409: ("not_opened_yet",)},
        tags=("line",),
        params=(EVENT_PATH,),
    ),
    Operation(
        "POST",
        "/admin/events",
        "Create an event (state scheduled) in the administrator's municipality",
        replies={201: Reply("The event", ONE_EVENT)},
        errors={**BUSY, **STAFF, **BODY, 409: ("event_exists",)},
        tags=("admin",),
        security=("staff",),
        body=NEW_EVENT,
    ),
    Operation(
        "PATCH",
        "/admin/events/{event_id}",
        "Change rate, cap, times, names or the phone share, live",
        replies={200: Reply("The event after the change", ONE_EVENT)},
        errors={
            **BUSY,
            **STAFF,
            **BODY,
            404: ("event_not_found",),
            409: ("invalid_state_change", "event_closed"),
        },
        tags=("admin",),
        security=("staff",),
        params=(EVENT_PATH,),
        body=EVENT_CHANGES,
    ),
    _admin_action("pause", "Pause admission of"),
    _admin_action("resume", "Resume admission of"),
    _admin_action("close", "Close"),
    Operation(
        "GET",
        "/admin/events/{event_id}/stats",
        "Live numbers of the event's line",
        replies={200: Reply("The event and its line", STATS)},
        errors={**BUSY, **STAFF, **UNKNOWN_EVENT},
        tags=("admin",),
        security=("staff",),
        params=(EVENT_PATH,),
    ),
)

DOCUMENT: dict[str, Any] = document(
    title="machiai waitroom API",
    description="The line (tickets, status polls, the pass into booking) and the municipal "
    'administrators\' event API. Errors: {"error": {"code", "message"}}, Japanese by '
    "default, English with Accept-Language: en.",
    operations=[*OPERATIONS, *HEALTH_OPERATIONS, METRICS_OPERATION, DOCUMENT_OPERATION],
    security_schemes={
        "ticket": header_key("X-Machiai-Ticket", "the ticket from POST /events/{id}/join"),
        "staff": bearer("staff token from booking's POST /api/staff/login (role admin)"),
    },
)


async def openapi(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
