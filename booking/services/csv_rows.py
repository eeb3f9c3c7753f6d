"""CSV parsing with row-by-row validation: every bad cell is reported, nothing partial.

Row numbers are file lines as a spreadsheet shows them (the header is row 1).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Generic, TypeVar

from booking import errors
from machiai import inputs

T = TypeVar("T")
MAX_ERRORS = 1000


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"row": self.row, "column": self.column, "reason": self.reason}


class CellError(ValueError):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


JST = timezone(timedelta(hours=9))
# Digits as a spreadsheet writes them: ASCII only. (str.isdigit() and int() also take
# "²", "①" or "٣", which no one means as a count.)
_INTEGER = re.compile(r"[0-9]{1,9}")
# A day as written by hand or by a spreadsheet: 1935-01-01, 1935/1/1 (Excel's Japanese
# default), 1935.1.1, 1935年1月1日.
_DAY = re.compile(
    r"(?P<y>[0-9]{4})(?:(?P<sep>[-/.])(?P<m>[0-9]{1,2})(?P=sep)(?P<d>[0-9]{1,2})"
    r"|年(?P<jm>[0-9]{1,2})月(?P<jd>[0-9]{1,2})日)"
)
# An instant with the day written as above: "2031/4/1 9:30" (Excel), or ISO 8601.
_DAY_TIME = re.compile(r"(?P<day>[^ T]+)[ T](?P<h>[0-9]{1,2}):(?P<rest>[0-9]{2}.*)")


def int_cell(raw: str, column: str, low: int, high: int) -> int:
    """A whole number in ``low..high`` written in ASCII digits."""
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise CellError(column, f"must be an integer from {low} to {high} (digits 0-9)")
    return int(raw)


def date_cell(raw: str, column: str) -> date:
    """A day: YYYY-MM-DD, YYYY/M/D, YYYY.M.D or YYYY年M月D日."""
    match = _DAY.fullmatch(raw)
    try:
        if match is None:
            raise ValueError(raw)
        month, day = match["m"] or match["jm"], match["d"] or match["jd"]
        return date(int(match["y"]), int(month), int(day))
    except ValueError:
        raise CellError(column, "must be a date YYYY-MM-DD or YYYY/M/D") from None


def instant_cell(raw: str, column: str) -> datetime:
    """An instant in UTC: ISO 8601 (Japan time without an offset), or a day as
    ``date_cell`` reads it and a time H:MM[:SS] ("2031/4/1 9:30", as Excel writes it)."""
    value = inputs.parse_instant(raw, JST)
    if value is None:
        match = _DAY_TIME.fullmatch(raw)
        if match is not None and _DAY.fullmatch(match["day"]):
            day = date_cell(match["day"], column)
            value = inputs.parse_instant(
                f"{day.isoformat()}T{int(match['h']):02d}:{match['rest']}", JST
            )
    if value is None:
        raise CellError(column, "not a date-time (ISO 8601 or YYYY/M/D H:MM)")
    return value


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    rows: list[T]
    errors: list[RowError]
    row_numbers: list[int]  # file row of each good row


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), else Shift_JIS (cp932) as Excel in Japan writes it."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp932")
        except UnicodeDecodeError:
            raise errors.CsvInvalid(
                "The file is neither UTF-8 nor Shift_JIS text.",
                "CSV の文字コードを判別できません（UTF-8 または Shift_JIS）。",
                detail={"errors": [{"row": 0, "column": "", "reason": "encoding"}]},
            ) from None


def records(
    text: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, cells by column) for each data row; a bad header is one CsvInvalid."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise _header_error("the file is empty") from None
    except csv.Error as exc:
        raise _header_error(str(exc)) from None
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in required and c not in optional]
    if missing or unknown or len(set(header)) != len(header):
        raise _header_error(f"expected columns {list(required)} (+ optional {list(optional)})")
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            row = reader.line_num
            if len(cells) != len(header):
                yield row, {"__width__": str(len(cells))}
                continue
            yield row, {h: c.strip() for h, c in zip(header, cells, strict=True)}
    except csv.Error as exc:
        raise _header_error(f"line {reader.line_num}: {exc}") from None


def _header_error(reason: str) -> errors.CsvInvalid:
    return errors.CsvInvalid(detail={"errors": [{"row": 1, "column": "", "reason": reason}]})


def parse(
    text: str,
    required: Sequence[str],
    optional: Sequence[str],
    convert: Callable[[dict[str, str]], T],
    max_rows: int,
) -> Parsed[T]:
    rows: list[T] = []
    numbers: list[int] = []
    problems: list[RowError] = []
    for number, cells in records(text, required, optional):
        if len(rows) + len(problems) >= max_rows:
            problems.append(RowError(number, "", f"more than {max_rows} rows"))
            break
        if "__width__" in cells:
            problems.append(RowError(number, "", "wrong number of columns"))
            continue
        unusable = [column for column, cell in cells.items() if not inputs.usable_text(cell)]
        if unusable:
            problems.append(RowError(number, unusable[0], "contains a NUL character"))
            continue
        try:
            rows.append(convert(cells))
            numbers.append(number)
        except CellError as exc:
            problems.append(RowError(number, exc.column, exc.reason))
        if len(problems) >= MAX_ERRORS:
            break
    return Parsed(rows, problems, numbers)
