"""What the call-centre console's pages share: the roles, the call in hand, the refusals
in words an operator can read to the caller, and the way back to the caller's page.

A refusal is never a dead end and never a code: a step that is refused sends the
operator back to the page they came from (the caller's page, with their search kept)
with a sentence saying what happened and what to do next; the few that cannot go back
there (the call itself is gone) go to the find page, with a sentence too.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from booking import errors
from booking.console.common import Handler, console_page, render, see_other
from booking.domain import Actor, Resident
from booking.http import ctx_of
from booking.pages.common import MONTHS_EN, Form, link
from booking.pages.forms import era_of
from booking.services import operator
from booking.services.console import Console
from booking.services.operator_calls import Call, Person, find_call
from machiai.i18n import N_, tr

ROLES = ("operator", "admin")
FIND = "/staff/operator"
CALL = "/staff/operator/call"
# The caller's page keeps the search it was showing across a refused step.
SEARCH_FIELDS = ("date", "area", "clinic", "page")


class CallGone(errors.AppError):
    """The call id names no call of this console (ended, idle too long, another's)."""

    code = "call_gone"
    status = 404


# What a refusal means, in words an operator reads to the caller, and what to do next.
NOTICES: dict[str, str] = {
    "slot_full": N_("This time has just been taken. Tell the caller and choose another time."),
    "slot_closed": N_("This time is no longer offered. Choose another time with the caller."),
    "slot_not_bookable": N_(
        "This time cannot be booked now (outside its booking period, or already past). "
        "Choose another time."
    ),
    "hold_expired": N_("The kept time ran out and nothing was booked. Hold a time again."),
    "hold_exists": N_(
        "A time is already kept for this person (perhaps on the website). Confirm it, or "
        "release it to choose another."
    ),
    "already_booked": N_(
        "They already have a booking for this dose. Do not book again: change that booking instead."
    ),
    "dose_rule": N_("This time does not fit the dose rules (the days needed between doses)."),
    "later_dose": N_(
        "A later dose is booked after this one. Cancel or change the later dose first."
    ),
    "identity_refused": N_(
        "The voucher number and the date of birth do not match the registry. Check both "
        "with the caller."
    ),
    "too_many_attempts": N_("Too many attempts. Wait a few minutes, then try again."),
    "busy": N_("The service is busy. Nothing was booked or lost; try again in a moment."),
    "not_found": N_("This time or event is no longer available. Choose again."),
    "no_booking": N_("We could not find this booking."),
    "booking_state": N_("This booking cannot be changed any more."),
    "household_full": N_("You can add up to 3 family members."),
    "conflict": N_("Something changed in the meantime. Check the bookings below, then try again."),
    "call_gone": N_(
        "That call is no longer open (it was ended, or the console was left idle). Find the "
        "caller again."
    ),
    # Steps that went well.
    "cancelled": N_("The booking is cancelled. The place has gone back to others."),
    "released": N_("The kept time is released. Nothing was booked."),
    "member_added": N_("The family member is added. You can now book for them."),
    "call_ended": N_("The call is ended. You can find the next caller."),
}
SUCCESS = frozenset({"cancelled", "released", "member_added", "call_ended"})
# Refusals that mean the same thing to the person on the phone.
SAME_AS = {"idempotency_key_reused": "conflict"}


def notice_code(exc: errors.AppError) -> str:
    code = SAME_AS.get(exc.code, exc.code)
    return code if code in NOTICES else "busy" if exc.status >= 500 else code


def notice(lang: str, code: str | None) -> dict[str, Any] | None:
    """The sentence a notice code stands for, and whether it is good news; None for none."""
    text = NOTICES.get(code or "")
    if text is None:
        return None
    return {"text": tr(lang, text), "ok": code in SUCCESS, "code": code}


@dataclass(frozen=True, slots=True)
class Here:
    """The call a page works on and the person of it the page is for."""

    call: Call
    index: int
    person: Person
    actor: Actor

    @property
    def who(self) -> str | None:
        """``who`` for links: absent for the caller themself."""
        return str(self.index) if self.index else None

    @property
    def resident(self) -> Resident:
        return operator.caller(self.actor, self.person.voucher)

    def url(self, path: str, lang: str, **params: Any) -> str:
        return link(path, c=self.call.call_id, who=self.who, **params, lang=lang)

    def caller_url(self, lang: str, **params: Any) -> str:
        return self.url(CALL, lang, **params)

    def hidden(self) -> dict[str, str]:
        """The fields every form of the call carries (no birth date: the call id)."""
        return {"c": self.call.call_id, **({"who": self.who} if self.who else {})}

    def bar(self, lang: str) -> dict[str, str | Markup]:
        """Who the page is for, shown at the top of every page of the call: the operator
        reads it back without going back a step."""
        return {
            "role": tr(lang, N_("Caller") if self.index == 0 else N_("Household member")),
            "voucher": self.person.voucher,
            "born": birth_label(self.person.born, lang),
            "event": self.call.event_name(lang),
        }


async def here(request: Request, console: Console, fields: Form) -> Here:
    call = await find_call(ctx_of(request), console, fields.get("c"))
    if call is None:
        raise CallGone()
    index, person = call.person(fields.opt("who"))
    return Here(call, index, person, operator.operator_actor(console.claims))


def search_of(fields: Form) -> dict[str, str]:
    """The caller's page's search, as a form or query carries it."""
    return {name: fields.get(name)[:100] for name in SEARCH_FIELDS if fields.get(name)}


def back(h: Here, f: Form, lang: str, code: str, **params: Any) -> Response:
    """Back to the caller's page as it was (the change in progress, the search), with the
    sentence for ``code``."""
    return see_other(
        h.caller_url(lang, replaces=f.opt("replaces"), notice=code, **params, **search_of(f))
    )


def birth_label(born: date, lang: str) -> Markup:
    """A birth date as an operator reads it back, with its era (callers often say it so):
    1950年4月1日（昭和25年） / 1 Apr 1950 (昭和25, marked as Japanese)."""
    era = era_of(born.year, born)
    if lang == "ja":
        return Markup("{}年{}月{}日（{}年）").format(born.year, born.month, born.day, era)
    return Markup('{} {} {} (<span lang="ja">{}</span>)').format(
        born.day, MONTHS_EN[born.month - 1], born.year, era
    )


def operator_page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A page of the call-centre console (roles operator and admin; signed in, CSRF:
    booking.console.common). A step refused for a reason the operator can act on goes
    back to the caller's page with words; a call that is gone goes to the find page."""

    @functools.wraps(handler)
    async def guarded(request: Request, fields: Form, lang: str, console: Console) -> Response:
        try:
            return await handler(request, fields, lang, console)
        except CallGone:
            return see_other(link(FIND, notice="call_gone", lang=lang))
        except errors.AppError as exc:
            return problem(request, fields, lang, exc, console)

    return console_page(*ROLES)(guarded)


def problem(
    request: Request, fields: Form, lang: str, exc: errors.AppError, console: Console
) -> Response:
    """What went wrong in words, with the ways on: the same page again (a GET), the
    caller's page (when there is a call), finding a caller."""
    code = notice_code(exc)
    text = NOTICES.get(code)
    message = tr(lang, text) if text else exc.message_ja if lang == "ja" else exc.message_en
    call_id = fields.get("c")
    response = render(
        request,
        "staff_operator_problem.html",
        lang,
        {
            "title": message,
            "message": message,
            "again": str(request.url) if request.method == "GET" and code == "busy" else None,
            "caller": link(CALL, c=call_id, who=fields.opt("who"), lang=lang) if call_id else None,
            "find": link(FIND, lang=lang),
        },
        console,
        status=exc.status,
    )
    response.headers.update(exc.headers)
    return response
