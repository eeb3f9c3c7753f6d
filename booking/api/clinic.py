"""Clinic staff: publish slots (single, weekly plan, CSV), change them, see and mark bookings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import http
from booking.domain import ClinicStaff, SlotSpec
from booking.http import Endpoint, Fields, body, ctx_of, ok, query
from booking.services import clinic, publish


def staff_of(request: Request) -> ClinicStaff:
    return clinic.clinic_staff(http.staff(request, "clinic"))


def spec_from(fields: Fields) -> SlotSpec:
    return SlotSpec(
        event_id=fields.text("event_id", max_len=63),
        starts_at=fields.instant("starts_at"),
        duration_min=fields.integer("duration_min", minimum=1, maximum=1440),
        capacity=fields.integer("capacity", minimum=0, maximum=100_000),
        vaccine_code=fields.text("vaccine_code", max_len=40),
        dose_number=fields.integer("dose_number", minimum=1, maximum=9),
        publish_from=fields.opt_instant("publish_from"),
        publish_until=fields.opt_instant("publish_until"),
    )


async def create_slot(request: Request) -> Response:
    staff = staff_of(request)
    spec = spec_from(await body(request))
    result = await publish.publish_slots(
        ctx_of(request), staff, [spec], dry_run=False, skip_existing=False
    )
    return ok(result, status=201)


def _plan_from(fields: Fields) -> publish.WeeklyPlan:
    weekdays = fields.array("weekdays", max_len=7)
    if not weekdays or not all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 6 for d in weekdays
    ):
        raise http.invalid("weekdays", "must list weekdays 0 (Mon) to 6 (Sun)", "曜日は 0〜6 で")
    breaks = []
    for item in fields.array("breaks", max_len=20):
        if not isinstance(item, dict):
            raise http.invalid("breaks", "must be objects {start, end}", "形式が正しくありません")
        b = Fields(item)
        breaks.append(publish.Break(b.clock("start"), b.clock("end")))
    exceptions = []
    for item in fields.array("exceptions", max_len=400):
        if not isinstance(item, dict):
            raise http.invalid("exceptions", "must be objects", "形式が正しくありません")
        e = Fields(item)
        has_hours = e.data.get("opens") is not None
        exceptions.append(
            publish.Exception_(
                day=e.day("date"),
                closed=bool(e.boolean("closed")),
                opens=e.clock("opens") if has_hours else None,
                closes=e.clock("closes") if has_hours else None,
            )
        )
    plan = publish.WeeklyPlan(
        event_id=fields.text("event_id", max_len=63),
        from_date=fields.day("from_date"),
        to_date=fields.day("to_date"),
        weekdays=frozenset(weekdays),
        opens=fields.clock("opens"),
        closes=fields.clock("closes"),
        slot_min=fields.integer("slot_min", minimum=5, maximum=1440),
        capacity=fields.integer("capacity", minimum=0, maximum=100_000),
        vaccine_code=fields.text("vaccine_code", max_len=40),
        dose_number=fields.integer("dose_number", minimum=1, maximum=9),
        breaks=tuple(breaks),
        exceptions=tuple(exceptions),
    )
    if plan.opens >= plan.closes:
        raise http.invalid(
            "closes", "must be after opens", "終了時刻は開始時刻より後にしてください"
        )
    return plan


async def publish_plan(request: Request) -> Response:
    staff = staff_of(request)
    fields = await body(request)
    dry_run = bool(fields.boolean("dry_run"))
    specs = publish.expand_plan(_plan_from(fields))
    result = await publish.publish_slots(
        ctx_of(request), staff, specs, dry_run=dry_run, skip_existing=True
    )
    return ok(result, status=200 if dry_run else 201)


async def import_csv(request: Request) -> Response:
    staff = staff_of(request)
    dry_run = query(request).boolean("dry_run") or False
    data = await request.body()
    return ok(await publish.import_slots_csv(ctx_of(request), staff, data, dry_run))


async def list_slots(request: Request) -> Response:
    staff = staff_of(request)
    day = query(request).day("date")
    return ok({"slots": await clinic.clinic_slots(ctx_of(request), staff, day)})


async def update_slot(request: Request) -> Response:
    staff = staff_of(request)
    slot_id = http.path_param(request, "slot_id")
    fields = await body(request)
    capacity = fields.opt_integer("capacity", minimum=0, maximum=100_000)
    closed = fields.boolean("closed")
    if capacity is None and closed is None:
        raise http.invalid("capacity", "give capacity and/or closed", "capacity か closed を指定")
    slot = await clinic.update_slot(ctx_of(request), staff, slot_id, capacity, closed)
    return ok({"slot": slot})


async def list_bookings(request: Request) -> Response:
    staff = staff_of(request)
    day = query(request).day("date")
    return ok({"bookings": await clinic.clinic_bookings(ctx_of(request), staff, day)})


async def mark_attendance(request: Request) -> Response:
    staff = staff_of(request)
    booking_id = http.path_param(request, "booking_id")
    status = (await body(request)).text("status", max_len=10)
    if status not in clinic.ATTENDANCE:
        raise http.invalid("status", "must be attended, no_show or confirmed", "値が不正です")
    booking = await clinic.mark_attendance(ctx_of(request), staff, booking_id, status)
    return ok({"booking": booking})


SLOT_FIELDS = {
    "event_id": "string",
    "starts_at": "string: ISO 8601 (Japan time if no offset)",
    "duration_min": "int",
    "capacity": "int",
    "vaccine_code": "string",
    "dose_number": "int",
    "publish_from": "string: optional ISO 8601",
    "publish_until": "string: optional ISO 8601",
}
TAG = ("clinic",)
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/clinic/slots",
        create_slot,
        "Publish one slot",
        auth="staff",
        request=SLOT_FIELDS,
        response={"created": "int", "slot_ids": "array: ids of the slots created"},
        tags=TAG,
    ),
    Endpoint(
        "GET",
        "/api/clinic/slots",
        list_slots,
        "The clinic's slots of a day",
        auth="staff",
        params={"date": "YYYY-MM-DD (required)"},
        response={"slots": "array"},
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/clinic/slots/plan",
        publish_plan,
        "Publish a weekly plan (existing slots are skipped)",
        auth="staff",
        request={
            "event_id": "string",
            "from_date": "string: YYYY-MM-DD",
            "to_date": "string: YYYY-MM-DD",
            "weekdays": "array: 0 (Mon) .. 6 (Sun)",
            "opens": "string: HH:MM",
            "closes": "string: HH:MM",
            "slot_min": "int",
            "capacity": "int",
            "vaccine_code": "string",
            "dose_number": "int",
            "breaks": "array: {start, end} HH:MM",
            "exceptions": "array: {date, closed} or {date, opens, closes}",
            "dry_run": "bool",
        },
        response={
            "dry_run": "bool",
            "slots": "int",
            "created": "int",
            "slot_ids": "array: ids of the slots created (not on a dry run)",
        },
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/clinic/slots/import",
        import_csv,
        "Import slots from CSV (event_id,starts_at,duration_min,capacity,vaccine_code,"
        "dose_number[,publish_from,publish_until]); all or nothing",
        auth="staff",
        params={"dry_run": "true: validate and preview only"},
        response={
            "dry_run": "bool",
            "rows": "int",
            "created": "int",
            "slot_ids": "array: ids of the slots created (not on a dry run)",
            "errors": "array",
        },
        body_kind="csv",
        tags=TAG,
    ),
    Endpoint(
        "PATCH",
        "/api/clinic/slots/{slot_id}",
        update_slot,
        "Change capacity (never below booked), close or reopen",
        auth="staff",
        request={"capacity": "int", "closed": "bool"},
        response={"slot": "object"},
        tags=TAG,
    ),
    Endpoint(
        "GET",
        "/api/clinic/bookings",
        list_bookings,
        "The clinic's bookings of a day",
        auth="staff",
        params={"date": "YYYY-MM-DD (required)"},
        response={"bookings": "array"},
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/clinic/bookings/{booking_id}/attendance",
        mark_attendance,
        "Mark attended / no_show (or back to confirmed)",
        auth="staff",
        request={"status": "string: attended | no_show | confirmed"},
        response={"booking": "object"},
        tags=TAG,
    ),
]
