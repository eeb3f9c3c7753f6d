"""CSV read as it arrives: whatever the pieces, the same rows, row numbers and refusals as
the whole file read at once (a row cut by a piece's end is never taken for a whole one),
and the same text as decoding the whole file."""

from __future__ import annotations

import codecs
import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from booking import errors
from booking.services.csv_rows import MAX_RECORD_CHARS, Decoder, RecordStream

Found = list[tuple[int, dict[str, str]]] | tuple[str, object]


def whole(text: str) -> Found:
    """The rows as one ``csv.reader`` over the whole text gives them (the reading the
    imports had before they streamed), or the refusal."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return ("refused", "the file is empty")
    except csv.Error as exc:
        return ("refused", str(exc))
    if sorted(header) != ["a", "b"]:
        return ("refused", "expected columns ['a', 'b'] (+ optional [])")
    found: list[tuple[int, dict[str, str]]] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                found.append((reader.line_num, {"__width__": str(len(cells))}))
                continue
            found.append(
                (reader.line_num, {h: c.strip() for h, c in zip(header, cells, strict=True)})
            )
    except csv.Error as exc:
        return ("refused", f"line {reader.line_num}: {exc}")
    return found


def streamed(parts: list[str]) -> Found:
    stream = RecordStream(("a", "b"))
    found: list[tuple[int, dict[str, str]]] = []
    try:
        for part in parts:
            found.extend(stream.feed(part))
        found.extend(stream.close())
    except errors.CsvInvalid as exc:
        return ("refused", exc.detail["errors"][0]["reason"])
    return found


def spans(length: int, at: list[int]) -> list[slice]:
    """A value of ``length`` cut at the points ``at`` (modulo its length)."""
    points = sorted({0, length, *(p % (length + 1) for p in at)})
    return [slice(i, j) for i, j in zip(points, points[1:], strict=False)]


# Text that exercises the reader: quotes (opening, doubled, stray), line breaks inside
# quotes, CR, blank lines, wrong widths.
CSV_TEXT = st.text(alphabet='ab,"\n\r x1あ', max_size=80)
CUTS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=8)


@given(header=st.sampled_from(["a,b\n", "b,A\r\n", '"a","b"\n', "a,b,c\n", ""]), body=CSV_TEXT)
def test_one_piece_reads_as_the_whole_file(header: str, body: str) -> None:
    assert streamed([header + body]) == whole(header + body)


@given(header=st.sampled_from(["a,b\n", '"a",b\r\n', "a\n"]), body=CSV_TEXT, at=CUTS)
def test_any_pieces_read_as_the_whole_file(header: str, body: str, at: list[int]) -> None:
    text = header + body
    assert streamed([text[s] for s in spans(len(text), at)]) == whole(text)


def test_a_quoted_line_break_across_pieces_is_one_row() -> None:
    text = 'a,b\n1,"two\nlines"\n3,4\n'
    for i in range(len(text) + 1):
        assert streamed([text[:i], text[i:]]) == [
            (3, {"a": "1", "b": "two\nlines"}),
            (4, {"a": "3", "b": "4"}),
        ]


def test_a_row_that_never_ends_is_refused_not_kept() -> None:
    stream = RecordStream(("a", "b"))
    stream.feed("a,b\n1,2\n")
    with pytest.raises(errors.CsvInvalid) as refused:
        for _ in range(MAX_RECORD_CHARS // 1000 + 2):
            stream.feed("x" * 1000)
    assert refused.value.detail["errors"][0]["reason"].startswith("line 3: a row longer")
    quoted = RecordStream(("a", "b"))
    quoted.feed('a,b\n1,"')
    with pytest.raises(errors.CsvInvalid):
        for _ in range(MAX_RECORD_CHARS // 1000 + 2):
            quoted.feed("x\n" * 500)


def decode_whole(data: bytes) -> str | None:
    """UTF-8 (BOM or not) if it is UTF-8, else cp932, else None: the reading of a whole
    file the imports had before they streamed."""
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def decode_pieces(parts: list[bytes]) -> str | None:
    decoder = Decoder()
    try:
        return "".join(decoder.decode(p) for p in parts) + decoder.decode(b"", final=True)
    except errors.CsvInvalid:
        return None


# Japanese as people write it in these files (full-width, whose cp932 bytes are never
# UTF-8), ASCII, and an ideographic space.
JAPANESE_TEXT = st.text(
    alphabet="0123456789,-/|\n ab年月日あいうアイウ医療従事者\u3000", max_size=60
)


@given(text=JAPANESE_TEXT, encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp932"]), at=CUTS)
def test_any_pieces_decode_as_the_whole_file(text: str, encoding: str, at: list[int]) -> None:
    data = text.encode(encoding)
    assert decode_pieces([data[s] for s in spans(len(data), at)]) == decode_whole(data) == text


def test_neither_utf8_nor_cp932_is_refused_wherever_it_shows() -> None:
    utf8_then_cp932 = "年,".encode() + "月".encode("cp932")
    assert decode_pieces([utf8_then_cp932]) is not None  # whole: read as cp932, as before
    assert decode_pieces([utf8_then_cp932[:4], utf8_then_cp932[4:]]) is None
    assert decode_pieces([codecs.BOM_UTF8 + "月".encode("cp932")]) is None
    assert decode_pieces([b"a,b\n\x81\x00"]) is None  # not cp932 either
