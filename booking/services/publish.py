"""Clinics publish capacity: single slots, weekly plans and CSV imports (all or nothing).

Invariant: every slot belongs to the publishing clinic and to an event of the
clinic's municipality, starts in the future, and has a valid vaccine and dose.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from booking import errors
from booking.domain import ClinicStaff, SlotSpec
from booking.services.context import Ctx
from booking.services.csv_rows import (
    CellError,
    Parsed,
    RowError,
    decode,
    instant_cell,
    int_cell,
    parse,
)
from booking.services.inventory import mirror_published
from booking.store import pg, pg_clinic
from machiai import inputs

log = logging.getLogger(__name__)

JST = timezone(timedelta(hours=9))
MAX_SLOTS = 20_000
EVENT_ID = inputs.EVENT_ID
VACCINE_CODE = inputs.exact(inputs.VACCINE_CODE_PATTERN)
# The days a plan may cover: each of their times is an instant in UTC too.
FIRST_DAY, LAST_DAY = date(2, 1, 1), date(9998, 12, 31)


@dataclass(frozen=True, slots=True)
class Break:
    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Exception_:
    """A dated exception: closed all day, or different hours that day."""

    day: date
    closed: bool
    opens: time | None = None
    closes: time | None = None


@dataclass(frozen=True, slots=True)
class WeeklyPlan:
    event_id: str
    from_date: date
    to_date: date
    weekdays: frozenset[int]  # 0 = Monday
    opens: time
    closes: time
    slot_min: int
    capacity: int
    vaccine_code: str
    dose_number: int
    breaks: tuple[Break, ...] = ()
    exceptions: tuple[Exception_, ...] = ()


def expand_plan(plan: WeeklyPlan) -> list[SlotSpec]:
    """Every slot of the plan, Japan time, skipping breaks and closed days."""
    if plan.from_date < FIRST_DAY or plan.to_date > LAST_DAY:
        raise errors.Invalid(
            "The plan's days must lie between the years 2 and 9998.",
            "期間は西暦 2 年から 9998 年の間で指定してください。",
            detail={"field": "from_date" if plan.from_date < FIRST_DAY else "to_date"},
        )
    if plan.to_date < plan.from_date or (plan.to_date - plan.from_date).days > 366:
        raise errors.Invalid(
            "to_date must be after from_date, within a year.",
            "期間は開始日以降、1 年以内で指定してください。",
        )
    by_day = {e.day: e for e in plan.exceptions}
    specs: list[SlotSpec] = []
    day = plan.from_date
    while day <= plan.to_date:
        exc = by_day.get(day)
        opens, closes = plan.opens, plan.closes
        open_today = day.weekday() in plan.weekdays
        if exc is not None:
            open_today = not exc.closed
            if exc.opens is not None and exc.closes is not None:
                opens, closes = exc.opens, exc.closes
        if open_today:
            start = datetime.combine(day, opens, JST)
            end = datetime.combine(day, closes, JST)
            while start + timedelta(minutes=plan.slot_min) <= end:
                stop = start + timedelta(minutes=plan.slot_min)
                clash = any(
                    start.timetz() < b.end.replace(tzinfo=JST)
                    and b.start.replace(tzinfo=JST) < stop.timetz()
                    for b in plan.breaks
                )
                if not clash:
                    specs.append(
                        SlotSpec(
                            plan.event_id,
                            start.astimezone(UTC),
                            plan.slot_min,
                            plan.capacity,
                            plan.vaccine_code,
                            plan.dose_number,
                        )
                    )
                start = stop
                if len(specs) > MAX_SLOTS:
                    raise errors.Invalid("The plan makes too many slots.", "枠の数が多すぎます。")
        day += timedelta(days=1)
    return specs


def slot_from_cells(cells: dict[str, str]) -> SlotSpec:
    event_id = cells["event_id"]
    if not EVENT_ID.match(event_id):
        raise CellError("event_id", "not an event id (a-z, 0-9 and -, at most 63)")
    vaccine = cells["vaccine_code"]
    if not VACCINE_CODE.match(vaccine):
        raise CellError("vaccine_code", "not a vaccine code (a-z, 0-9, _ and -, at most 40)")
    pf = cells.get("publish_from") or ""
    pu = cells.get("publish_until") or ""
    return SlotSpec(
        event_id=event_id,
        starts_at=instant_cell(cells["starts_at"], "starts_at"),
        duration_min=int_cell(cells["duration_min"], "duration_min", 1, 1440),
        capacity=int_cell(cells["capacity"], "capacity", 0, 100_000),
        vaccine_code=vaccine,
        dose_number=int_cell(cells["dose_number"], "dose_number", 1, 9),
        publish_from=instant_cell(pf, "publish_from") if pf else None,
        publish_until=instant_cell(pu, "publish_until") if pu else None,
    )


SLOT_COLUMNS = ("event_id", "starts_at", "duration_min", "capacity", "vaccine_code", "dose_number")


async def check_specs(
    ctx: Ctx, staff: ClinicStaff, specs: list[SlotSpec]
) -> list[tuple[int, str, str]]:
    """(index, column, reason) for each spec Postgres or the rules would refuse."""
    async with pg.acquire(ctx.pool) as conn:
        return await pg_clinic.check_slot_specs(conn, staff.municipality, staff.clinic_id, specs)


async def publish_slots(
    ctx: Ctx, staff: ClinicStaff, specs: list[SlotSpec], *, dry_run: bool, skip_existing: bool
) -> dict[str, Any]:
    """Check every slot, then insert all of them (or, with skip_existing, all new ones)."""
    problems = await check_specs(ctx, staff, specs)
    if skip_existing:
        problems = [p for p in problems if p[2] != "slot already exists"]
    if problems:
        raise errors.Invalid(
            detail={
                "errors": [{"index": i, "column": c, "reason": r} for i, c, r in problems[:1000]]
            }
        )
    if dry_run:
        return {"dry_run": True, "slots": len(specs), "created": 0}
    async with pg.acquire(ctx.pool) as conn:
        created = await pg_clinic.insert_slots(conn, staff, specs)
    await _mirror(ctx, created)
    return {"dry_run": False, "slots": len(specs), "created": len(created), "slot_ids": created}


async def import_slots_csv(
    ctx: Ctx, staff: ClinicStaff, data: bytes, dry_run: bool
) -> dict[str, Any]:
    """Preview or apply a slot CSV: every bad row listed, nothing applied unless all valid."""
    parsed: Parsed[SlotSpec] = parse(
        decode(data), SLOT_COLUMNS, ("publish_from", "publish_until"), slot_from_cells, MAX_SLOTS
    )
    problems = list(parsed.errors)
    refused = await check_specs(ctx, staff, parsed.rows)
    for index, column, reason in refused:
        problems.append(RowError(parsed.row_numbers[index], column, reason))
    problems.sort(key=lambda p: p.row)
    if problems:
        raise errors.CsvInvalid(
            detail={
                "errors": [p.as_dict() for p in problems[:1000]],
                # The rows that parsed (those that did not are not in parsed.rows) and that
                # nothing refused: a row counts once however many of its cells are wrong.
                "valid_rows": len(parsed.rows) - len({index for index, _, _ in refused}),
            }
        )
    if dry_run:
        return {"dry_run": True, "rows": len(parsed.rows), "errors": []}
    async with pg.acquire(ctx.pool) as conn:
        created = await pg_clinic.insert_slots(conn, staff, parsed.rows)
    await _mirror(ctx, created)
    return {
        "dry_run": False,
        "rows": len(parsed.rows),
        "created": len(created),
        "slot_ids": created,
        "errors": [],
    }


async def _mirror(ctx: Ctx, slot_ids: list[str]) -> None:
    """The slots are published once Postgres has them; Redis learning them now is a head
    start for the first holds, and a failure here only postpones it to those holds."""
    try:
        await mirror_published(ctx, slot_ids)
    except errors.Busy:
        log.warning("published %d slots; Redis will learn them on their first hold", len(slot_ids))
