"""Operator (call centre) lane: book for residents who phone in, no admission pass needed.

Same inventory and rules as the web; every action is audited with the operator's id.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import errors, http
from booking.api.resident import SEARCH_PARAMS, SEARCH_RESPONSE, search_filter
from booking.http import HOLD_ID, UUIDISH, VOUCHER, Endpoint, body, ctx_of, ok, query
from booking.services import confirm, hold, sessions
from booking.services.context import Actor, Channel, Ctx, Resident
from booking.store import pg
from machiai.tokens import StaffClaims

ROLES = ("operator", "admin")


def actor_of(claims: StaffClaims) -> Actor:
    return Actor(
        kind="staff",
        actor_id=claims.staff_id,
        municipality=claims.municipality_code,
        channel=Channel.OPERATOR,
        staff_id=claims.staff_id,
    )


async def _audit(
    ctx: Ctx, claims: StaffClaims, action: str, voucher: str, after: dict[str, str]
) -> None:
    """Operators' Redis-only actions are audited too (who held or released for whom)."""
    async with pg.acquire(ctx.pool) as conn:
        await pg.audit(
            conn,
            municipality=claims.municipality_code,
            actor_kind="staff",
            actor_id=claims.staff_id,
            action=action,
            target=voucher,
            after=after,
        )


async def search_slots(request: Request) -> Response:
    """The same search residents get, for any event of the operator's municipality."""
    claims = http.staff(request, *ROLES)
    q = query(request)
    event_id = q.text("event_id", max_len=100)
    filt = search_filter(q)
    ctx = ctx_of(request)
    async with pg.acquire(ctx.pool) as conn:
        event = await pg.fetch_event(conn, event_id)
    # Another municipality's event answers like an unknown one: no oracle across tenants.
    if event is None or event["municipality_code"] != claims.municipality_code:
        raise errors.NotFound()
    slots, more = await request.app.state.availability.search(ctx, event_id, filt)
    return ok({"slots": slots, "more": more})


async def hold_for_resident(request: Request) -> Response:
    claims = http.staff(request, *ROLES)
    fields = await body(request)
    voucher = fields.text("voucher", pattern=VOUCHER)
    birth_date = fields.day("birth_date")
    slot_id = fields.text("slot_id", pattern=UUIDISH)
    ctx = ctx_of(request)
    actor = actor_of(claims)
    meta = await hold.visible_slot(ctx, actor, slot_id)
    resident = await sessions.verify_resident(
        ctx, claims.municipality_code, voucher, birth_date, meta.event_id
    )
    held = await hold.hold_slot(ctx, actor, resident, slot_id)
    await _audit(ctx, claims, "booking.hold.placed", voucher, {"hold_id": held.hold_id})
    return ok(
        {
            "hold_id": held.hold_id,
            "slot_id": held.slot_id,
            "expires_in_ms": held.expires_in_ms,
            "remaining": held.left,
        },
        status=201,
    )


async def release_for_resident(request: Request) -> Response:
    claims = http.staff(request, *ROLES)
    fields = await body(request)
    voucher = fields.text("voucher", pattern=VOUCHER)
    hold_id = fields.text("hold_id", pattern=HOLD_ID)
    ctx = ctx_of(request)
    await hold.release_hold(ctx, Resident(claims.municipality_code, voucher), hold_id)
    await _audit(ctx, claims, "booking.hold.released", voucher, {"hold_id": hold_id})
    return ok({"released": True})


async def confirm_for_resident(request: Request) -> Response:
    claims = http.staff(request, *ROLES)
    fields = await body(request)
    voucher = fields.text("voucher", pattern=VOUCHER)
    hold_id = fields.text("hold_id", pattern=HOLD_ID)
    actor = actor_of(claims)
    idem = confirm.idempotency(
        actor, "confirm", http.idempotency_key(request), {"voucher": voucher, "hold_id": hold_id}
    )
    result = await confirm.confirm_booking(
        ctx_of(request), actor, Resident(claims.municipality_code, voucher), hold_id, idem
    )
    return ok(result, status=201)


