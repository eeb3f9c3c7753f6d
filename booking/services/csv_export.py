"""CSV files for staff to download: streamed in chunks, opened right by Excel in Japan,
and safe to open in any spreadsheet.

Promises, each kept at the line that names it:

* **No formula runs** (OWASP, "CSV Injection"): a text cell that starts with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return is written with a leading ``'``, which makes a
  spreadsheet show it as text. The full-width forms ``＝ ＋ － ＠`` (what a Japanese input
  method types) are escaped too: they are not on OWASP's list, but we cannot rule out a
  spreadsheet that reads them as their ASCII twins, and the cost of escaping a harmless
  cell is one visible apostrophe. So is the minus sign ``−`` (U+2212): cp932 writes it
  as ``－``, so the file read back would start with one. Whole numbers (``int``) are
  written as they are: their text is digits with an optional minus sign, which a
  spreadsheet reads as a number, never as a formula.
* **Excel reads the characters right**: UTF-8 (the default) starts with a byte-order mark,
  without which Excel for Japanese reads UTF-8 as Shift_JIS and shows mojibake. Shift_JIS
  on request is Windows' cp932 (what Excel in Japan writes and older software expects).
* **A character Shift_JIS cannot hold becomes ``?``** (a rare kanji such as 𠮷, an emoji),
  as Excel's own "save as CSV" does; nothing is refused. Chosen over refusing because the
  file is streamed: by the time such a cell is reached the response has begun, and a
  refusal could only cut the file short. A caller offering Shift_JIS says so beside the
  choice; UTF-8 keeps every character.
* Rows end with CRLF and cells holding a comma, a quote or a line break are quoted
  (RFC 4180), so a cell's line break stays inside its cell.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from enum import StrEnum
from urllib.parse import quote

Cell = str | int | None

# OWASP's formula triggers, their full-width forms (see the module's docstring), and the
# minus sign U+2212, which cp932 writes as the full-width hyphen-minus "－".
FORMULA_START = frozenset("=+-@\t\r") | frozenset("＝＋－＠") | frozenset("\u2212")
# Text gathered before it is encoded and handed on: a few round trips per thousand rows.
CHUNK_CHARS = 64 * 1024


class CsvEncoding(StrEnum):
    """The encodings a download may be asked for, by the name the query uses."""

    UTF8 = "utf-8"
    SHIFT_JIS = "shift_jis"

    @property
    def codec(self) -> str:
        return "utf-8" if self is CsvEncoding.UTF8 else "cp932"

    @property
    def charset(self) -> str:
        """The IANA name for a Content-Type (cp932 is registered as Windows-31J)."""
        return "utf-8" if self is CsvEncoding.UTF8 else "Windows-31J"

    @classmethod
    def parse(cls, raw: str | None) -> CsvEncoding:
        """The encoding a query names (``shift_jis``, ``sjis``, ``cp932``…), else UTF-8."""
        name = (raw or "").strip().lower().replace("-", "_")
        if name in ("shift_jis", "sjis", "cp932", "windows_31j", "ms932"):
            return cls.SHIFT_JIS
        return cls.UTF8


def escape_cell(value: Cell) -> str:
    """The cell's text as written to the file."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # digits and a minus sign at most: never a formula
    text = str(value)
    # Promise: no formula runs. A leading apostrophe makes the cell text.
    if text and text[0] in FORMULA_START:
        return "'" + text
    return text


class _Writer:
    """Rows to encoded pieces of about ``CHUNK_CHARS`` characters (the header first), one
    writer for the sync and the async file below, so both keep the promises above."""

    def __init__(self, header: Sequence[str], encoding: CsvEncoding) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")  # RFC 4180, as Excel
        self._encoding = encoding
        # Promise: Excel reads UTF-8 right only after a byte-order mark.
        self._first = codecs.BOM_UTF8 if encoding is CsvEncoding.UTF8 else b""
        self._writer.writerow([escape_cell(h) for h in header])

    def row(self, row: Sequence[Cell]) -> bytes | None:
        """Writes ``row``; a piece once enough text has gathered."""
        self._writer.writerow([escape_cell(cell) for cell in row])
        return self.take() if self._buffer.tell() >= CHUNK_CHARS else None

    def take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        first, self._first = self._first, b""
        # Promise: a character cp932 cannot hold becomes "?" (never a refusal mid-file).
        return first + text.encode(self._encoding.codec, "replace")


def csv_chunks(
    header: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    encoding: CsvEncoding = CsvEncoding.UTF8,
) -> Iterator[bytes]:
    """The file as encoded pieces of about ``CHUNK_CHARS`` characters, header first; rows
    are read from ``rows`` as the pieces are asked for (a generator is never held whole)."""
    writer = _Writer(header, encoding)
    for row in rows:
        piece = writer.row(row)
        if piece is not None:
            yield piece
    yield writer.take()


async def csv_stream(
    header: Sequence[str],
    batches: AsyncIterable[Iterable[Sequence[Cell]]],
    encoding: CsvEncoding = CsvEncoding.UTF8,
) -> AsyncIterator[bytes]:
    """As ``csv_chunks``, from rows that arrive in batches (a database cursor): one batch is
    held at a time, and a piece leaves as soon as it is full."""
    writer = _Writer(header, encoding)
    async for batch in batches:
        for row in batch:
            piece = writer.row(row)
            if piece is not None:
                yield piece
    yield writer.take()


_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._-]+")


def attachment(filename: str, fallback: str | None = None) -> str:
    """A ``Content-Disposition`` for downloading ``filename`` (any characters): RFC 6266's
    ``filename`` with an ASCII ``fallback`` for clients that know nothing else, and RFC
    5987's ``filename*`` (UTF-8, percent-encoded), which every current browser prefers."""
    name = filename.replace("/", "_").replace("\\", "_")
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C")  # no controls
    if fallback is None:
        fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    plain = _UNSAFE_ASCII.sub("_", fallback).strip("._") or "download"
    # quote(safe="") leaves only RFC 5987's attr-chars unescaped (letters, digits, -._~).
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"
