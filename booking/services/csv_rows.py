"""CSV parsing with row-by-row validation: every bad cell is reported, nothing partial.

Row numbers are file lines as a spreadsheet shows them (the header is row 1).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterator, Sequence
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


def _encoding_error() -> errors.CsvInvalid:
    return errors.CsvInvalid(
        "The file is neither UTF-8 nor Shift_JIS text.",
        "CSV の文字コードを判別できません（UTF-8 または Shift_JIS）。",
        detail={"errors": [{"row": 0, "column": "", "reason": "encoding"}]},
    )


class Decoder:
    """Bytes to text as they arrive: UTF-8 (with or without BOM), else Shift_JIS (cp932) as
    Excel in Japan writes it.

    The choice falls at the first bytes that are not UTF-8: while all text before them was
    ASCII (the same in both encodings) the rest is read as cp932; after a BOM or UTF-8 text
    beyond ASCII the file is neither, and refused. Given the whole file at once, that is:
    UTF-8 if it is UTF-8, else cp932."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8-sig")()
        self._cp932: codecs.IncrementalDecoder | None = None
        self._head = b""  # the first bytes, until they say whether there is a BOM
        self._ascii = True  # all text so far was ASCII

    def decode(self, data: bytes, final: bool = False) -> str:
        if self._cp932 is None:
            if len(self._head) < len(codecs.BOM_UTF8):
                self._head += data[: len(codecs.BOM_UTF8) - len(self._head)]
                self._ascii = self._ascii and not self._head.startswith(codecs.BOM_UTF8)
            try:
                text = self._utf8.decode(data, final)
            except UnicodeDecodeError:
                if not self._ascii:
                    raise _encoding_error() from None
                # Bytes the UTF-8 decoder kept back (an unfinished sequence) are cp932's now.
                data = self._utf8.getstate()[0] + data
                self._cp932 = codecs.getincrementaldecoder("cp932")()
            else:
                self._ascii = self._ascii and text.isascii()
                return text
        try:
            return self._cp932.decode(data, final)
        except UnicodeDecodeError:
            raise _encoding_error() from None


def decode(data: bytes) -> str:
    """A whole file's text: UTF-8 (with or without BOM), else Shift_JIS (cp932)."""
    return Decoder().decode(data, final=True)


# A row may span lines (a quoted field with line breaks); one longer than this is refused
# rather than kept waiting for its end (csv's own limit is 128 KiB per field).
MAX_RECORD_CHARS = 1_048_576


