"""Checks of client input that both services share: text, instants, identifiers.

Each check returns None for input it refuses, and the caller raises its own service's
error naming the field. The patterns are the ones the OpenAPI documents publish
(``machiai.openapi``), so the document and the code refuse the same strings.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo

# What the events table accepts as an id (its CHECK); anything else never reaches a key.
EVENT_ID_PATTERN = "^[a-z0-9][a-z0-9-]{0,62}$"
# 全国地方公共団体コード: six digits (the municipalities table's CHECK).
MUNICIPALITY_CODE_PATTERN = "^[0-9]{6}$"
# The vaccines table's CHECK on its codes.
VACCINE_CODE_PATTERN = "^[a-z0-9][a-z0-9_-]{0,39}$"
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

_DATE = "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?"
_OFFSET = "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
# ISO 8601 date-times as ``datetime.fromisoformat`` reads them; the offset optional or
# required. Seconds and their fraction may be left out ("2031-04-01T09:30+09:00").
INSTANT_PATTERN = f"^{_DATE}[T ]{_TIME}{_OFFSET}?$"
INSTANT_WITH_OFFSET_PATTERN = f"^{_DATE}[T ]{_TIME}{_OFFSET}$"


def exact(pattern: str) -> re.Pattern[str]:
    """A document's pattern (ECMA 262, where ``$`` is the very end) for Python, whose
    ``$`` also matches before a final newline."""
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return re.compile(pattern[:-1] + "\\Z")


EVENT_ID = exact(EVENT_ID_PATTERN)
_INSTANT = exact(INSTANT_PATTERN)

# NUL (Postgres cannot store it in text) and lone surrogates (not text; cannot be encoded).
_UNUSABLE = re.compile("[\x00\ud800-\udfff]")


def usable_text(value: str) -> bool:
    """True unless ``value`` holds a character no database column can store."""
    return _UNUSABLE.search(value) is None


def parse_instant(raw: str, default_tz: tzinfo | None) -> datetime | None:
    """The instant ``raw`` names, in UTC; without an offset it is in ``default_tz`` (None:
    an offset is required). None when malformed, or when it lies outside what a
    ``datetime`` can hold once in UTC (``9999-12-31T23:59:59-09:00``)."""
    if not _INSTANT.match(raw):
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:  # a day the month does not have
        return None
    if value.tzinfo is None:
        if default_tz is None:
            return None
        value = value.replace(tzinfo=default_tz)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return None
