"""Clinic staff: publish slots (single, weekly plan, CSV), change them, see and mark bookings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from booking import http
from booking import openapi as doc
from booking.domain import ClinicStaff, SlotSpec
from booking.http import EVENT_ID, VACCINE_CODE, Endpoint, Fields, body, ctx_of, ok, query
from booking.services import clinic, publish
from machiai import inputs
from machiai.openapi import Reply, Schema, array, boolean, integer, obj, string


def staff_of(request: Request) -> ClinicStaff:
    return clinic.clinic_staff(http.staff(request, "clinic"))


def spec_from(fields: Fields) -> SlotSpec:
    return SlotSpec(
        event_id=fields.text("event_id", max_len=63, pattern=EVENT_ID),
        starts_at=fields.instant("starts_at"),
        duration_min=fields.integer("duration_min", minimum=1, maximum=1440),
        capacity=fields.integer("capacity", minimum=0, maximum=100_000),
        vaccine_code=fields.text("vaccine_code", max_len=40, pattern=VACCINE_CODE),
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
        event_id=fields.text("event_id", max_len=63, pattern=EVENT_ID),
        from_date=fields.day("from_date"),
        to_date=fields.day("to_date"),
        weekdays=frozenset(weekdays),
        opens=fields.clock("opens"),
        closes=fields.clock("closes"),
        slot_min=fields.integer("slot_min", minimum=5, maximum=1440),
        capacity=fields.integer("capacity", minimum=0, maximum=100_000),
        vaccine_code=fields.text("vaccine_code", max_len=40, pattern=VACCINE_CODE),
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
    fields = await body(request)
    status = fields.text("status", max_len=10)
    if status not in clinic.ATTENDANCE:
        raise http.invalid("status", "must be attended, no_show or confirmed", "値が不正です")
    # The API takes the lot as stored (the console also takes what a person types).
    lot = fields.opt_text("lot", max_len=20, pattern=LOT)
    booking = await clinic.mark_attendance(ctx_of(request), staff, booking_id, status, lot)
    return ok({"booking": booking})


LOT = inputs.exact(clinic.LOT_PATTERN)
# "attended" may carry the vaccine's lot number; the other states carry none.
ATTENDANCE_REQUEST: Schema = {
    "oneOf": [
        obj(
            {"status": string(enum=("attended",))},
            {
                "lot": string(
                    pattern=clinic.LOT_PATTERN,
                    max_length=20,
                    nullable=True,
                    description="the vaccine's lot number (ロット番号), as on the vial",
                )
            },
        ),
        obj(
            {"status": string(enum=("confirmed", "no_show"))},
            {"lot": string(max_length=0, nullable=True, description="none (or empty)")},
        ),
    ]
}


CLOCK = string(pattern=http.CLOCK_PATTERN, description="HH:MM, Japan time")
SLOT_SPEC = obj(
    {
        "event_id": doc.EVENT_ID,
        "starts_at": doc.INSTANT,
        "duration_min": integer(1, 1440),
        "capacity": integer(0, 100_000),
        "vaccine_code": doc.VACCINE_CODE,
        "dose_number": integer(1, 9),
    },
    {
        "publish_from": string(pattern=doc.INSTANT["pattern"], nullable=True),
        "publish_until": string(pattern=doc.INSTANT["pattern"], nullable=True),
    },
)
PLAN: Schema = obj(
    {
        "event_id": doc.EVENT_ID,
        "from_date": doc.DATE,
        "to_date": doc.DATE,
        "weekdays": array(
            integer(0, 6), min_items=1, max_items=7, description="0 (Monday) .. 6 (Sunday)"
        ),
        "opens": CLOCK,
        "closes": CLOCK,
        "slot_min": integer(5, 1440),
        "capacity": integer(0, 100_000),
        "vaccine_code": doc.VACCINE_CODE,
        "dose_number": integer(1, 9),
    },
    {
        "breaks": array(obj({"start": CLOCK, "end": CLOCK}), max_items=20),
        "exceptions": array(
            obj(
                {"date": doc.DATE},
                {"closed": boolean(), "opens": CLOCK, "closes": CLOCK},
                description="closed that day, or other hours (opens and closes together)",
            ),
            max_items=400,
        ),
        "dry_run": boolean(),
    },
)
# Refusals of rules the schema cannot tell (an event of another municipality, a slot in
# the past, opens after closes): 422 with the rows or fields at fault in detail.
PUBLISHED = obj(
    {"dry_run": boolean(), "slots": integer(0), "created": integer(0)},
    {"slot_ids": array(doc.UUID, description="the slots created (not on a dry run)")},
)
DAY = (doc.query("date", doc.DATE, required=True, description="the day, Japan time"),)
DRY_RUN = (doc.query("dry_run", string(enum=("true", "false", "1", "0"))),)
TAG = ("clinic",)
ROLES = ("clinic",)
ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/clinic/slots",
        create_slot,
        "Publish one slot",
        auth="staff",
        roles=ROLES,
        request=SLOT_SPEC,
        response=PUBLISHED,
        status=201,
        tags=TAG,
    ),
    Endpoint(
        "GET",
        "/api/clinic/slots",
        list_slots,
        "The clinic's slots of a day",
        auth="staff",
        roles=ROLES,
        params=DAY,
        response=obj({"slots": array(doc.CLINIC_SLOT)}),
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/clinic/slots/plan",
        publish_plan,
        "Publish a weekly plan (existing slots are skipped); 200 on a dry run",
        auth="staff",
        roles=ROLES,
        request=PLAN,
        response=PUBLISHED,
        status=201,
        replies={200: Reply("A dry run: the slots the plan makes, none published", PUBLISHED)},
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/clinic/slots/import",
        import_csv,
        "Import slots from CSV (event_id,starts_at,duration_min,capacity,vaccine_code,"
        "dose_number[,publish_from,publish_until]); all or nothing",
        auth="staff",
        roles=ROLES,
        params=DRY_RUN,
        request={
            **doc.CSV,
            "example": "event_id,starts_at,duration_min,capacity,vaccine_code,dose_number\n"
            "city-65plus,2031/4/1 9:00,30,10,comirnaty,1\n"
            "city-65plus,2031-04-01T09:30+09:00,30,10,comirnaty,1\n",
        },
        response=obj(
            {"dry_run": boolean(), "rows": integer(0), "errors": array(doc.ROW_ERROR)},
            {"created": integer(0), "slot_ids": array(doc.UUID)},
        ),
        errors={422: ("csv_invalid",)},
        body_kind="csv",
        tags=TAG,
    ),
    Endpoint(
        "PATCH",
        "/api/clinic/slots/{slot_id:uuid}",  # never "plan" or "import"
        update_slot,
        "Change capacity (never below booked), close or reopen",
        auth="staff",
        roles=ROLES,
        params=(doc.path("slot_id", doc.UUID),),
        request={
            **obj({}, {"capacity": integer(0, 100_000), "closed": boolean()}),
            "anyOf": [{"required": ["capacity"]}, {"required": ["closed"]}],
        },
        response=obj({"slot": doc.CLINIC_SLOT}),
        errors={404: ("not_found",), 409: ("capacity_below_booked",)},
        tags=TAG,
    ),
    Endpoint(
        "GET",
        "/api/clinic/bookings",
        list_bookings,
        "The clinic's bookings of a day",
        auth="staff",
        roles=ROLES,
        params=DAY,
        response=obj({"bookings": array(doc.BOOKING_WITH_VOUCHER)}),
        body_kind="none",
        tags=TAG,
    ),
    Endpoint(
        "POST",
        "/api/clinic/bookings/{booking_id}/attendance",
        mark_attendance,
        "Mark attended / no_show (from the appointment's day on, Japan time) or back to confirmed",
        auth="staff",
        roles=ROLES,
        params=(doc.path("booking_id", doc.UUID),),
        request=ATTENDANCE_REQUEST,
        response=obj({"booking": doc.BOOKING}),
        errors={
            404: ("no_booking",),
            409: ("booking_state", "already_booked", "attendance_too_early"),
        },
        tags=TAG,
    ),
]
