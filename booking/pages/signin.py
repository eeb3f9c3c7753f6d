"""Who the resident is: voucher number and birth date, checked against the registry.

Three doors, one form: ``/enter`` (arriving from the line with an admission pass: may
book), ``/mine`` (seeing, changing and cancelling bookings without queueing), and
``/book/household`` (adding a family member to book for). Every identity failure gets
the same answer, and attempts are throttled per client and per voucher, exactly as the
JSON API's sign-in.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import errors
from booking.http import ctx_of, tokens_of
from booking.pages.common import Form, link, notice, page, render, see_other
from booking.pages.forms import FormErrors, birth_date, era_of, voucher_number, western_year
from booking.pages.session import current_session, nav
from booking.services import sessions
from machiai.i18n import N_, tr

log = logging.getLogger("booking.pages.signin")

IDENTITY_REFUSED = N_(
    "We could not confirm this voucher number with this date of birth. Please check both "
    "against your voucher. If they are right, please phone us."
)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _values(f: Form) -> dict[str, str]:
    return {name: f.get(name) for name in ("voucher", "year", "month", "day")}


def _era(values: dict[str, str]) -> str:
    year = western_year(values.get("year", "")) if values.get("year") else None
    return era_of(year) if year is not None and 1868 <= year <= 2100 else ""


def _read(f: Form) -> tuple[str, date | None, FormErrors]:
    problems = FormErrors()
    voucher = voucher_number(f.get("voucher"), problems)
    born = birth_date(f.get("year"), f.get("month"), f.get("day"), problems)
    return voucher, born, problems


def _form_page(
    request: Request,
    lang: str,
    *,
    title: str,
    action: str,
    hidden: dict[str, str],
    button: str,
    values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    intro: str = "",
    after: str = "",
    status: int = 200,
    extra: dict[str, Any] | None = None,
) -> Response:
    values = values or {}
    return render(
        request,
        "signin.html",
        lang,
        {
            "title": title,
            "heading": title,
            "intro": intro,
            "after": after,
            "action": action,
            "hidden": hidden,
            "button": button,
            "values": values,
            "problems": problems or {},
            "era": _era(values),
            **(extra or {}),
        },
        status=status,
    )


# -- /enter: arriving from the line -----------------------------------------------------
def _enter_page(request: Request, lang: str, pass_token: str, **kw: Any) -> Response:
    return _form_page(
        request,
        lang,
        title=tr(lang, N_("Enter your voucher number and date of birth")),
        action="/enter",
        hidden={"pass": pass_token},
        button=tr(lang, N_("Continue")),
        intro=tr(lang, N_("It is your turn. We check who you are, then you choose a time.")),
        **kw,
    )


@page
async def enter(request: Request, q: Form, lang: str) -> Response:
    pass_token = q.get("pass")
    if not sessions.pass_looks_valid(ctx_of(request), tokens_of(request), pass_token):
        # Said before the resident types anything (a signature check, no round trip).
        raise errors.PassInvalid()
    # With the waitroom's request id (machiai/request_id.py): where its log and ours meet.
    log.info("a resident arrived from the waitroom with a pass")
    return _enter_page(request, lang, pass_token)


async def _sign_in(
    f: Form,
    again: Callable[..., Response],
    attempt: Callable[[str, date], Awaitable[str]],
) -> Response:
    """The three doors' shared steps: read the form (every problem next to its field), try
    the identity (one answer for every identity failure), go on to where ``attempt`` says.
    ``again`` shows the door's form once more."""
    voucher, born, problems = _read(f)
    if problems or born is None:
        return again(values=_values(f), problems=problems.problems, status=422)
    try:
        url = await attempt(voucher, born)
    except errors.IdentityRefused:
        return again(values=_values(f), problems={"voucher": IDENTITY_REFUSED}, status=403)
    return see_other(url)


@page
async def enter_post(request: Request, f: Form, lang: str) -> Response:
    pass_token = f.get("pass")

    async def attempt(voucher: str, born: date) -> str:
        opened = await sessions.start_session(
            ctx_of(request), tokens_of(request), pass_token, voucher, born, _client(request)
        )
        return link("/book/slots", s=opened.token, lang=lang)

    return await _sign_in(f, functools.partial(_enter_page, request, lang, pass_token), attempt)


# -- /mine: my bookings without queueing ------------------------------------------------
def _mine_page(request: Request, lang: str, event_id: str, **kw: Any) -> Response:
    return _form_page(
        request,
        lang,
        title=tr(lang, N_("See, change or cancel my booking")),
        action="/mine",
        hidden={"event": event_id},
        button=tr(lang, N_("Show my bookings")),
        intro=tr(lang, N_("You do not need to wait in line to see or cancel a booking.")),
        **kw,
    )


@page
async def mine(request: Request, q: Form, lang: str) -> Response:
    event_id = q.get("event")
    if not event_id:
        return see_other(link("/", lang=lang))
    return _mine_page(request, lang, event_id)


@page
async def mine_post(request: Request, f: Form, lang: str) -> Response:
    event_id = f.get("event")

    async def attempt(voucher: str, born: date) -> str:
        opened = await sessions.start_lookup(
            ctx_of(request), tokens_of(request), event_id, voucher, born, _client(request)
        )
        return link("/book/mine", s=opened.token, lang=lang)

    return await _sign_in(f, functools.partial(_mine_page, request, lang, event_id), attempt)


# -- /book/household: a family member to book for ---------------------------------------
def _household_page(request: Request, lang: str, token: str, **kw: Any) -> Response:
    return _form_page(
        request,
        lang,
        title=tr(lang, N_("Add a family member")),
        action="/book/household",
        hidden={"s": token},
        button=tr(lang, N_("Add this person")),
        intro=tr(
            lang,
            N_(
                "You can book for up to 3 family members. Each has their own voucher; "
                "enter their voucher number and date of birth."
            ),
        ),
        **kw,
    )


@page
async def household(request: Request, q: Form, lang: str) -> Response:
    token, session = await current_session(request, q)
    return _household_page(
        request,
        lang,
        token,
        extra={
            "nav": nav(token, session, lang),
            "notice": notice(lang, q.opt("notice")),
        },
    )


@page
async def household_post(request: Request, f: Form, lang: str) -> Response:
    token, session = await current_session(request, f)

    async def attempt(voucher: str, born: date) -> str:
        try:
            grown_token, grown = await sessions.add_member(
                ctx_of(request), tokens_of(request), session, voucher, born, _client(request)
            )
        except errors.HouseholdFull:
            return link("/book/mine", s=token, notice="household_full", lang=lang)
        if grown.admitted:
            return link("/book/slots", s=grown_token, who=voucher, notice="member_added", lang=lang)
        return link("/book/mine", s=grown_token, notice="member_added", lang=lang)

    again = functools.partial(
        _household_page, request, lang, token, extra={"nav": nav(token, session, lang)}
    )
    return await _sign_in(f, again, attempt)


def routes() -> list[Route]:
    return [
        Route("/enter", enter, methods=["GET"]),
        Route("/enter", enter_post, methods=["POST"]),
        Route("/mine", mine, methods=["GET"]),
        Route("/mine", mine_post, methods=["POST"]),
        Route("/book/household", household, methods=["GET"]),
        Route("/book/household", household_post, methods=["POST"]),
    ]
