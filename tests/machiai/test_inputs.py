"""The shared input checks: instants with zones (and their edges), text a column can hold,
patterns that end where the document says."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from machiai import inputs

JST = timezone(timedelta(hours=9))
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda m: timezone(timedelta(minutes=m))
)
# Whole seconds or microseconds: what a client writes, and what isoformat() writes.
instants = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets
)


@given(instants)
def test_an_instant_with_its_offset_reads_back_as_the_same_moment(value: datetime) -> None:
    for text in (value.isoformat(), value.isoformat(timespec="seconds")):
        parsed = inputs.parse_instant(text, None)
        assert parsed is not None and parsed.tzinfo is UTC
        assert parsed == value.replace(microsecond=parsed.microsecond)
        assert re.fullmatch(inputs.INSTANT_WITH_OFFSET_PATTERN[1:-1], text)


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)))
def test_without_an_offset_the_default_zone_applies_or_it_is_refused(value: datetime) -> None:
    text = value.isoformat(timespec="minutes")
    assert inputs.parse_instant(text, JST) == value.replace(second=0, microsecond=0, tzinfo=JST)
    assert inputs.parse_instant(text, None) is None


def test_instants_that_leave_the_calendar_once_in_utc_are_refused() -> None:
    assert inputs.parse_instant("9999-12-31T23:59:59-09:00", None) is None
    assert inputs.parse_instant("0001-01-01T00:00:00+09:00", None) is None
    assert inputs.parse_instant("0001-01-01T08:00", JST) is None
    assert inputs.parse_instant("9999-12-31T14:59:59+09:00", None) is not None
    assert inputs.parse_instant("0001-01-01T00:00:00Z", None) is not None


@given(st.text(max_size=40))
def test_any_text_is_an_instant_or_none_never_an_exception(raw: str) -> None:
    value = inputs.parse_instant(raw, JST)
    assert value is None or value.tzinfo is UTC


def test_malformed_instants_are_refused() -> None:
    for raw in (
        "2031-02-30T10:00+09:00",  # no such day
        "2031-04-01T24:00+09:00",
        "2031-04-01T10:00:60+09:00",
        "2031-04-01T10:00+24:00",
        "2031-04-01T10:00z",
        "2031-04-01",
        "2031-04-01T10:00+09:00\n",
        "２０３１-04-01T10:00+09:00",  # full-width digits
        "20310401T1000",
    ):
        assert inputs.parse_instant(raw, JST) is None, raw


@given(st.text())
def test_usable_text_is_text_without_nul_or_lone_surrogates(value: str) -> None:
    usable = inputs.usable_text(value)
    assert usable == ("\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value))
    if usable:
        value.encode("utf-8")  # what Postgres will be sent


def test_nul_and_surrogates_are_not_usable() -> None:
    assert not inputs.usable_text("接種\x00予約")
    assert not inputs.usable_text("a\ud800b")
    assert inputs.usable_text("65歳以上 接種予約 🏥")


def test_patterns_end_at_the_end_not_before_a_newline() -> None:
    assert inputs.EVENT_ID.match("ev-1")
    assert not inputs.EVENT_ID.match("ev-1\n")
    assert not inputs.exact(inputs.UUID_PATTERN).match("00000000-0000-4000-8000-000000000000\n")
