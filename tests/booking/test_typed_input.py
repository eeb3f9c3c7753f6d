"""What residents and clients type, read by the parsers: voucher numbers with full-width
digits and spaces (the pages), and JSON fields (the API) — any value gives a value or a
4xx error naming the field, never another exception."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from booking import errors
from booking.http import VOUCHER, Fields
from booking.pages.forms import FormErrors, voucher_number

FULL_WIDTH = {str(d): chr(0xFF10 + d) for d in range(10)}
vouchers = st.from_regex(r"[0-9]{10}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@given(vouchers, st.lists(st.sampled_from([" ", "\u3000", "-", "ー"]), max_size=3), st.data())
def test_a_voucher_typed_with_full_width_digits_and_spaces_is_its_ten_digits(
    number: str, separators: list[str], data: st.DataObject
) -> None:
    typed = "".join(
        FULL_WIDTH[c] if data.draw(st.booleans(), label="full width") else c for c in number
    )
    for sep in separators:
        at = data.draw(st.integers(0, len(typed)), label="where")
        typed = typed[:at] + sep + typed[at:]
    problems = FormErrors()
    assert voucher_number(f" {typed} ", problems) == number
    assert not problems


@given(st.text(max_size=30))
def test_any_text_is_a_voucher_or_a_problem_never_an_exception(raw: str) -> None:
    problems = FormErrors()
    value = voucher_number(raw, problems)
    assert bool(problems) != bool(re.fullmatch(r"[0-9]{10}", value))


def test_the_api_takes_ascii_digits_only() -> None:
    assert VOUCHER.match("0123456789")
    for raw in ("０１２３４５６７８９", "012345678９", "0123 456789", "012345678", "0123456789\n"):
        assert not VOUCHER.match(raw), raw


GETTERS: list[tuple[str, Any]] = [
    ("text", lambda f: f.text("v", max_len=20)),
    ("integer", lambda f: f.integer("v", minimum=0, maximum=100)),
    ("boolean", lambda f: f.boolean("v")),
    ("day", lambda f: f.day("v")),
    ("instant", lambda f: f.instant("v")),
    ("clock", lambda f: f.clock("v")),
    ("array", lambda f: f.array("v", max_len=2)),
]


@pytest.mark.parametrize(("kind", "get"), GETTERS, ids=[k for k, _ in GETTERS])
@given(value=json_values, from_query=st.booleans())
def test_any_json_value_is_read_or_refused_as_invalid(
    kind: str, get: Any, value: Any, from_query: bool
) -> None:
    fields = Fields({"v": value}, from_query=from_query)
    try:
        get(fields)
    except errors.Invalid as refused:
        assert refused.status == 422 and refused.detail.get("field") == "v"
        json.dumps(refused.detail)


def test_json_numbers_and_flags_are_json_not_strings() -> None:
    body, query = Fields({"n": "5", "b": "true"}), Fields({"n": "5", "b": "true"}, from_query=True)
    with pytest.raises(errors.Invalid):
        body.integer("n", minimum=0, maximum=9)
    with pytest.raises(errors.Invalid):
        body.boolean("b")
    assert query.integer("n", minimum=0, maximum=9) == 5 and query.boolean("b") is True
    assert Fields({"n": 5}).integer("n", minimum=0, maximum=9) == 5
    with pytest.raises(errors.Invalid):
        Fields({"n": True}).integer("n", minimum=0, maximum=9)
    with pytest.raises(errors.Invalid):
        Fields({"n": 5.0}).integer("n", minimum=0, maximum=9)
