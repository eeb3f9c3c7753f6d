"""CSV parsing with row-by-row validation: every bad cell is reported, nothing partial.

Row numbers are file lines as a spreadsheet shows them (the header is row 1).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from booking import errors

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
        try:
            rows.append(convert(cells))
            numbers.append(number)
        except CellError as exc:
            problems.append(RowError(number, exc.column, exc.reason))
        if len(problems) >= MAX_ERRORS:
            break
    return Parsed(rows, problems, numbers)
