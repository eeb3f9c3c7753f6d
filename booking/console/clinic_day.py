"""The clinic's bookings of a day: the list (printable), the CSV, and attendance.

GET  /staff/clinic/day?date=YYYY-MM-DD       the list; today in Japan time by default
GET  /staff/clinic/day.csv?date=&encoding=   the same rows as a file: UTF-8 with a BOM, or
                                             encoding=shift_jis (cp932)
POST /staff/clinic/day/attendance            vaccinated / did not come / back to booked
                                             → 303 to the list with a sentence saying what
                                             was done or why it was refused

Voucher numbers are shown with their last four digits only, on the screen, on paper and
in the CSV. The clinic does not need more: the resident brings the voucher itself (the
clinic reads or scans the full number from it for its records), and the list only has
to find the row, which the time, the last four digits and the dose do. A full number
together with a birth date is what signs a resident in, and a list left on the reception
desk, printed, or in a Downloads folder should not hand out half of that.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from booking import errors
from booking.console.clinic_common import (
    DAY,
    DAY_CSV,
    ROLE,
    clinic_label,
    day_or_today,
    instant,
    notice,
    read_day,
    staff_of,
    today,
)
from booking.console.common import console_page, render, see_other
from booking.http import JST, ctx_of
from booking.pages.common import (
    SECURITY_HEADERS,
    STATUS_LABELS,
    Form,
    clock,
    day_label,
    link,
    masked,
)
from booking.services import clinic
from booking.services.console import Console
from booking.services.csv_export import Cell, CsvEncoding, attachment, csv_chunks
from machiai.i18n import N_, tr

# After a change: what was done to the row (%(time)s, %(voucher)s).
DONE = {
    "attended": N_("%(time)s, voucher %(voucher)s: recorded as vaccinated."),
    "no_show": N_(
        "%(time)s, voucher %(voucher)s: recorded as did not come. This person may book "
        "this dose again."
    ),
    "confirmed": N_("%(time)s, voucher %(voucher)s: back to booked."),
}
# Refusals of a change, in plain words; nothing was changed.
REFUSED = {
    "attendance_too_early": N_(
        "Attendance can be recorded from the day of the appointment on. Nothing was changed."
    ),
    "booking_state": N_(
        "This booking was cancelled, so its attendance cannot be recorded. Nothing was changed."
    ),
    "already_booked": N_(
        "This person has booked this dose again since, so this booking cannot go back to "
        "booked. Nothing was changed."
    ),
    "invalid_input": N_(
        "A lot number is up to 20 letters, digits and hyphens, as printed on the vial, and "
        'goes with "vaccinated" only. Nothing was changed.'
    ),
}


def _row(booking: dict[str, Any], lang: str) -> dict[str, Any]:
    starts = instant(booking["starts_at"])
    voucher = str(booking.get("voucher_number") or "")
    # Promise: only the last four digits of a voucher reach the page, the paper or the CSV.
    return {
        "id": booking["booking_id"],
        "time": clock(starts),
        "masked": masked(voucher),
        "last4": voucher[-4:],
        "dose": booking["dose_number"],
        "vaccine": booking["vaccine_code"],
        "status": booking["status"],
        "status_label": tr(lang, STATUS_LABELS.get(booking["status"], booking["status"])),
        "lot": booking.get("lot") or "",
    }


def _notice(lang: str, fields: Form, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The sentence for ``notice=`` (a fixed text per code: a link cannot make the page
    say anything else), about the row ``b=`` names when it is on this page."""
    code = fields.get("notice")
    if code in REFUSED:
        return notice(lang, REFUSED[code], ok=False)
    if code in DONE:
        row = next((r for r in rows if r["id"] == fields.get("b")), None)
        if row is not None:
            return notice(lang, DONE[code], ok=True, time=row["time"], voucher=row["masked"])
    return None


