"""``/``: what this service is, the events open for booking, and the phone number."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import errors
from booking.pages.common import ctx_of, language, problem, render
from booking.services import bookings
from machiai.i18n import N_, tr


async def home(request: Request) -> Response:
    lang = language(request)
    ctx = ctx_of(request)
    try:
        events = await bookings.open_events(ctx)
    except errors.AppError as exc:
        return problem(request, lang, exc)
    return render(
        request,
        "home.html",
        lang,
        {
            "title": tr(lang, N_("Vaccination booking")),
            "events": events,
            "now": datetime.now(UTC),
            "waitroom_url": ctx.settings.waitroom_url,
        },
    )


def routes() -> list[Route]:
    return [Route("/", home, methods=["GET"])]
