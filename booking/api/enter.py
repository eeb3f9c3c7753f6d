"""``/enter?pass=…``: the small, accessible Japanese-first page admitted residents land on.

It opens a session (voucher + birth date), lists bookable slots and books one,
all through the JSON API; without JavaScript it explains what is needed.
"""

from __future__ import annotations

import html
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

_PAGE = resources.files("booking.api").joinpath("enter.html").read_text(encoding="utf-8")


async def enter(request: Request) -> Response:
    token = request.query_params.get("pass", "")[:1000]
    page = _PAGE.replace("{{PASS}}", html.escape(token, quote=True))
    return HTMLResponse(
        page,
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'",
            "Referrer-Policy": "no-referrer",
        },
    )


def routes() -> list[Route]:
    return [Route("/enter", enter, methods=["GET"])]