@console_page(ROLE)
async def day_list(request: Request, fields: Form, lang: str, console: Console) -> Response:
    staff = staff_of(console)
    day, unreadable = day_or_today(fields)
    bookings = await clinic.clinic_bookings(ctx_of(request), staff, day)
    rows = [_row(b, lang) for b in bookings]
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in STATUS_LABELS}
    said = _notice(lang, fields, rows)
    if unreadable:
        said = notice(lang, N_("That date could not be read, so today is shown."), ok=False)
    label = day_label(day, lang)
    return render(
        request,
        "staff_clinic_day.html",
        lang,
        {
            "title": tr(lang, N_("Bookings on %(day)s"), day=label),
            "clinic": await clinic_label(request, staff, lang),
            "day": day.isoformat(),
            "day_label": label,
            "is_today": day == today(),
            # The service is the last word (Postgres' clock); this only spares the clinic
            # buttons that would be refused.
            "ahead": day > today(),
            "prev": link(DAY, date=(day - timedelta(days=1)).isoformat(), lang=lang),
            "next": link(DAY, date=(day + timedelta(days=1)).isoformat(), lang=lang),
            "today_url": link(DAY, lang=lang),
            "csv_utf8": link(DAY_CSV, date=day.isoformat(), lang=lang),
            "csv_sjis": link(DAY_CSV, date=day.isoformat(), encoding="shift_jis", lang=lang),
            "rows": rows,
            "counts": counts,
            "notice": said,
            "changed": fields.get("b") if said and said["ok"] else "",
        },
        console,
    )


@console_page(ROLE)
async def attendance(request: Request, fields: Form, lang: str, console: Console) -> Response:
    """Record one booking's attendance; a refusal the clinic can understand goes back to the
    list as a sentence (never a dead end), other failures to the problem page."""
    staff = staff_of(console)
    status = fields.get("status")
    if status not in clinic.ATTENDANCE:
        raise errors.Invalid()
    booking_id = fields.get("booking")
    day = read_day(fields.get("date")) or today()
    # The lot goes with "vaccinated" only; the other buttons of the row's form ignore it.
    lot = fields.get("lot") if status == "attended" else None
    try:
        booking = await clinic.mark_attendance(ctx_of(request), staff, booking_id, status, lot)
    except (
        errors.AttendanceTooEarly,
        errors.BookingState,
        errors.AlreadyBooked,
        errors.Invalid,  # the lot, the one input the service checks past this point
    ) as exc:
        return see_other(link(DAY, date=day.isoformat(), notice=exc.code, lang=lang))
    # Back to the booking's own day, at its row (the list may be long).
    day = instant(booking["starts_at"]).astimezone(JST).date()
    url = link(DAY, date=day.isoformat(), notice=status, b=booking["booking_id"], lang=lang)
    return see_other(f"{url}#b-{booking['booking_id']}")


def _csv_rows(day: date, rows: list[dict[str, Any]]) -> Iterator[list[Cell]]:
    for r in rows:
        yield [
            day.isoformat(),
            r["time"],
            r["masked"],
            r["dose"],
            r["vaccine"],
            r["status_label"],
            r["lot"],
        ]


def day_csv_body(
    bookings: list[dict[str, Any]], day: date, lang: str, encoding: CsvEncoding
) -> Iterator[bytes]:
    """The day's list as a file (booking.services.csv_export): the console's download and
    ``machiai export day-list`` write these same bytes."""
    header = [
        tr(lang, N_("Date")),
        tr(lang, N_("Time")),
        tr(lang, N_("Voucher number (last 4 digits)")),
        tr(lang, N_("Dose")),
        tr(lang, N_("Vaccine")),
        tr(lang, N_("Booking status")),
        tr(lang, N_("Lot number")),
    ]
    return csv_chunks(header, _csv_rows(day, [_row(b, lang) for b in bookings]), encoding)


def day_csv_filename(day: date, lang: str) -> str:
    return tr(lang, N_("bookings-%(day)s.csv"), day=day.isoformat())


@console_page(ROLE)
async def day_csv(request: Request, fields: Form, lang: str, console: Console) -> Response:
    """The day's list as a file Excel opens right (booking.services.csv_export)."""
    staff = staff_of(console)
    day, _ = day_or_today(fields)
    encoding = CsvEncoding.parse(fields.opt("encoding"))
    bookings = await clinic.clinic_bookings(ctx_of(request), staff, day)
    return StreamingResponse(
        day_csv_body(bookings, day, lang, encoding),
        media_type=f"text/csv; charset={encoding.charset}",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": attachment(
                day_csv_filename(day, lang), f"bookings-{day.isoformat()}.csv"
            ),
        },
    )
