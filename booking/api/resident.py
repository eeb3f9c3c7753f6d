"""Resident endpoints: session, search, hold, confirm, cancel, change, my bookings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import http
from booking.domain import Session
from booking.http import HOLD_ID, UUIDISH, VOUCHER, Endpoint, body, ctx_of, ok, query, tokens_of
from booking.services import bookings, confirm, hold, sessions
from booking.services.availability import SearchFilter, slot_json


def hold_json(held: hold.Hold) -> dict[str, object]:
    return {
        "hold_id": held.hold_id,
        "slot_id": held.slot_id,
        "expires_in_ms": held.expires_in_ms,
        "remaining": held.left,
    }


async def current(request: Request) -> Session:
    return await sessions.load_session(ctx_of(request), tokens_of(request), http.bearer(request))


async def start_session(request: Request) -> Response:
    fields = await body(request)
    pass_token = fields.text("pass", max_len=1000)
    voucher = fields.text("voucher", pattern=VOUCHER)
    birth_date = fields.day("birth_date")
    opened = await sessions.start_session(
        ctx_of(request),
        tokens_of(request),
        pass_token,
        voucher,
        birth_date,
        http.client_address(request),
    )
    return ok(
        {
            "session": opened.token,
            "event_id": opened.session.event_id,
            "expires_in_s": opened.expires_in_s,
        },
        status=201,
    )


async def end_session(request: Request) -> Response:
    session = await current(request)
    await sessions.end_session(ctx_of(request), session)
    return ok({"ended": True})


def search_filter(q: http.Fields) -> SearchFilter:
    """The search parameters residents and operators share."""
    return SearchFilter(
        day=q.opt_day("date"),
        area=q.opt_text("area", max_len=100),
        clinic_id=q.opt_text("clinic_id", pattern=UUIDISH),
        vaccine_code=q.opt_text("vaccine", max_len=40),
        dose_number=q.opt_integer("dose", minimum=1, maximum=9),
    )


SEARCH_PARAMS = {
    "date": "YYYY-MM-DD (Japan time)",
    "area": "area name",
    "clinic_id": "uuid",
    "vaccine": "vaccine code",
    "dose": "dose number",
}
SEARCH_RESPONSE = {
    "slots": "array of slot_id, clinic_id, area, starts_at, duration_min, "
    "vaccine_code, dose_number, remaining: slots with places left, soonest first, at most 500",
    "more": "bool: more slots with places left match; narrow the search (date, area, clinic)",
}


async def search(request: Request) -> Response:
    session = await current(request)
    filt = search_filter(query(request))
    offers, more = await request.app.state.availability.search(
        ctx_of(request), session.event_id, filt
    )
    return ok({"slots": [slot_json(o) for o in offers], "more": more})


def peek(request: Request) -> tuple[Session, sessions.LivenessCheck | None]:
    """The token's session, its liveness check deferred to the request's first Redis
    command (hold and confirm: one round trip fewer when the check is due)."""
    return sessions.peek_session(ctx_of(request), tokens_of(request), http.bearer(request))


async def hold_slot(request: Request) -> Response:
    session, check = peek(request)
    sessions.require_admitted(session)
    fields = await body(request)
    slot_id = fields.text("slot_id", pattern=UUIDISH)
    held = await hold.hold_slot(ctx_of(request), session.actor, session.resident, slot_id, check)
    return ok(hold_json(held), status=201)


async def release_hold(request: Request) -> Response:
    session = await current(request)
    hold_id = http.path_param(request, "hold_id")
    await hold.release_hold(ctx_of(request), session.resident, hold_id)
    return ok({"released": True})


async def confirm_booking(request: Request) -> Response:
    session, check = peek(request)
    sessions.require_admitted(session)
    fields = await body(request)
    hold_id = fields.text("hold_id", pattern=HOLD_ID)
    idem = confirm.idempotency(
        session.actor, "confirm", http.idempotency_key(request), {"hold_id": hold_id}
    )
    result = await confirm.confirm_booking(
        ctx_of(request), session.actor, session.resident, hold_id, idem, check=check
    )
    return ok(result, status=201)


async def my_bookings(request: Request) -> Response:
    session = await current(request)
    ctx = ctx_of(request)
    rows = await bookings.resident_bookings(ctx, session.resident)
    held = await hold.current_hold(ctx, session.resident)
    return ok(
        {
            "bookings": rows,
            "hold": None if held is None else {"hold_id": held.public, "slot_id": held.slot_id},
        }
    )


async def cancel_booking(request: Request) -> Response:
    session = await current(request)
    booking_id = http.path_param(request, "booking_id")
    await body(request)
    idem = confirm.idempotency(
        session.actor, "cancel", http.idempotency_key(request), {"booking_id": booking_id}
    )
    result = await confirm.cancel_booking(
        ctx_of(request), session.actor, booking_id, session.resident.voucher, idem
    )
    return ok(result)


async def change_booking(request: Request) -> Response:
    session = await current(request)
    sessions.require_admitted(session)
    booking_id = http.path_param(request, "booking_id")
    fields = await body(request)
    hold_id = fields.text("hold_id", pattern=HOLD_ID)
    idem = confirm.idempotency(
        session.actor,
        "change",
        http.idempotency_key(request),
        {"booking_id": booking_id, "hold_id": hold_id},
    )
    result = await confirm.confirm_booking(
        ctx_of(request), session.actor, session.resident, hold_id, idem, replaces=booking_id
    )
    return ok(result)


BOOKING_FIELDS = {
    "booking": "object: booking_id, confirmation_code, slot_id, clinic_id, clinic_name_ja, "
    "clinic_name_en, starts_at, dose_number, vaccine_code, status, channel, created_at"
}
TAG = ("resident",)
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/sessions",
        start_session,
        "Open a booking session with an admission pass, voucher number and birth date",
        request={
            "pass": "string: admission pass from the waitroom",
            "voucher": "string: 10-digit voucher number",
            "birth_date": "string: YYYY-MM-DD",
        },
        response={"session": "string: bearer token", "event_id": "string", "expires_in_s": "int"},
        tags=TAG,
    ),
    Endpoint(
        "DELETE",
        "/api/sessions",
        end_session,
        "End the session",
        auth="session",
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "GET",
        "/api/slots",
        search,
        "Search bookable slots of the session's event",
        auth="session",
        params=SEARCH_PARAMS,
        response=SEARCH_RESPONSE,
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/holds",
        hold_slot,
        "Hold one place of a slot (one live hold per resident)",
        auth="session",
        request={"slot_id": "string: uuid"},
        response={
            "hold_id": "string",
            "slot_id": "string",
            "expires_in_ms": "int",
            "remaining": "int",
        },
        tags=TAG,
    ),
    Endpoint(
        "DELETE",
        "/api/holds/{hold_id}",
        release_hold,
        "Release the resident's hold",
        auth="session",
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/bookings",
        confirm_booking,
        "Confirm the held slot (Idempotency-Key header accepted)",
        auth="session",
        request={"hold_id": "string"},
        response=BOOKING_FIELDS,
        tags=TAG,
    ),
    Endpoint(
        "GET",
        "/api/bookings",
        my_bookings,
        "The resident's bookings and live hold",
        auth="session",
        response={"bookings": "array of booking", "hold": "object or null"},
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/bookings/{booking_id}/cancel",
        cancel_booking,
        "Cancel a booking (Idempotency-Key header accepted)",
        auth="session",
        response=BOOKING_FIELDS,
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/bookings/{booking_id}/change",
        change_booking,
        "Move a booking to the held slot in one step (Idempotency-Key header accepted)",
        auth="session",
        request={"hold_id": "string: hold on the new slot"},
        response=BOOKING_FIELDS,
        tags=TAG,
    ),
]
