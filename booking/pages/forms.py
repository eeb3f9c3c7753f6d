"""What residents type, read the way they type it: full-width digits, spaces and hyphens
in a voucher number, a birth year given in the Japanese era (昭和15) or the Western one.

Parsing never raises on bad input: each field gives a value or a problem, so a page can
show every problem next to its field and in a summary at the top.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

from machiai.i18n import N_

# Japanese eras with the Western year their first year falls in (year n = start + n - 1).
ERAS = (
    ("令和", "R", 2019, date(2019, 5, 1)),
    ("平成", "H", 1989, date(1989, 1, 8)),
    ("昭和", "S", 1926, date(1926, 12, 25)),
    ("大正", "T", 1912, date(1912, 7, 30)),
    ("明治", "M", 1868, date(1868, 10, 23)),
)
_ERA_YEAR = re.compile(r"^(明治|大正|昭和|平成|令和|[MTSHR])(元|[0-9]{1,2})年?$", re.IGNORECASE)


def normalize(raw: str) -> str:
    """Full-width letters and digits to their ASCII forms, surrounding spaces removed."""
    return unicodedata.normalize("NFKC", raw).strip()


@dataclass
class FormErrors:
    """Problems by field name (the first one per field), in the order found."""

    problems: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.problems.setdefault(name, message)

    def __bool__(self) -> bool:
        return bool(self.problems)


def voucher_number(raw: str, errors: FormErrors, name: str = "voucher") -> str:
    """Ten digits; full-width digits, spaces and hyphens (as printed on vouchers) accepted."""
    value = re.sub(r"[\s\-‐−ー]", "", normalize(raw))
    if not value:
        errors.add(name, N_("Enter your voucher number."))
    elif not re.fullmatch(r"[0-9]{10}", value):
        errors.add(name, N_("The voucher number is 10 digits."))
    return value


def western_year(raw: str) -> int | None:
    """A year as 1940, 昭和15, S15 or 昭和元年; None when it is none of these."""
    value = normalize(raw).replace(" ", "")
    if re.fullmatch(r"[0-9]{4}", value):
        return int(value)
    match = _ERA_YEAR.match(value)
    if match is None:
        return None
    era, number = match.group(1), match.group(2)
    n = 1 if number == "元" else int(number)
    for name, letter, start, _ in ERAS:
        if era in (name, letter, letter.lower()):
            return start + n - 1
    return None


def era_of(year: int, on: date | None = None) -> str:
    """The Japanese era name of a year (of a day when given): 1940 -> 昭和15."""
    day = on or date(year, 12, 31)
    for name, _, start, first_day in ERAS:
        if day >= first_day:
            n = year - start + 1
            return f"{name}{'元' if n == 1 else n}"
    return ""


def birth_date(
    year: str, month: str, day: str, errors: FormErrors, today: date | None = None
) -> date | None:
    """A birth date from three fields (year, month, day), each checked on its own."""
    today = today or date.today()
    y = western_year(year) if year.strip() else None
    if not year.strip():
        errors.add("year", N_("Enter the year you were born."))
    elif y is None or not 1890 <= y <= today.year:
        errors.add("year", N_("Enter the year as 4 digits (for example 1945) or with its era."))
    m_raw, d_raw = normalize(month), normalize(day)
    m = int(m_raw) if re.fullmatch(r"[0-9]{1,2}", m_raw) else None
    d = int(d_raw) if re.fullmatch(r"[0-9]{1,2}", d_raw) else None
    if m is None or not 1 <= m <= 12:
        errors.add("month", N_("Enter the month as a number from 1 to 12."))
    if d is None or not 1 <= d <= 31:
        errors.add("day", N_("Enter the day as a number from 1 to 31."))
    if y is None or m is None or d is None or errors.problems.keys() & {"year", "month", "day"}:
        return None
    try:
        born = date(y, m, d)
    except ValueError:
        errors.add("day", N_("This day does not exist in that month."))
        return None
    if born > today:
        errors.add("year", N_("The birth date cannot be in the future."))
        return None
    return born
