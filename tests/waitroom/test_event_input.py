"""The event API's parser: any JSON an administrator sends gives column values or an
InvalidInput naming the field — never another exception, never text Postgres cannot take."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from machiai import inputs
from waitroom.errors import InvalidInput
from waitroom.services.manage_event import parse_changes

FIELDS = [
    "id", "name_ja", "name_en", "prequeue_at", "opens_at", "closes_at", "admit_per_minute",
    "max_active", "eligibility_group", "phone_share_pct", "phone_release_at",
]  # fmt: skip
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=250),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.lists(st.integers(), max_size=2),
)


@given(st.dictionaries(st.sampled_from([*FIELDS, "other"]), values), st.booleans())
def test_any_json_object_is_parsed_or_refused_as_invalid_input(
    data: dict[str, Any], creating: bool
) -> None:
    try:
        out = parse_changes(data, creating=creating)
    except InvalidInput as refused:
        assert refused.status == 422 and refused.code in ("invalid_input", "invalid_character")
        return
    for name, value in out.items():
        if isinstance(value, str):
            assert inputs.usable_text(value), name
        if name.endswith("_at") and value is not None:
            assert value.utcoffset().total_seconds() == 0, name


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.none())))
def test_anything_but_an_object_is_refused(data: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_changes(data, creating=False)
