"""What every resident page shares: language, rendering, headers, links, dates, forms.

The pages are server-rendered and work without JavaScript and without cookies: the
session travels in the URL (``s=``) and in a hidden form field, as the waitroom's ticket
does. It does not leak through the Referer (``Referrer-Policy: no-referrer``), pages are
not stored by caches or the back/forward cache (``Cache-Control: no-store``), the session
ends by itself after ``BOOKING_SESSION_TTL_S`` and "finish" ends it at once; a URL left in
the browser's history names a session that no longer grants anything. Because the session
is in every form, a form posted from another site cannot act for the resident (it does
not know the session).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import PackageLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from booking import errors
from booking.domain import Clinic
from booking.http import JST, ctx_of
from machiai import i18n
from machiai.i18n import N_, tr
from machiai.pages import SECURITY_HEADERS as SECURITY_HEADERS  # the pages' own, re-exported
from machiai.pages import Asset, static_routes

MAX_FORM_BYTES = 16 * 1024
WEEKDAYS_JA = "月火水木金土日"
WEEKDAYS_EN = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

ENV = i18n.environment(PackageLoader("booking", "templates"))


def _asset(name: str, media_type: str) -> Asset:
    return Asset.packaged("booking", name, media_type)


CSS = _asset("resident.css", "text/css; charset=utf-8")
JS = _asset("resident.js", "text/javascript; charset=utf-8")


def asset_routes() -> list[Route]:
    return static_routes(CSS, JS)


class Form:
    """A posted form (application/x-www-form-urlencoded), bounded in size, or the query."""

    def __init__(self, values: Mapping[str, list[str]]) -> None:
        self.values = values

    def get(self, name: str, default: str = "") -> str:
        found = self.values.get(name)
        return found[0][:500] if found else default

    def opt(self, name: str) -> str | None:
        value = self.get(name)
        return value or None


async def form(request: Request) -> Form:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise errors.BodyTooLarge()
    return Form(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))


def query(request: Request) -> Form:
    """The query string's fields, parsed once per request (from the raw ASGI scope)."""
    cached: Form | None = request.scope.get("machiai.query")
    if cached is None:
        raw = request.scope.get("query_string", b"").decode("latin-1")
        cached = Form(parse_qs(raw, keep_blank_values=True))
        request.scope["machiai.query"] = cached
    return cached


def language(request: Request, given: str | None = None) -> str:
    return i18n.choose(
        given or query(request).opt("lang"), request.headers.get("accept-language", "")
    )


Page = Callable[[Request, Form, str], Awaitable[Response]]


def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page endpoint. The handler gets the fields (the posted form, or the query of a
    GET) and the language they or the browser ask for; a refusal it does not turn into a
    next step itself becomes the problem page in that language, whatever raised it (the
    form too large, the session, a service): never JSON, never a 500."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        lang = language(request)
        try:
            fields = await form(request) if request.method == "POST" else query(request)
            lang = language(request, fields.opt("lang"))
            return await handler(request, fields, lang)
        except errors.AppError as exc:
            return problem(request, lang, exc)

    return endpoint


_PLAIN = re.compile(r"[A-Za-z0-9._~-]*")


def link(path: str, **params: Any) -> str:
    """``path`` with the non-empty parameters, in a stable order. Values that need no
    escaping (session tokens, ids, codes) are not run through the escaper: pages build
    a dozen links each."""
    parts = []
    for name, value in params.items():
        if value is None or value == "":
            continue
        text = str(value)
        parts.append(f"{name}={text if _PLAIN.fullmatch(text) else quote(text, safe='')}")
    return f"{path}?{'&'.join(parts)}" if parts else path


