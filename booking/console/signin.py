"""Staff sign-in, sign-out and the console's home page.

GET  /staff/signin    the form (login, password)
POST /staff/signin    → 303 to the page asked for, with the session cookie
POST /staff/signout   → 303 to the sign-in page; this browser's session ends at once
GET  /staff           the home page of the staff member's role
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import errors, http
from booking.console.common import (
    COOKIE,
    SIGNIN_COOKIE,
    CsrfRefused,
    clear_cookie,
    console_page,
    problem,
    render,
    safe_next,
    see_other,
    set_cookie,
)
from booking.http import ctx_of, staff_generations, tokens_of
from booking.pages.common import Form, form, language, link, query
from booking.services import console as console_service
from booking.services.console import Console
from machiai.i18n import N_, tr

ALL_ROLES = ("admin", "operator", "clinic")
# The sign-in form is good for this long (its double-submit cookie's lifetime).
SIGNIN_FORM_S = 3600


def _signin_form(
    request: Request,
    lang: str,
    *,
    next_url: str,
    login: str = "",
    problems: dict[str, str] | None = None,
    notice: str = "",
    status: int = 200,
) -> Response:
    secret = secrets.token_urlsafe(32)
    response = render(
        request,
        "staff_signin.html",
        lang,
        {
            "title": tr(lang, N_("Staff sign-in")),
            "csrf": secret,
            "next": next_url,
            "login": login,
            "problems": problems or {},
            "notice": notice,
        },
        status=status,
    )
    set_cookie(request, response, SIGNIN_COOKIE, secret, max_age=SIGNIN_FORM_S)
    return response


async def signin_page(request: Request) -> Response:
    q = query(request)
    lang = language(request, q.opt("lang"))
    next_url = safe_next(q.opt("next"))
    try:
        current = await console_service.resume(
            ctx_of(request),
            tokens_of(request),
            staff_generations(request),
            request.cookies.get(COOKIE, ""),
        )
    except errors.AppError as exc:
        return problem(request, lang, exc)
    if current is not None:
        return see_other(next_url)
    notice = tr(lang, N_("You are signed out.")) if q.opt("signed_out") else ""
    return _signin_form(request, lang, next_url=next_url, notice=notice)


async def signin(request: Request) -> Response:
    lang = language(request)
    try:
        fields = await form(request)
        lang = language(request, fields.opt("lang"))
        # Double-submit: the form's secret must be the one this browser was given with it.
        expected = request.cookies.get(SIGNIN_COOKIE, "")
        given = fields.get("csrf")
        if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
            return problem(request, lang, CsrfRefused())
        next_url = safe_next(fields.opt("next"))
        login, password = fields.get("login").strip()[:64], fields.get("password")
        problems: dict[str, str] = {}
        if not login:
            problems["login"] = N_("Enter your login name.")
        if not password:
            problems["password"] = N_("Enter your password.")
        if problems:
            return _signin_form(
                request, lang, next_url=next_url, login=login, problems=problems, status=422
            )
        try:
            console = await console_service.sign_in(
                ctx_of(request), tokens_of(request), login, password[:200],
                http.client_address(request),
            )  # fmt: skip
        except errors.LoginRefused:
            refused = N_("The login name or the password is not right.")
            return _signin_form(
                request,
                lang,
                next_url=next_url,
                login=login,
                problems={"password": refused},
                status=401,
            )
    except errors.AppError as exc:
        return problem(request, lang, exc)
    response = see_other(next_url + ("&" if "?" in next_url else "?") + f"lang={lang}")
    set_cookie(request, response, COOKIE, console.session_id)
    clear_cookie(request, response, SIGNIN_COOKIE)
    return response


@console_page(*ALL_ROLES)
async def signout(request: Request, fields: Form, lang: str, console: Console) -> Response:
    await console_service.sign_out(ctx_of(request), console)
    response = see_other(link("/staff/signin", signed_out="1", lang=lang))
    clear_cookie(request, response, COOKIE)
    return response


@console_page(*ALL_ROLES)
async def home(request: Request, fields: Form, lang: str, console: Console) -> Response:
    return render(
        request,
        "staff_home.html",
        lang,
        {"title": tr(lang, N_("Staff console"))},
        console,
    )


def routes() -> list[Route]:
    return [
        Route("/staff", home, methods=["GET"]),
        Route("/staff/signin", signin_page, methods=["GET"]),
        Route("/staff/signin", signin, methods=["POST"]),
        Route("/staff/signout", signout, methods=["POST"]),
    ]
