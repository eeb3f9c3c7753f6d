"""The booking is made: the confirmation panel, where messages about it will go, and a way
to give (or change) that e-mail address afterwards.

The address is the resident's own choice, optional everywhere: on the review page with the
confirm (booking.pages.book), or here later. Setting it is authorized by the resident's
booking session and touches only their own active booking (booking.services.contact).
"""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking.http import ctx_of
from booking.pages.common import Form, link, page, render, see_other
from booking.pages.session import nav, shown_booking
from booking.services import contact as contact_service
from booking.services.availability import Availability
from booking.services.confirm import Contact
from machiai import contact as contact_rules
from machiai.i18n import N_, tr

EMAIL_PROBLEM = N_("Enter an e-mail address such as taro@example.jp, or leave the box empty.")
EMAIL_MISSING = N_("Enter an e-mail address such as taro@example.jp.")
# The review page's fields a language switch (or a reload) takes back to the review.
REVIEW_FIELDS = ("s", "h", "who", "replaces")


def email_choice(typed: str, lang: str) -> Contact | None:
    """The address typed on a page (empty: none), in the page's language; None when what
    was typed is not an address (the page says so and keeps it)."""
    if not typed.strip():
        return Contact(None, contact_rules.locale(lang))
    email = contact_rules.email_address(typed)
    return None if email is None else Contact(email, contact_rules.locale(lang))


def keep_query(request: Request, fields: Form) -> None:
    """A page rendered from a POST (a refused address) offers its language switch as a GET
    of the same path with the review's fields: GET /book/confirm leads back to the review."""
    kept = {name: [fields.get(name)] for name in REVIEW_FIELDS if fields.get(name)}
    request.scope["machiai.query"] = Form(kept)


@page
async def confirm_get(request: Request, q: Form, lang: str) -> Response:
    """A GET of the confirm (the language switch of a review shown again): the review."""
    return see_other(link("/book/review", lang=lang, **{n: q.opt(n) for n in REVIEW_FIELDS}))


async def _done_page(
    request: Request,
    q: Form,
    lang: str,
    *,
    typed: str = "",
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    ctx = ctx_of(request)
    shown = await shown_booking(request, q)
    booking = shown.booking
    avail: Availability = request.app.state.availability
    clinic = (await avail.clinics(ctx, [booking["clinic_id"]])).get(booking["clinic_id"])
    contact = await contact_service.contact_of(ctx, shown.resident, booking["booking_id"])
    return render(
        request,
        "done.html",
        lang,
        {
            "title": tr(lang, N_("Your booking is confirmed")),
            "nav": nav(shown.token, shown.session, lang),
            "s": shown.token,
            "who": shown.resident.voucher,
            "booking": booking,
            "starts_at": datetime.fromisoformat(booking["starts_at"]),
            "clinic": clinic,
            "changed": q.get("changed") == "1",
            "contact_email": contact.email,
            "saved": q.get("saved") == "1",
            "active": booking["status"] == "confirmed",
            "email": typed,
            "problems": problems or {},
        },
        status=status,
    )


@page
async def done(request: Request, q: Form, lang: str) -> Response:
    return await _done_page(request, q, lang)


@page
async def contact_post(request: Request, f: Form, lang: str) -> Response:
    """Give (or change) the address messages about this booking go to."""
    typed = f.get("email")
    choice = email_choice(typed, lang)
    if choice is None or choice.email is None:
        # The done page again, with what was typed and why; the language switch goes to
        # the done page of the same booking.
        request.scope["machiai.query"] = Form(
            {n: [f.get(n)] for n in ("s", "b", "who", "changed") if f.get(n)}
        )
        problem = EMAIL_PROBLEM if choice is None else EMAIL_MISSING
        problems = {"email": problem}
        return await _done_page(request, f, lang, typed=typed, problems=problems, status=422)
    shown = await shown_booking(request, f)
    await contact_service.set_contact(
        ctx_of(request), shown.resident, shown.booking["booking_id"], choice
    )
    return see_other(
        link(
            "/book/done",
            s=shown.token,
            b=shown.booking["booking_id"],
            who=f.opt("who"),
            changed=f.opt("changed"),
            saved="1",
            lang=lang,
        )
        + "#contact"
    )


def routes() -> list[Route]:
    return [
        Route("/book/done", done, methods=["GET"]),
        Route("/book/contact", contact_post, methods=["POST"]),
        Route("/book/confirm", confirm_get, methods=["GET"]),
    ]
