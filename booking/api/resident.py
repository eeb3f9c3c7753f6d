"""Resident endpoints: session, search, hold, confirm, cancel, change, my bookings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import http
from booking import openapi as doc
from booking.domain import Session
from booking.http import (
    HOLD_ID,
    UUID_STR,
    VACCINE_CODE,
    VOUCHER,
    Endpoint,
    body,
    ctx_of,
    ok,
    query,
    tokens_of,
)
from booking.services import bookings, confirm, hold, sessions
from booking.services.availability import SearchFilter, slot_json
from machiai import contact as contact_rules
from machiai import inputs
from machiai.openapi import array, boolean, integer, obj, string, text


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
        clinic_id=q.opt_text("clinic_id", pattern=UUID_STR),
        vaccine_code=q.opt_text("vaccine", max_len=40, pattern=VACCINE_CODE),
        dose_number=q.opt_integer("dose", minimum=1, maximum=9),
    )


SEARCH_PARAMS = (
    doc.query("date", doc.DATE, description="the day, Japan time"),
    doc.query("area", text(100, required=False)),
    doc.query("clinic_id", doc.UUID),
    doc.query("vaccine", doc.VACCINE_CODE),
    doc.query("dose", integer(1, 9)),
)


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
    slot_id = fields.text("slot_id", pattern=UUID_STR)
    held = await hold.hold_slot(ctx_of(request), session.actor, session.resident, slot_id, check)
    return ok(hold_json(held), status=201)


async def release_hold(request: Request) -> Response:
    session = await current(request)
    hold_id = http.path_param(request, "hold_id")
    await hold.release_hold(ctx_of(request), session.resident, hold_id)
    return ok({"released": True})


def contact_of(fields: http.Fields) -> tuple[confirm.Contact, dict[str, str]]:
    """The optional ``email`` (and ``locale``, ja or en) of a confirm or change, and what
    of it the idempotency key's request hash covers (nothing when none was given)."""
    email = fields.opt_text("email", max_len=contact_rules.EMAIL_MAX_CHARS)
    if email is not None and contact_rules.email_address(email) != email:
        raise http.invalid(
            "email", "is not an e-mail address", "メールアドレスの形式ではありません"
        )
    locale = fields.opt_text("locale", max_len=2, pattern=LOCALE)
    given = {"email": email} if email is not None else {}
    return confirm.Contact(email, contact_rules.locale(locale)), given


async def confirm_booking(request: Request) -> Response:
    session, check = peek(request)
    sessions.require_admitted(session)
    fields = await body(request)
    hold_id = fields.text("hold_id", pattern=HOLD_ID)
    contact, given = contact_of(fields)
    idem = confirm.idempotency(
        session.actor, "confirm", http.idempotency_key(request), {"hold_id": hold_id, **given}
    )
    result = await confirm.confirm_booking(
        ctx_of(request), session.actor, session.resident, hold_id, idem, check=check,
        contact=contact,
    )  # fmt: skip
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
    contact, given = contact_of(fields)
    idem = confirm.idempotency(
        session.actor,
        "change",
        http.idempotency_key(request),
        {"booking_id": booking_id, "hold_id": hold_id, **given},
    )
    result = await confirm.confirm_booking(
        ctx_of(request), session.actor, session.resident, hold_id, idem, replaces=booking_id,
        contact=contact,
    )  # fmt: skip
    return ok(result)


# What a refused confirm or change can say (the place went back, or never was).
CONFIRM_REFUSALS = {
    404: ("not_found", "no_booking"),
    409: (
        "hold_expired",
        "slot_full",
        "slot_closed",
        "slot_not_bookable",
        "already_booked",
        "dose_rule",
        "booking_state",
        "conflict",
    ),
    422: ("idempotency_key_reused",),
}
CANCEL_REFUSALS = {
    404: ("no_booking",),
    409: ("booking_state", "dose_rule", "conflict"),
    422: ("idempotency_key_reused",),
}
HOLD_REFUSALS = {
    404: ("not_found",),
    409: ("slot_full", "slot_closed", "slot_not_bookable", "hold_exists"),
}
BOOKING_ID = doc.path("booking_id", doc.UUID)
LOCALE = inputs.exact("^(ja|en)$")
# Where messages about the booking go: optional on a confirm and a change (a change without
# one keeps the address the booking had).
CONTACT = {
    "email": string(
        pattern=contact_rules.EMAIL_PATTERN,
        max_length=contact_rules.EMAIL_MAX_CHARS,
        description="where messages about this booking go (reminder the day before)",
    ),
    "locale": string(enum=("ja", "en"), description="the messages' language (default ja)"),
}
TAG = ("resident",)
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/sessions",
        start_session,
        "Open a booking session with an admission pass, voucher number and birth date",
        request=obj(
            {
                "pass": text(1000, description="admission pass from the waitroom"),
                "voucher": doc.VOUCHER,
                "birth_date": doc.BIRTH_DATE,
            }
        ),
        response=obj(
            {
                "session": string(min_length=1, description="bearer token"),
                "event_id": doc.EVENT_ID,
                "expires_in_s": integer(1),
            }
        ),
        status=201,
        errors={
            401: ("pass_invalid",),
            403: ("identity_refused",),
            409: ("pass_used",),
            429: ("too_many_attempts",),
        },
        tags=TAG,
    ),
    Endpoint(
        "DELETE",
        "/api/sessions",
        end_session,
        "End the session",
        auth="session",
        response=obj({"ended": boolean()}),
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
        response=doc.SEARCH_RESULT,
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/holds",
        hold_slot,
        "Hold one place of a slot (one live hold per resident)",
        auth="session",
        request=obj({"slot_id": doc.UUID}),
        response=doc.HOLD,
        status=201,
        errors={403: ("not_admitted",), **HOLD_REFUSALS},
        tags=TAG,
    ),
    Endpoint(
        "DELETE",
        "/api/holds/{hold_id}",
        release_hold,
        "Release the resident's hold",
        auth="session",
        params=(doc.path("hold_id", string(max_length=100)),),
        response=obj({"released": boolean()}),
        errors={404: ("not_found",), 409: ("hold_expired",)},
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/bookings",
        confirm_booking,
        "Confirm the held slot",
        auth="session",
        params=(doc.IDEMPOTENCY_KEY,),
        request=obj({"hold_id": doc.HOLD_ID}, CONTACT),
        response=doc.ONE_BOOKING,
        status=201,
        errors={403: ("not_admitted",), **CONFIRM_REFUSALS},
        tags=TAG,
    ),
    Endpoint(
        "GET",
        "/api/bookings",
        my_bookings,
        "The resident's bookings and live hold",
        auth="session",
        response=obj(
            {
                "bookings": array(doc.BOOKING),
                "hold": obj({"hold_id": doc.HOLD_ID, "slot_id": doc.UUID}, nullable=True),
            }
        ),
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/bookings/{booking_id}/cancel",
        cancel_booking,
        "Cancel a booking",
        auth="session",
        params=(BOOKING_ID, doc.IDEMPOTENCY_KEY),
        response=doc.ONE_BOOKING,
        errors=CANCEL_REFUSALS,
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/bookings/{booking_id}/change",
        change_booking,
        "Move a booking to the held slot in one step",
        auth="session",
        params=(BOOKING_ID, doc.IDEMPOTENCY_KEY),
        request=obj({"hold_id": doc.HOLD_ID}, CONTACT),
        response=doc.ONE_BOOKING,
        errors={403: ("not_admitted",), **CONFIRM_REFUSALS},
        tags=TAG,
    ),
]