def render(
    request: Request,
    template: str,
    lang: str,
    context: Mapping[str, Any],
    status: int = 200,
) -> HTMLResponse:
    """The page in ``lang``, with the switch to the other language keeping the resident
    where they are (same path and parameters)."""
    other = "en" if lang == "ja" else "ja"
    params = {k: v[0] for k, v in query(request).values.items() if k != "lang"}
    settings = ctx_of(request).settings
    html = i18n.render(
        ENV,
        template,
        lang,
        {
            **context,
            "phone": settings.phone,
            "other_lang": other,
            "other_lang_url": link(request.url.path, **params, lang=other),
        },
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def see_other(url: str) -> RedirectResponse:
    """POST → 303 → GET: a reload never submits twice."""
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def day(value: datetime, lang: str) -> str:
    """The date with its weekday, in Japan time: 2026年12月2日（水） / Wed 2 Dec 2026."""
    return day_label(value.astimezone(JST).date(), lang)


@functools.lru_cache(maxsize=4096)
def day_label(local: date, lang: str) -> str:
    if lang == "ja":
        return f"{local.year}年{local.month}月{local.day}日（{WEEKDAYS_JA[local.weekday()]}）"
    return f"{WEEKDAYS_EN[local.weekday()]} {local.day} {MONTHS_EN[local.month - 1]} {local.year}"


def clock(value: datetime) -> str:
    """The time of day in Japan time, without seconds: 9:00."""
    local = value.astimezone(JST)
    return f"{local.hour}:{local.minute:02d}"


def parse_time(raw: str) -> datetime:
    return datetime.fromisoformat(raw)


def _page_globals() -> None:
    """What every template may use, bound once per language (macros see it too)."""
    for lang, env in ENV.envs.items():
        env.globals.update(
            css=CSS.path,
            js=JS.path,
            day=functools.partial(_day_in, lang=lang),
            status_label=functools.partial(_status_in, lang=lang),
            clock=clock,
            link=link,
            masked=masked,
            clinic_name=clinic_name,
        )


def _day_in(value: datetime, lang: str) -> str:
    return day(value, lang)


def _status_in(status: str, lang: str) -> str:
    return tr(lang, STATUS_LABELS.get(str(status), str(status)))


def masked(voucher: str | None) -> str:
    """A voucher number as pages show it: only the last four digits (a shared screen or a
    printed page does not give the whole number away)."""
    return "" if not voucher else "＊" * 6 + voucher[-4:]


def clinic_name(clinic: Clinic | None, lang: str) -> str:
    if clinic is None:
        return ""
    return clinic.name_ja if lang == "ja" else clinic.name_en


STATUS_LABELS = {
    "confirmed": N_("Booked"),
    "cancelled": N_("Cancelled"),
    "attended": N_("Vaccinated"),
    "no_show": N_("Did not come"),
}

# What a refusal means to a resident, in plain words, and what to do next.
NOTICES = {
    "slot_full": N_("This time has just been taken. Please choose another time."),
    "slot_closed": N_("This time is no longer offered. Please choose another time."),
    "slot_not_bookable": N_("This time cannot be booked now. Please choose another time."),
    "hold_expired": N_("The time we kept for you has run out. Please choose a time again."),
    "hold_exists": N_("You are already holding a time. Please confirm it or choose another."),
    "already_booked": N_("This person already has a booking for this dose."),
    "dose_rule": N_("This time does not fit the dose rules (the days needed between doses)."),
    "hold_extended_before": N_("The time can be extended only once."),
    "household_full": N_("You can add up to 3 family members."),
    "booking_state": N_("This booking cannot be changed any more."),
    "no_booking": N_("We could not find this booking."),
    "cancelled": N_("The booking is cancelled. The place has gone back to others."),
    "member_added": N_("The family member is added. You can now book for them."),
}

PROBLEMS: dict[str, tuple[str, str]] = {
    "session_expired": (
        N_("Your booking time has ended"),
        N_("For your safety a booking page works for a limited time. Please start again."),
    ),
    "not_admitted": (
        N_("Please join the line first"),
        N_(
            "To book or change a time, please join the waiting room's line. "
            "When nobody is waiting you go straight through."
        ),
    ),
    "pass_invalid": (
        N_("This link to booking is no longer valid"),
        N_(
            "Your turn in the line has expired or the link was changed. Please join the line again."
        ),
    ),
    "pass_used": (
        N_("This link to booking has already been used"),
        N_(
            "Each turn in the line opens booking once. Please join the line again, or see your "
            "bookings under “My bookings”."
        ),
    ),
    "too_many_attempts": (
        N_("Too many attempts"),
        N_("For your safety please wait a few minutes before trying again, or phone us."),
    ),
    "busy": (
        N_("The service is busy"),
        N_("Nothing you entered is lost. Please try again in a moment."),
    ),
    "body_too_large": (
        N_("What was sent is too large"),
        N_("Please go back, check what you entered and send it again."),
    ),
    "not_found": (
        N_("We could not find this page"),
        N_("The link may be incomplete. Please start from the first page."),
    ),
}


def problem(request: Request, lang: str, exc: errors.AppError) -> HTMLResponse:
    """A page that says what happened and what to do next: never a stack trace, never a
    JSON blob, never a dead end."""
    heading, message = PROBLEMS.get(exc.code, ("", ""))
    if heading:
        heading, message = tr(lang, heading), tr(lang, message)
    else:
        heading = exc.message_ja if lang == "ja" else exc.message_en
        fallback = N_("Please go back and try again.")
        message = tr(lang, NOTICES.get(exc.code, fallback))
    retry = exc.code == "busy"
    next_url = str(request.url) if retry and request.method == "GET" else link("/", lang=lang)
    next_label = tr(
        lang, N_("Try again") if retry and request.method == "GET" else N_("Start page")
    )
    response = render(
        request,
        "problem.html",
        lang,
        {
            "title": heading,
            "heading": heading,
            "message": message,
            "next_url": next_url,
            "next_label": next_label,
        },
        status=exc.status,
    )
    response.headers.update(exc.headers)
    return response


def notice(lang: str, code: str | None) -> str:
    text = NOTICES.get(code or "")
    return "" if text is None else tr(lang, text)


_page_globals()
