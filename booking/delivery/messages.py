"""What a resident reads: subject and body of each message, in Japanese or English, from
the catalog (``machiai/locale/ja/LC_MESSAGES/messages.po``; message ids are English).

Topics with a message: a booking confirmed, changed or cancelled (saying who cancelled),
the day-before reminder, and "your turn is near" from the waiting line. Every other topic
(slot changes, attendance) is for nobody's inbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from machiai.i18n import N_, tr

JST = timezone(timedelta(hours=9))
CONFIRMED = "booking.booking.confirmed"
CHANGED = "booking.booking.changed"
CANCELLED = "booking.booking.cancelled"
REMINDER = "booking.reminder.due"
TURN_NEAR = "waitroom.turn.near"
TOPICS = frozenset({CONFIRMED, CHANGED, CANCELLED, REMINDER, TURN_NEAR})
LOCALES = ("ja", "en")

# Who cancelled, as the cancel's outbox payload says it (``cancelled_by``).
CANCELLED_BY = {
    "resident": N_("You cancelled this booking."),
    "staff": N_("The vaccination call centre cancelled this booking."),
    "clinic": N_("The clinic cancelled this booking."),
    "slot_closed": N_("This booking was cancelled because its time was closed."),
}
WEEKDAYS_JA = "月火水木金土日"


@dataclass(frozen=True, slots=True)
class Message:
    locale: str
    subject: str
    body: str


class Unrenderable(ValueError):
    """The payload lacks what its topic's message needs (a bug of its writer)."""


def when(starts_at: str, locale: str) -> str:
    """An appointment's time as a resident reads it, in Japan time."""
    try:
        at = datetime.fromisoformat(starts_at)
    except (TypeError, ValueError):
        raise Unrenderable(f"starts_at {starts_at!r} is not a time") from None
    at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(JST)
    if locale == "ja":
        return f"{at.year}年{at.month}月{at.day}日（{WEEKDAYS_JA[at.weekday()]}）{at:%H:%M}"
    return f"{at:%a} {at.day} {at:%b %Y, %H:%M}"


def _field(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None or value == "":
        raise Unrenderable(f"the payload has no {name}")
    return str(value)


def _details(payload: Mapping[str, Any], locale: str) -> list[str]:
    clinic = payload.get("clinic_name_ja" if locale == "ja" else "clinic_name_en") or ""
    return [
        tr(locale, "Confirmation code: %(code)s", code=_field(payload, "confirmation_code")),
        tr(locale, "Date and time: %(when)s", when=when(_field(payload, "starts_at"), locale)),
        tr(locale, "Vaccination site: %(clinic)s", clinic=clinic),
        tr(locale, "Dose %(n)s", n=_field(payload, "dose_number")),
    ]


def _footer(locale: str) -> list[str]:
    return ["", tr(locale, "This message was sent by the vaccination booking system.")]


def render(topic: str, payload: Mapping[str, Any], locale: str) -> Message | None:
    """The message of ``topic`` in ``locale`` (None: the topic has none); raises
    :class:`Unrenderable` when the payload lacks a field the message shows."""
    if locale not in LOCALES:
        locale = "ja"
    if topic == CONFIRMED:
        code = _field(payload, "confirmation_code")
        subject = tr(locale, "Your vaccination booking is confirmed (%(code)s)", code=code)
        lines = [
            tr(locale, "Your vaccination booking is confirmed."),
            "",
            *_details(payload, locale),
            "",
            tr(
                locale,
                "Keep the confirmation code: you need it to see, change or cancel the booking.",
            ),
        ]
    elif topic == CHANGED:
        code = _field(payload, "confirmation_code")
        subject = tr(locale, "Your vaccination booking is changed (%(code)s)", code=code)
        lines = [
            tr(locale, "Your vaccination booking is changed to this time."),
            "",
            *_details(payload, locale),
        ]
    elif topic == CANCELLED:
        code = _field(payload, "confirmation_code")
        subject = tr(locale, "Your vaccination booking is cancelled (%(code)s)", code=code)
        who = CANCELLED_BY.get(str(payload.get("cancelled_by", "")))
        lines = [
            tr(locale, who) if who else tr(locale, "This booking is cancelled."),
            "",
            *_details(payload, locale),
            "",
            tr(locale, "To book another time, join the line on the booking site again."),
        ]
    elif topic == REMINDER:
        subject = tr(
            locale,
            "Reminder: your vaccination is tomorrow, %(when)s",
            when=when(_field(payload, "starts_at"), locale),
        )
        lines = [
            tr(locale, "This is a reminder of your vaccination tomorrow."),
            "",
            *_details(payload, locale),
            "",
            tr(locale, "Bring your vaccination voucher and something that shows who you are."),
        ]
    elif topic == TURN_NEAR:
        subject = tr(locale, "Your turn in the line is near")
        lines = [
            tr(
                locale,
                "Your turn to book is near: %(ahead)s people are ahead of you.",
                ahead=_field(payload, "ahead"),
            ),
            tr(locale, "Open this link to go back to your place in the line:"),
            _field(payload, "link"),
        ]
    else:
        return None
    return Message(locale, subject, "\n".join([*lines, *_footer(locale)]) + "\n")