class RecordStream:
    """CSV rows from text that arrives in pieces: ``feed`` each piece, then ``close``; each
    returns (row number, cells by column) for the rows it completed. A bad header is one
    CsvInvalid; a row of the wrong width is ``{"__width__": n}``; blank rows are skipped.

    Rows are read by one ``csv.reader`` over the lines as they come, so a row reads and is
    numbered as it would in the whole file. Promise: a row cut by the end of a piece is never
    taken for a whole one. The reader asks for another line only inside a row (a quoted line
    break); when the lines fed so far run out there, it hands back a truncated row, so that
    row's lines are put back in front of the next piece and read again with the rest."""

    def __init__(self, required: Sequence[str], optional: Sequence[str] = ()) -> None:
        self._required = required
        self._optional = optional
        self._header: list[str] | None = None
        self._pending = ""  # text not yet read: an unfinished line, a row put back
        self._lines = _Lines()
        self._reader = csv.reader(self._lines)

    def feed(self, text: str) -> list[tuple[int, dict[str, str]]]:
        text = self._pending + text
        cut = text.rfind("\n") + 1
        self._pending = text[cut:]
        if len(self._pending) > MAX_RECORD_CHARS:
            raise _too_long(self._lines.count + 1)
        return self._read(text[:cut], final=False)

    def close(self) -> list[tuple[int, dict[str, str]]]:
        text, self._pending = self._pending, ""
        found = self._read(text, final=True)
        if self._header is None:
            raise _header_error("the file is empty")
        return found

    def _read(self, text: str, *, final: bool) -> list[tuple[int, dict[str, str]]]:
        lines = self._lines
        lines.source = iter(io.StringIO(text))
        found: list[tuple[int, dict[str, str]]] = []
        while True:
            lines.taken, lines.ran_out = [], False
            try:
                cells = next(self._reader)
            except StopIteration:
                break
            except csv.Error as exc:
                reason = str(exc) if self._header is None else f"line {lines.count}: {exc}"
                raise _header_error(reason) from None
            if lines.ran_out and not final:
                # A row cut by the end of this piece: read it again with the next one.
                rest = "".join(lines.taken)
                if len(rest) + len(self._pending) > MAX_RECORD_CHARS:
                    raise _too_long(lines.count - len(lines.taken) + 1)
                self._pending = rest + self._pending
                lines.count -= len(lines.taken)
                break
            if self._header is None:
                self._header = self._check_header(cells)
                continue
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(self._header):
                found.append((lines.count, {"__width__": str(len(cells))}))
                continue
            found.append(
                (lines.count, {h: c.strip() for h, c in zip(self._header, cells, strict=True)})
            )
        return found

    def _check_header(self, cells: list[str]) -> list[str]:
        header = [h.strip().lower() for h in cells]
        required, optional = self._required, self._optional
        missing = [c for c in required if c not in header]
        unknown = [c for c in header if c not in required and c not in optional]
        if missing or unknown or len(set(header)) != len(header):
            raise _header_error(f"expected columns {list(required)} (+ optional {list(optional)})")
        return header


class _Lines:
    """The lines fed so far, for the reader; out of them it raises StopIteration and is
    asked again after the next piece (a generator, once ended, would stay ended)."""

    def __init__(self) -> None:
        self.source: Iterator[str] = iter(())
        self.taken: list[str] = []  # the lines of the row being read
        self.ran_out = False
        self.count = 0  # lines read: the row number of the row just read

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        try:
            line = next(self.source)
        except StopIteration:
            self.ran_out = True
            raise
        self.taken.append(line)
        self.count += 1
        return line


def _too_long(row: int) -> errors.CsvInvalid:
    return _header_error(f"line {row}: a row longer than {MAX_RECORD_CHARS} characters")


def records(
    text: str, required: Sequence[str], optional: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, cells by column) for each data row; a bad header is one CsvInvalid."""
    stream = RecordStream(required, optional)
    yield from stream.feed(text)
    yield from stream.close()


async def stream_records(
    body: AsyncIterable[bytes], required: Sequence[str], optional: Sequence[str] = ()
) -> AsyncGenerator[list[tuple[int, dict[str, str]]], None]:
    """The rows of a CSV body as its bytes arrive, a list per piece: only the unfinished
    row is ever held, never the file."""
    decoder = Decoder()
    stream = RecordStream(required, optional)
    async for data in body:
        yield stream.feed(decoder.decode(data))
    yield stream.feed(decoder.decode(b"", final=True))
    yield stream.close()


def _header_error(reason: str) -> errors.CsvInvalid:
    return errors.CsvInvalid(detail={"errors": [{"row": 1, "column": "", "reason": reason}]})


def check_row(
    number: int, cells: dict[str, str], convert: Callable[[dict[str, str]], T]
) -> T | RowError:
    """The row converted, or what is wrong with it (the first bad cell)."""
    if "__width__" in cells:
        return RowError(number, "", "wrong number of columns")
    unusable = [column for column, cell in cells.items() if not inputs.usable_text(cell)]
    if unusable:
        return RowError(number, unusable[0], "contains a NUL character")
    try:
        return convert(cells)
    except CellError as exc:
        return RowError(number, exc.column, exc.reason)


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
        checked = check_row(number, cells, convert)
        if isinstance(checked, RowError):
            problems.append(checked)
        else:
            rows.append(checked)
            numbers.append(number)
        if len(problems) >= MAX_ERRORS:
            break
    return Parsed(rows, problems, numbers)
