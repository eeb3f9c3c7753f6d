"""booking.services.csv_export: what a spreadsheet reads back is what was written, no cell
starts a formula, UTF-8 carries a BOM and Shift_JIS is cp932, and file names survive."""

from __future__ import annotations

import codecs
import csv
import io
import re
from urllib.parse import unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from booking.services.csv_export import (
    CHUNK_CHARS,
    FORMULA_START,
    Cell,
    CsvEncoding,
    attachment,
    csv_chunks,
    escape_cell,
)

OWASP = "=+-@\t\r"


def read_back(data: bytes, encoding: CsvEncoding) -> list[list[str]]:
    """What a spreadsheet gets: the bytes decoded (a UTF-8 BOM dropped), read as CSV."""
    text = data.decode("utf-8-sig" if encoding is CsvEncoding.UTF8 else "cp932")
    return list(csv.reader(io.StringIO(text, newline="")))


def written(header: list[str], rows: list[list[Cell]], encoding: CsvEncoding) -> bytes:
    return b"".join(csv_chunks(header, rows, encoding))


# Any text a database can hold (no surrogates: they are not characters; no NUL: Postgres
# text cannot hold one), with the formula characters made likely at the start of a cell.
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
CELLS = st.one_of(
    TEXT,
    st.builds(lambda c, t: c + t, st.sampled_from(sorted(FORMULA_START)), TEXT),
    st.integers(-(10**12), 10**12),
    st.none(),
)
# Characters cp932 writes and reads back as themselves (six, such as U+2212 and U+301C,
# come back as their full-width look-alikes: Windows' own mapping).
CP932 = st.characters(codec="utf-8", exclude_characters="\x00").filter(
    lambda c: c.encode("cp932", "replace").decode("cp932") == c
)
CP932_CELLS = st.one_of(
    st.text(CP932),
    st.builds(lambda c, t: c + t, st.sampled_from("=+-@\t\r＝＋－＠"), st.text(CP932)),
)


def expected(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, int):
        return str(cell)
    return "'" + cell if cell and cell[0] in FORMULA_START else cell


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(CELLS, min_size=1, max_size=5), max_size=8),
    st.sampled_from(list(CsvEncoding)),
)
def test_no_cell_starts_a_formula_unless_escaped(
    rows: list[list[Cell]], encoding: CsvEncoding
) -> None:
    header = ["a", "=b", "c", "d", "e"]
    got = read_back(written(header, rows, encoding), encoding)
    assert len(got) == len(rows) + 1  # a line break inside a cell stays inside it
    for line in got:
        for cell in line:
            # A whole number ("-5") is a number to a spreadsheet, never a formula.
            if cell and (cell[0] in OWASP or cell[0] in FORMULA_START):
                assert re.fullmatch(r"-[0-9]+", cell), f"{cell!r} starts a formula"
    assert got[0][1] == "'=b"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(CELLS, min_size=1, max_size=5), max_size=8))
def test_utf8_text_reads_back_as_written(rows: list[list[Cell]]) -> None:
    got = read_back(written(["h"], rows, CsvEncoding.UTF8), CsvEncoding.UTF8)
    assert got[1:] == [[expected(c) for c in row] for row in rows]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(CP932_CELLS, min_size=1, max_size=5), max_size=8))
def test_shift_jis_text_reads_back_as_written(rows: list[list[Cell]]) -> None:
    got = read_back(written(["h"], rows, CsvEncoding.SHIFT_JIS), CsvEncoding.SHIFT_JIS)
    assert got[1:] == [[expected(c) for c in row] for row in rows]


def test_utf8_starts_with_the_bom_once_and_shift_jis_is_cp932() -> None:
    header = ["日付", "接種券番号（下4桁）", "状態"]
    rows: list[list[Cell]] = [["2031-04-01", "＊＊＊＊＊＊1234", "接種済み"]] * 5000
    utf8 = list(csv_chunks(header, rows))
    assert len(utf8) > 1  # streamed in pieces
    assert utf8[0].startswith(codecs.BOM_UTF8)
    assert all(codecs.BOM_UTF8 not in piece for piece in utf8[1:])
    assert b"".join(utf8).decode("utf-8-sig").startswith("日付,")
    sjis = b"".join(csv_chunks(header, rows, CsvEncoding.SHIFT_JIS))
    assert not sjis.startswith(codecs.BOM_UTF8)
    assert sjis.startswith("日付".encode("cp932"))
    assert sjis.decode("cp932").splitlines()[1] == "2031-04-01,＊＊＊＊＊＊1234,接種済み"
    assert sum(len(p) for p in utf8) > CHUNK_CHARS


def test_what_shift_jis_cannot_hold_becomes_a_question_mark() -> None:
    data = written(["名前"], [["𠮷野家 😀"], ["髙橋"]], CsvEncoding.SHIFT_JIS)
    assert read_back(data, CsvEncoding.SHIFT_JIS) == [["名前"], ["?野家 ?"], ["髙橋"]]
    # UTF-8 keeps every character.
    utf8 = written(["名前"], [["𠮷野家 😀"]], CsvEncoding.UTF8)
    assert read_back(utf8, CsvEncoding.UTF8)[1] == ["𠮷野家 😀"]


def test_escaping_by_example() -> None:
    assert escape_cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert escape_cell("@SUM(A1)") == "'@SUM(A1)"
    assert escape_cell("\tx") == "'\tx"
    assert escape_cell("＝1+1") == "'＝1+1"
    assert escape_cell("−5") == "'−5"
    assert escape_cell("a=b") == "a=b"
    assert escape_cell(-5) == "-5"  # a number is never a formula
    assert escape_cell(None) == ""


def test_encoding_names() -> None:
    assert CsvEncoding.parse(None) is CsvEncoding.UTF8
    assert CsvEncoding.parse("Shift_JIS") is CsvEncoding.SHIFT_JIS
    assert CsvEncoding.parse("cp932") is CsvEncoding.SHIFT_JIS
    assert CsvEncoding.parse("latin-1") is CsvEncoding.UTF8
    assert CsvEncoding.SHIFT_JIS.charset == "Windows-31J"


def test_attachment_has_an_ascii_fallback_and_the_utf8_name() -> None:
    header = attachment("予約一覧_2031-04-01.csv", "bookings-2031-04-01.csv")
    assert header.startswith('attachment; filename="bookings-2031-04-01.csv"; ')
    encoded = header.split("filename*=UTF-8''", 1)[1]
    assert encoded.isascii() and unquote(encoded) == "予約一覧_2031-04-01.csv"
    # No quote, path or control character gets through either name.
    nasty = attachment('a"b/..\\c\r\n.csv')
    assert nasty.startswith('attachment; filename="a_b_.._c.csv"')
    assert "\r" not in nasty and "\n" not in nasty and "/" not in unquote(nasty.split("''")[1])
    assert attachment("予約.csv").startswith('attachment; filename="csv"')
