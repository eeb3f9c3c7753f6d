"""CSV cells as the imports read them: numbers in ASCII digits only, days as spreadsheets
write them (Excel's Japanese default 1935/1/1 included), instants with or without zones;
and, over HTTP, the rows and columns a refusal names."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from booking.services.csv_rows import CellError, date_cell, instant_cell, int_cell
from booking.settings import BookingSettings
from tests.booking.client import code, running, staff_token
from tests.booking.factory import World, make_staff

JST = timezone(timedelta(hours=9))
# Characters str.isdigit() or int() accept that are not the ASCII digits 0-9.
OTHER_DIGITS = st.characters(categories=("Nd", "No")).filter(lambda c: not "0" <= c <= "9")
days = st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31))


@given(st.integers(min_value=0, max_value=100_000))
def test_a_number_in_ascii_digits_is_read(n: int) -> None:
    assert int_cell(str(n), "capacity", 0, 100_000) == n


@given(st.text(min_size=1, max_size=4, alphabet=st.sampled_from("0123456789")), OTHER_DIGITS)
def test_any_other_digit_in_a_number_is_refused_naming_the_column(digits: str, other: str) -> None:
    for raw in (other, digits + other, other + digits):
        with pytest.raises(CellError) as refused:
            int_cell(raw, "capacity", 0, 100_000)
        assert refused.value.column == "capacity"


def test_the_digits_python_would_take_are_refused() -> None:
    for raw in ("①", "²", "٣", "１２", "1_000", " 5", "+5", "-0", "5.0", "1e3"):
        with pytest.raises(CellError):
            int_cell(raw, "dose_number", 0, 100_000)
    with pytest.raises(CellError):
        int_cell("100001", "capacity", 0, 100_000)


@given(st.text(max_size=12))
def test_any_text_is_a_number_or_a_cell_error(raw: str) -> None:
    try:
        value = int_cell(raw, "capacity", 0, 100_000)
    except CellError:
        return
    assert raw.isascii() and str(value) == raw.lstrip("0").rjust(1, "0")


@given(days)
def test_a_day_is_read_as_spreadsheets_and_people_write_it(day: date) -> None:
    y, m, d = day.year, day.month, day.day
    for raw in (
        day.isoformat(),
        f"{y}/{m}/{d}",  # Excel's default in Japan
        f"{y}/{m:02d}/{d:02d}",
        f"{y}.{m}.{d}",
        f"{y}-{m}-{d}",
        f"{y}年{m}月{d}日",
    ):
        assert date_cell(raw, "birth_date") == day, raw


def test_days_that_do_not_exist_or_mix_separators_are_refused() -> None:
    for raw in ("1935/2/30", "1935/13/1", "1935-1/1", "1935/1/1/", "35/1/1", "1935/001/1", ""):
        with pytest.raises(CellError) as refused:
            date_cell(raw, "birth_date")
        assert refused.value.column == "birth_date"


@given(st.text(max_size=16))
def test_any_text_is_a_day_or_a_cell_error(raw: str) -> None:
    try:
        date_cell(raw, "birth_date")
    except CellError as refused:
        assert refused.column == "birth_date"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_an_instant_is_read_in_excel_and_iso_forms(local: datetime) -> None:
    at = local.replace(second=0, microsecond=0)
    expected = at.replace(tzinfo=JST).astimezone(UTC)
    for raw in (
        f"{at.year}/{at.month}/{at.day} {at.hour}:{at.minute:02d}",
        at.isoformat(timespec="minutes"),
        at.replace(tzinfo=JST).isoformat(),
        expected.isoformat().replace("+00:00", "Z"),
    ):
        assert instant_cell(raw, "starts_at") == expected, raw


@given(st.text(max_size=30))
def test_any_text_is_an_instant_or_a_cell_error(raw: str) -> None:
    try:
        value = instant_cell(raw, "starts_at")
    except CellError as refused:
        assert refused.column == "starts_at"
    else:
        assert value.tzinfo is UTC


def test_an_instant_past_the_calendar_in_utc_is_a_cell_error() -> None:
    for raw in ("9999-12-31T23:59:59-09:00", "0001/1/1 0:00", "2031/2/30 9:00"):
        with pytest.raises(CellError):
            instant_cell(raw, "starts_at")


async def test_imports_name_the_row_and_column_of_a_foreign_digit_and_take_excel_dates(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        admin_id, _ = await make_staff(conn, world.municipality, "admin")
        clinic_id, _ = await make_staff(conn, world.municipality, "clinic", world.clinic_id)
    admin = staff_token(settings, admin_id, world.municipality, "admin", None)
    clinic = staff_token(settings, clinic_id, world.municipality, "clinic", world.clinic_id)
    m, ev = world.municipality, world.event_id
    soon = (datetime.now(JST) + timedelta(days=3)).date()
    registry = "\n".join(
        [
            "voucher_number,birth_date,municipality_code,groups",
            f"3000000001,1935/1/1,{m},65+",
            f"3000000002,1935/01/01,{m},65+",
            f"3000000003,1935年1月1日,{m},65+",
            f"3000000004,1935-01-01,{m},65+",
        ]
    )
    slots = "\n".join(
        [
            "event_id,starts_at,duration_min,capacity,vaccine_code,dose_number",
            f"{ev},{soon:%Y/%m/%d} 9:00,30,①,comirnaty,1",
            f"{ev},{soon:%Y/%m/%d} 9:30,²,3,comirnaty,1",
            f"{ev},{soon:%Y/%m/%d} 10:00,30,3,comirnaty,٣",
            f"{ev},{soon:%Y/%m/%d} 10:30,30,3,comir\x00naty,1",
            f"{ev},9999-12-31T23:59:59-09:00,30,3,comirnaty,1",
        ]
    )
    async with running(settings) as (_, client):
        r = await client.post("/api/registry/import?dry_run=true", content=registry, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == 4
        r = await client.post("/api/clinic/slots/import", content=slots, headers=clinic)
        assert r.status_code == 422 and code(r) == "csv_invalid"
        errs = [(e["row"], e["column"]) for e in r.json()["error"]["detail"]["errors"]]
        assert errs == [
            (2, "capacity"),
            (3, "duration_min"),
            (4, "dose_number"),
            (5, "vaccine_code"),
            (6, "starts_at"),
        ]
    assert await db.fetchval("SELECT count(*) FROM slots") == 0
    assert unicodedata.digit("①") == 1  # what Python would have read
