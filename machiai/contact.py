"""Where residents ask to be told: an e-mail address, or a webhook id of a LINE/SMS bridge.

Both services read them (booking's confirmation page and API, the waitroom's "your turn is
near"), so the rules live here once. The patterns are the ones the OpenAPI documents
publish, so the document and the code refuse the same strings. Each check returns None for
input it refuses; the caller raises its own service's error naming the field.
"""

from __future__ import annotations

import unicodedata

from machiai.inputs import exact

EMAIL_MAX_CHARS = 254  # RFC 5321's path limit, less the angle brackets
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A deliverable address as residents type them: a dot-atom local part (no quoted strings,
# no comments: no mail provider a resident uses hands those out) and a domain of at least
# two labels. Not a full RFC 5322 parser on purpose: what a bridge or SMTP relay accepts.
_ATOM = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# (?=...): the local part is at most 64 characters (RFC 5321), in the pattern itself so
# that the published document refuses exactly what the code refuses.
EMAIL_PATTERN = f"^(?=[^@]{{1,64}}@){_ATOM}(?:\\.{_ATOM})*@{_LABEL}(?:\\.{_LABEL})+$"
EMAIL = exact(EMAIL_PATTERN)
# A bridge's own id for a resident (LINE user id, a phone number the SMS bridge knows).
WEBHOOK_ID_PATTERN = "^[A-Za-z0-9_.:+-]{1,64}$"
WEBHOOK_ID = exact(WEBHOOK_ID_PATTERN)
LOCALES = ("ja", "en")


def email_address(raw: str) -> str | None:
    """The address as typed on a phone: full-width letters (a Japanese keyboard's ＠) made
    ASCII, surrounding spaces dropped; None when it is not an address we can deliver to."""
    value = unicodedata.normalize("NFKC", raw).strip()
    if len(value) > EMAIL_MAX_CHARS:
        return None
    return value if EMAIL.match(value) else None


def webhook_id(raw: str) -> str | None:
    value = unicodedata.normalize("NFKC", raw).strip()
    return value if WEBHOOK_ID.match(value) else None


def locale(raw: str | None) -> str:
    """The language messages go out in: the page's (ja unless en)."""
    return "en" if raw == "en" else "ja"
