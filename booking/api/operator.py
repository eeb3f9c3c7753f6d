"""Operator (call centre) lane: book for residents who phone in, no admission pass needed.

Same inventory and rules as the web; every action is audited with the operator's id.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import http
from booking import openapi as doc
from booking.api.resident import (
    CANCEL_REFUSALS,
    CONFIRM_REFUSALS,
    HOLD_REFUSALS,
    SEARCH_PARAMS,
    hold_json,
    search_filter,
)
from booking.domain import Actor
from booking.http import EVENT_ID, HOLD_ID, UUID_STR, VOUCHER, Endpoint, body, ctx_of, ok, query
from booking.services import confirm, operator
from booking.services.availability import slot_json
from machiai.openapi import array, boolean, obj

ROLES = ("operator", "admin")


def acting(request: Request) -> Actor:
    """The operator (or admin) behind the request, acting in the call-centre lane."""
    return operator.operator_actor(http.staff(request, *ROLES))


async def search_slots(request: Request) -> Response:
    """The same search residents get, for any event of the operator's municipality."""
    actor = acting(request)
    q = query(request)
    event_id = q.text("event_id", max_len=63, pattern=EVENT_ID)
    filt = search_filter(q)
    ctx = ctx_of(request)
    await operator.check_event(ctx, actor, event_id)
    # Operators see every place left, the ones kept for the phone too.
    offers, more = await request.app.state.availability.search(
        ctx, event_id, filt, channel=actor.channel
    )
    return ok({"slots": [slot_json(o) for o in offers], "more": more})


async def hold_for_resident(request: Request) -> Response:
    actor = acting(request)
    fields = await body(request)
    voucher = fields.text("voucher", pattern=VOUCHER)
    birth_date = fields.day("birth_date")
    slot_id = fields.text("slot_id", pattern=UUID_STR)
    replaces = fields.opt_text("replaces", pattern=UUID_STR)
    held = await operator.hold_for_caller(
        ctx_of(request), actor, voucher, birth_date, slot_id, replaces
    )
    return ok(hold_json(held), status=201)


async def release_for_resident(request: Request) -> Response:
    actor = acting(request)
    fields = await body(request)
    voucher = fields.text("voucher", pattern=VOUCHER)
    hold_id = fields.text("hold_id", pattern=HOLD_ID)
    await operator.release_for_caller(ctx_of(request), actor, voucher, hold_id)
    return ok({"released": True})


async def confirm_for_resident(request: Request) -> Response:
    actor = acting(request)
    fields = await body(request)
    voucher = fields.text("voucher", pattern=VOUCHER)
    hold_id = fields.text("hold_id", pattern=HOLD_ID)
    idem = confirm.idempotency(
        actor, "confirm", http.idempotency_key(request), {"voucher": voucher, "hold_id": hold_id}
    )
    result = await confirm.confirm_booking(
        ctx_of(request), actor, operator.caller(actor, voucher), hold_id, idem
    )
    return ok(result, status=201)


async def change_for_resident(request: Request) -> Response:
    actor = acting(request)
    booking_id = http.path_param(request, "booking_id")
    fields = await body(request)
    voucher = fields.text("voucher", pattern=VOUCHER)
    hold_id = fields.text("hold_id", pattern=HOLD_ID)
    idem = confirm.idempotency(
        actor,
        "change",
        http.idempotency_key(request),
        {"booking_id": booking_id, "voucher": voucher, "hold_id": hold_id},
    )
    result = await confirm.confirm_booking(
        ctx_of(request),
        actor,
        operator.caller(actor, voucher),
        hold_id,
        idem,
        replaces=booking_id,
    )
    return ok(result)


async def cancel_for_resident(request: Request) -> Response:
    actor = acting(request)
    booking_id = http.path_param(request, "booking_id")
    await body(request)
    idem = confirm.idempotency(
        actor, "cancel", http.idempotency_key(request), {"booking_id": booking_id}
    )
    result = await confirm.cancel_booking(ctx_of(request), actor, booking_id, None, idem)
    return ok(result)


async def resident_bookings(request: Request) -> Response:
    actor = acting(request)
    voucher = http.path_param(request, "voucher")
    if not VOUCHER.match(voucher):
        raise http.invalid("voucher", "must be 10 digits", "10 桁の数字で入力してください")
    return ok({"bookings": await operator.caller_bookings(ctx_of(request), actor, voucher)})


TAG = ("operator",)
RESIDENT = {"voucher": doc.VOUCHER}
BOOKING_ID = doc.path("booking_id", doc.UUID)
# Another municipality's resident, event or booking is not found (no oracle across tenants).
ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/operator/slots",
        search_slots,
        "Search bookable slots of an event of the operator's municipality (the phone share too)",
        auth="staff",
        roles=ROLES,
        params=(doc.query("event_id", doc.EVENT_ID, required=True), *SEARCH_PARAMS),
        response=doc.SEARCH_RESULT,
        errors={404: ("not_found",)},
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/operator/holds",
        hold_for_resident,
        "Hold a slot for a caller (identity checked against the registry); a dose the caller "
        "has booked is refused (already_booked, with its booking_id) unless `replaces` names "
        "that booking, for a change",
        auth="staff",
        roles=ROLES,
        request=obj(
            {**RESIDENT, "birth_date": doc.BIRTH_DATE, "slot_id": doc.UUID},
            {"replaces": doc.UUID},
        ),
        response=doc.HOLD,
        status=201,
        errors={
            **HOLD_REFUSALS,
            403: ("identity_refused",),
            404: ("not_found", "no_booking"),
            409: (*HOLD_REFUSALS[409], "already_booked"),
            429: ("too_many_attempts",),
        },
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/operator/holds/release",
        release_for_resident,
        "Release a caller's hold",
        auth="staff",
        roles=ROLES,
        request=obj({**RESIDENT, "hold_id": doc.HOLD_ID}),
        response=obj({"released": boolean()}),
        errors={409: ("hold_expired",)},
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/operator/bookings",
        confirm_for_resident,
        "Confirm a caller's hold",
        auth="staff",
        roles=ROLES,
        params=(doc.IDEMPOTENCY_KEY,),
        request=obj({**RESIDENT, "hold_id": doc.HOLD_ID}),
        response=doc.ONE_BOOKING,
        status=201,
        errors=CONFIRM_REFUSALS,
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/operator/bookings/{booking_id}/change",
        change_for_resident,
        "Move a caller's booking to their held slot",
        auth="staff",
        roles=ROLES,
        params=(BOOKING_ID, doc.IDEMPOTENCY_KEY),
        request=obj({**RESIDENT, "hold_id": doc.HOLD_ID}),
        response=doc.ONE_BOOKING,
        errors=CONFIRM_REFUSALS,
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/operator/bookings/{booking_id}/cancel",
        cancel_for_resident,
        "Cancel a booking of this municipality",
        auth="staff",
        roles=ROLES,
        params=(BOOKING_ID, doc.IDEMPOTENCY_KEY),
        response=doc.ONE_BOOKING,
        errors=CANCEL_REFUSALS,
        tags=TAG,
    ),
    Endpoint(
        "GET",
        "/api/operator/residents/{voucher}/bookings",
        resident_bookings,
        "A caller's bookings (the look is audited)",
        auth="staff",
        roles=ROLES,
        params=(doc.path("voucher", doc.VOUCHER),),
        response=obj({"bookings": array(doc.BOOKING)}),
        errors={404: ("not_found",)},
        body_kind="none",
        tags=TAG,
    ),
]
