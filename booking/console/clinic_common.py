"""What the clinic console's pages share: the clinic account, the day asked for, notices,
and the service's reasons for refusing a row in plain words.

A clinic account belongs to one clinic (``console.claims.clinic_id``); every service call
takes that clinic, so another clinic's slot or booking is simply not found.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from typing import Any

from starlette.requests import Request

from booking.domain import ClinicStaff
from booking.http import JST, ctx_of
from booking.pages.common import Form
from booking.services import clinic
from booking.services.availability import Availability
from booking.services.console import Console
from machiai.i18n import N_, tr

ROLE = "clinic"
DAY = "/staff/clinic/day"
DAY_CSV = "/staff/clinic/day.csv"
SLOTS = "/staff/clinic/slots"
PLAN = "/staff/clinic/plan"
IMPORT = "/staff/clinic/import"
MAX_CAPACITY = 100_000
_DIGITS = re.compile(r"[0-9]{1,6}")
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def staff_of(console: Console) -> ClinicStaff:
    """The clinic this account works for (a clinic account without one is refused)."""
    return clinic.clinic_staff(console.claims)


def today() -> date:
    """Today on the clinic's calendar (Japan time), whatever the server's zone."""
    return datetime.now(JST).date()


def read_day(raw: str | None) -> date | None:
    """A day as ``YYYY-MM-DD`` (what a date field sends), else None."""
    if not raw or not _ISO_DAY.fullmatch(raw.strip()):
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        return None


def day_or_today(fields: Form) -> tuple[date, bool]:
    """The day asked for, or today; and whether a day was asked for that could not be read."""
    raw = fields.opt("date")
    found = read_day(raw)
    return (found or today()), (raw is not None and found is None)


def whole_number(raw: str, high: int = MAX_CAPACITY) -> int | None:
    """A whole number 0..high as staff type it: full-width digits (a Japanese input
    method's default) and spaces are fine."""
    text = unicodedata.normalize("NFKC", raw).strip()
    if not _DIGITS.fullmatch(text) or int(text) > high:
        return None
    return int(text)


def instant(raw: str) -> datetime:
    """A time the services gave as ISO text (JSON-shaped rows)."""
    return datetime.fromisoformat(raw)


async def clinic_label(request: Request, staff: ClinicStaff, lang: str) -> str:
    """The clinic's name in ``lang``, for headings and printouts."""
    found: Availability = request.app.state.availability
    named = (await found.clinics(ctx_of(request), [staff.clinic_id])).get(staff.clinic_id)
    if named is None:
        return ""
    return named.name_ja if lang == "ja" else named.name_en


def notice(lang: str, text: str, ok: bool, **values: Any) -> dict[str, Any]:
    """A sentence at the top of a page: good news (a status) or a refusal (an alert)."""
    return {"text": tr(lang, text, **values), "ok": ok}


# -- the services' reasons for refusing a row or a cell, in plain words --------------------
REASONS: dict[str, str] = {
    "unknown event of this municipality": N_("No event of your municipality has this id."),
    "too far after the event": N_("This is more than a year after the event ends."),
    "in the past": N_("This time has already passed."),
    "unknown vaccine": N_("No vaccine has this code."),
    "more than the vaccine's doses": N_("This vaccine does not have that many doses."),
    "not after publish_from": N_("The end of the booking period must come after its start."),
    "duplicate slot in this request": N_(
        "The same time, vaccine and dose appear twice in what you sent."
    ),
    "slot already exists": N_("This time is already published (same time, vaccine and dose)."),
    "not an event id (a-z, 0-9 and -, at most 63)": N_(
        "Not an event id (letters a-z, digits and -, up to 63 characters)."
    ),
    "not a vaccine code (a-z, 0-9, _ and -, at most 40)": N_(
        "Not a vaccine code (letters a-z, digits, _ and -, up to 40 characters)."
    ),
    "must be a date YYYY-MM-DD or YYYY/M/D": N_("Write a date such as 2031-04-01 or 2031/4/1."),
    "not a date-time (ISO 8601 or YYYY/M/D H:MM)": N_(
        "Write a date and time such as 2031/4/1 9:30."
    ),
    "wrong number of columns": N_("This row has a different number of columns from the first."),
    "contains a NUL character": N_("This cell holds a character that cannot be used (NUL)."),
    "the file is empty": N_("Nothing was pasted."),
    "encoding": N_("The text is neither UTF-8 nor Shift_JIS."),
}
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"must be an integer from (?P<low>\d+) to (?P<high>\d+) \(digits 0-9\)"),
        N_("Write a whole number from %(low)s to %(high)s in digits."),
    ),
    (re.compile(r"more than (?P<n>\d+) rows"), N_("More than %(n)s rows: please split it.")),
    (re.compile(r"expected columns .*"), N_("The first row must name the columns (see below).")),
    (
        re.compile(r"line (?P<n>\d+): a row longer than \d+ characters"),
        N_("Line %(n)s is too long."),
    ),
    (
        re.compile(r"line (?P<n>\d+): .*"),
        N_("Line %(n)s cannot be read as CSV (perhaps a quote mark is missing)."),
    ),
]


def reason_text(lang: str, reason: str) -> str:
    """What a service's reason means, in ``lang``; one we do not know, as it is."""
    known = REASONS.get(reason)
    if known is not None:
        return tr(lang, known)
    for pattern, text in _PATTERNS:
        match = pattern.fullmatch(reason)
        if match is not None:
            return tr(lang, text, **match.groupdict())
    return reason
