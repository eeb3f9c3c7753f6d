"""Words of the waitroom's pages, from the shared catalog (``machiai/locale``): Japanese first,
plain and short for elderly residents.

The waiting page's script gets the few texts it fills in itself (``script_texts``), with
``{n}``-style slots where the catalog's ``%(n)s`` values go; Python and the script format a
wait the same way (``wait_text``).
"""

from __future__ import annotations

import functools
import math

from machiai.i18n import tr

# A range is shown when it is wide: at least this many minutes apart, and the high end at least
# this much above the low one (「約 20〜25 分」); otherwise the one expected figure. The page's
# script applies the same rule.
RANGE_MIN_SPREAD_MIN = 2
RANGE_MIN_RATIO = 1.2


def other_lang(lang: str) -> tuple[str, str]:
    """The language switch: the other language and its name, written in that language."""
    return ("en", "English") if lang == "ja" else ("ja", "日本語")


def minutes(seconds: int) -> int:
    return max(1, math.ceil(seconds / 60))


def duration(seconds: int, lang: str) -> str:
    m = minutes(seconds)
    if m < 60:
        return tr(lang, "%(n)s min", n=m)
    return tr(lang, "%(h)s h %(m)s min", h=m // 60, m=m % 60)


def wait_text(expected_s: int, low_s: int, high_s: int, lang: str) -> str:
    """「待ち時間の目安：約 N 分」, or the range when it is wide (see RANGE_MIN_*)."""
    low, high = minutes(low_s), minutes(high_s)
    if high - low >= RANGE_MIN_SPREAD_MIN and high > RANGE_MIN_RATIO * low:
        if high < 60:
            span = tr(lang, "%(a)s to %(b)s min", a=low, b=high)
        else:
            span = tr(lang, "%(a)s to %(b)s", a=duration(low_s, lang), b=duration(high_s, lang))
    else:
        span = duration(expected_s, lang)
    return tr(lang, "Estimated wait: about %(w)s", w=span)


def _ahead_slot(lang: str) -> str:
    """「あなたの前に {n} 人」 with a no-break space after the number: the number never ends a
    line with its counter word on the next (「あなたの前に 2 ／ 人」 at 412 px)."""
    return tr(lang, "People ahead of you: %(n)s", n="{n}").replace("{n} ", "{n}\u00a0")


def ahead_text(ahead: int, lang: str) -> str:
    if not ahead:
        return tr(lang, "You are next.")
    return _ahead_slot(lang).replace("{n}", format(ahead, ","))


def phone_text(phone: str, lang: str) -> str:
    if phone:
        return tr(lang, "You can also book by phone: %(phone)s", phone=phone)
    return tr(lang, "You can also book through your city's vaccination call centre.")


def chance_texts(phone: str, lang: str) -> list[str]:
    """What "more people ahead than places left" means, and what one can do."""
    return [
        tr(
            lang,
            "More people are ahead of you than there are places left, so the places will "
            "probably run out before your turn.",
        ),
        tr(
            lang,
            "If you keep this page open you keep your place: when places come back "
            "(cancellations, new times), the line goes on in this order.",
        ),
        phone_text(phone, lang),
    ]


@functools.cache
def script_texts(lang: str, phone: str) -> dict[str, str]:
    """The texts the waiting page's script fills in, with ``{n}``-style slots."""
    return {
        "ahead": _ahead_slot(lang),
        "next": tr(lang, "You are next."),
        "wait": tr(lang, "Estimated wait: about %(w)s", w="{w}"),
        "min": tr(lang, "%(n)s min", n="{n}"),
        "hour": tr(lang, "%(h)s h %(m)s min", h="{h}", m="{m}"),
        "mspan": tr(lang, "%(a)s to %(b)s min", a="{a}", b="{b}"),
        "span": tr(lang, "%(a)s to %(b)s", a="{a}", b="{b}"),
        "slots": tr(lang, "Booking places left: %(n)s", n="{n}"),
        "paused": tr(lang, "Admission is paused. Your place is kept."),
        "sold_out": tr(
            lang,
            "No booking places are left. If places come back, the line resumes in this order.",
        ),
        "chance": "\n".join(chance_texts(phone, lang)),
    }
