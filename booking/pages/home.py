"""``/``: what this service is, the events open for booking, and the phone number."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking.http import ctx_of
from booking.pages.common import Form, page, render
from booking.services import bookings
from machiai.i18n import N_, tr


@page
async def home(request: Request, q: Form, lang: str) -> Response:
    ctx = ctx_of(request)
    events = await bookings.open_events(ctx)
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
