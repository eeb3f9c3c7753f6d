"""What every staff console page shares: the session cookie, CSRF, roles, rendering.

Unlike the residents' pages (session in the URL), consoles sign in with a cookie:
``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page or form
sends it), ``Secure`` outside development, ``Path=/staff``. Every form carries the
session's CSRF secret as ``csrf`` and a POST without the right one changes nothing
(403), whatever the cookie says. Forms work without JavaScript: POST → 303 → GET.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from booking import errors
from booking.http import ctx_of, staff_generations, tokens_of
from booking.pages.common import ENV, MAX_FORM_BYTES, Form, form, language, link, query
from booking.services import console as console_service
from booking.services.console import Console
from machiai import i18n
from machiai.i18n import N_, tr
from machiai.pages import SECURITY_HEADERS, Asset, static_routes

COOKIE = "machiai_staff"
# The sign-in form's own CSRF secret, before any session exists (double-submit: the
# cookie and the form field must match, and another site can set neither).
SIGNIN_COOKIE = "machiai_staff_signin"
COOKIE_PATH = "/staff"

CSS = Asset.packaged("booking", "staff.css", "text/css; charset=utf-8")
JS = Asset.packaged("booking", "staff.js", "text/javascript; charset=utf-8")

ROLE_LABELS = {
    "admin": N_("Administrator"),
    "operator": N_("Call-centre operator"),
    "clinic": N_("Clinic staff"),
}

# Where each role works; the console's navigation, in this order.
SECTIONS: dict[str, list[tuple[str, str]]] = {
    "clinic": [
        ("/staff", N_("Home")),
        ("/staff/clinic/day", N_("Bookings of the day")),
        ("/staff/clinic/slots", N_("Times and places")),
        ("/staff/clinic/plan", N_("Publish a weekly plan")),
        ("/staff/clinic/import", N_("Import times from a CSV")),
    ],
    "operator": [("/staff", N_("Home")), ("/staff/operator", N_("Phone bookings"))],
    "admin": [
        ("/staff", N_("Home")),
        ("/staff/admin/events", N_("Events")),
        ("/staff/operator", N_("Phone bookings")),
        ("/staff/admin/registry", N_("Eligibility registry")),
        ("/staff/admin/staff", N_("Staff accounts")),
        ("/staff/admin/audit", N_("Audit log")),
        ("/staff/admin/delivery", N_("Messages to residents")),
        ("/staff/admin/export", N_("Vaccination ledger")),
    ],
}

Handler = Callable[[Request, Form, str, Console], Awaitable[Response]]


def asset_routes() -> list[Any]:
    return static_routes(CSS, JS)


def secure_cookies(request: Request) -> bool:
    """Secure cookies outside development (a development run serves plain HTTP)."""
    return bool(ctx_of(request).settings.core.production)


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=secure_cookies(request)
    )


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def signin_url(request: Request, lang: str) -> str:
    """The sign-in page, coming back here afterwards (a GET page only: a form's POST is not
    replayed)."""
    back = request.url.path if request.method == "GET" else "/staff"
    if request.url.query and request.method == "GET":
        back += "?" + request.url.query
    return link("/staff/signin", next=back, lang=lang)


def safe_next(raw: str | None) -> str:
    """Only a console path of this site (an open redirect would send staff elsewhere)."""
    if raw and raw.startswith("/staff") and "//" not in raw and "\\" not in raw:
        return raw
    return "/staff"


class LongForm(Form):
    """A posted form whose fields may be long (``text`` gives one whole; ``get`` still cuts
    at 500 characters, as every form does)."""

    def text(self, name: str) -> str:
        found = self.values.get(name)
        return found[0] if found else ""


async def _fields(request: Request, max_bytes: int) -> Form:
    if request.method != "POST":
        return query(request)
    if max_bytes <= MAX_FORM_BYTES:
        return await form(request)
    body = await request.body()
    if len(body) > max_bytes:
        raise errors.BodyTooLarge()
    try:
        values = parse_qs(
            body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50
        )
    except ValueError:  # more fields than any console form has: not one of ours
        raise errors.BadRequest() from None
    return LongForm(values)


async def resume_console(
    request: Request, *roles: str, lang: str | None = None
) -> Console | Response:
    """The signed-in console of one of ``roles`` (else 403), or the way to the sign-in page."""
    lang = lang or language(request)
    sent = request.cookies.get(COOKIE, "")
    console = await console_service.resume(
        ctx_of(request), tokens_of(request), staff_generations(request), sent
    )
    if console is None:
        response: Response = see_other(signin_url(request, lang))
        # Only a cookie that was sent and names nothing is cleared: a request from another
        # site (which the strict cookie does not go with) must not sign the staff member out.
        if sent:
            clear_cookie(request, response, COOKIE)
        return response
    if console.claims.role not in roles:
        raise errors.Forbidden()
    return console


def console_page(
    *roles: str, max_bytes: int = MAX_FORM_BYTES
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A console page for ``roles``: signed in (else the sign-in page), the right role
    (else 403), a POST with the session's CSRF secret (else 403, nothing done); a refusal
    becomes the console's problem page, never JSON, never a 500. A page taking a long text
    (a pasted CSV) sets ``max_bytes`` and gets a :class:`LongForm`."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            lang = language(request)
            try:
                fields = await _fields(request, max_bytes)
                lang = language(request, fields.opt("lang"))
                console = await resume_console(request, *roles, lang=lang)
                if isinstance(console, Response):
                    return console
                if request.method == "POST" and not console.csrf_ok(fields.get("csrf")):
                    return problem(request, lang, CsrfRefused(), console)
                return await handler(request, fields, lang, console)
            except errors.AppError as exc:
                return problem(request, lang, exc)

        return endpoint

    return wrap


class CsrfRefused(errors.AppError):
    code = "csrf_refused"
    status = 403
    message_ja = "このフォームは無効です。ページを開き直してからもう一度送信してください。"
    message_en = "This form has expired. Please open the page again and send it again."


def render(
    request: Request,
    template: str,
    lang: str,
    context: Mapping[str, Any],
    console: Console | None = None,
    status: int = 200,
) -> HTMLResponse:
    """A console page in ``lang``: the navigation of the console's role, who is signed in,
    and the language switch keeping the page."""
    other = "en" if lang == "ja" else "ja"
    params = {k: v[0] for k, v in query(request).values.items() if k != "lang"}
    html = i18n.render(
        ENV,
        template,
        lang,
        {
            **context,
            "staff_css": CSS.path,
            "staff_js": JS.path,
            "console": console,
            "role_label": tr(lang, ROLE_LABELS[console.claims.role]) if console else "",
            "sections": [
                (path, tr(lang, label), request.url.path == path)
                for path, label in (SECTIONS[console.claims.role] if console else [])
            ],
            "other_lang": other,
            "other_lang_url": link(request.url.path, **params, lang=other),
        },
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def problem(
    request: Request, lang: str, exc: errors.AppError, console: Console | None = None
) -> HTMLResponse:
    """What went wrong, in plain words, and the way back."""
    message = exc.message_ja if lang == "ja" else exc.message_en
    response = render(
        request,
        "staff_problem.html",
        lang,
        {"title": message, "message": message, "back": link("/staff", lang=lang)},
        console,
        status=exc.status,
    )
    response.headers.update(exc.headers)
    return response