async def change_for_resident(request: Request) -> Response:
    claims = http.staff(request, *ROLES)
    booking_id = http.path_param(request, "booking_id")
    fields = await body(request)
    voucher = fields.text("voucher", pattern=VOUCHER)
    hold_id = fields.text("hold_id", pattern=HOLD_ID)
    actor = actor_of(claims)
    idem = confirm.idempotency(
        actor,
        "change",
        http.idempotency_key(request),
        {"booking_id": booking_id, "voucher": voucher, "hold_id": hold_id},
    )
    result = await confirm.confirm_booking(
        ctx_of(request),
        actor,
        Resident(claims.municipality_code, voucher),
        hold_id,
        idem,
        replaces=booking_id,
    )
    return ok(result)


async def cancel_for_resident(request: Request) -> Response:
    claims = http.staff(request, *ROLES)
    booking_id = http.path_param(request, "booking_id")
    await body(request)
    actor = actor_of(claims)
    idem = confirm.idempotency(
        actor, "cancel", http.idempotency_key(request), {"booking_id": booking_id}
    )
    result = await confirm.cancel_booking(ctx_of(request), actor, booking_id, None, idem)
    return ok(result)


async def resident_bookings(request: Request) -> Response:
    claims = http.staff(request, *ROLES)
    voucher = http.path_param(request, "voucher")
    if not VOUCHER.match(voucher):
        raise http.invalid("voucher", "must be 10 digits", "10 桁の数字で入力してください")
    async with pg.acquire(ctx_of(request).pool) as conn:
        rows = await pg.resident_bookings(conn, claims.municipality_code, voucher)
        await pg.audit(
            conn,
            municipality=claims.municipality_code,
            actor_kind="staff",
            actor_id=claims.staff_id,
            action="booking.resident.viewed",
            target=voucher,
        )
    return ok({"bookings": rows})


TAG = ("operator",)
RESIDENT = {"voucher": "string: 10 digits"}
ENDPOINTS = [
    Endpoint(
        "GET",
        "/api/operator/slots",
        search_slots,
        "Search bookable slots of an event of the operator's municipality",
        auth="staff",
        params={"event_id": "event id (required)", **SEARCH_PARAMS},
        response=SEARCH_RESPONSE,
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/operator/holds",
        hold_for_resident,
        "Hold a slot for a caller (identity checked against the registry)",
        auth="staff",
        request={**RESIDENT, "birth_date": "string: YYYY-MM-DD", "slot_id": "string: uuid"},
        response={
            "hold_id": "string",
            "slot_id": "string",
            "expires_in_ms": "int",
            "remaining": "int",
        },
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/operator/holds/release",
        release_for_resident,
        "Release a caller's hold",
        auth="staff",
        request={**RESIDENT, "hold_id": "string"},
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/operator/bookings",
        confirm_for_resident,
        "Confirm a caller's hold (Idempotency-Key header accepted)",
        auth="staff",
        request={**RESIDENT, "hold_id": "string"},
        response={"booking": "object"},
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/operator/bookings/{booking_id}/change",
        change_for_resident,
        "Move a caller's booking to their held slot (Idempotency-Key header accepted)",
        auth="staff",
        request={**RESIDENT, "hold_id": "string"},
        response={"booking": "object"},
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/operator/bookings/{booking_id}/cancel",
        cancel_for_resident,
        "Cancel a booking of this municipality (Idempotency-Key header accepted)",
        auth="staff",
        response={"booking": "object"},
        tags=TAG,
    ),
    Endpoint(
        "GET",
        "/api/operator/residents/{voucher}/bookings",
        resident_bookings,
        "A caller's bookings",
        auth="staff",
        response={"bookings": "array"},
        body_kind="none",
        tags=TAG,
    ),
]
