"""GET /events/{event_id}/shuffle: the pre-queue draw, published so residents can check it.

The seed, the count and the method, and a form "check my ticket": a pre-queue number in,
its place in line out (``prequeue_shuffle.permute``, the same function the line uses).
Plain HTML, works without JavaScript; the waitroom README has a script that does the same
offline.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from machiai.errors import Busy
from machiai.i18n import tr
from waitroom.errors import EventNotFound
from waitroom.services.prequeue_shuffle import ALGORITHM, permute
from waitroom.web.common import english, event_id_of, waitroom
from waitroom.web.page import BUSY_RETRY_S, page_response, render_page

JST = timezone(timedelta(hours=9))
MAX_NUMBER_CHARS = 12


def _number(raw: str) -> int | None:
    """A number typed by a person: full-width digits, spaces and commas accepted."""
    text = raw.translate({0xFF10 + d: 0x30 + d for d in range(10)})
    text = "".join(ch for ch in text if ch not in " ,\u3000")
    # isascii too: isdigit() accepts "²" or "①", which int() refuses.
    digits = text.isascii() and text.isdigit()
    return int(text) if digits and len(text) <= MAX_NUMBER_CHARS else None


async def shuffle(request: Request) -> Response:
    wr = waitroom(request)
    event_id = event_id_of(request)
    lang = "en" if english(request) else "ja"
    here = str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
    raw_p = request.query_params.get("p", "")[:64]
    context: dict[str, Any] = {
        "title": tr(lang, "How the pre-queue order was drawn"),
        "event_name": tr(lang, "Waiting line"),
        "p": raw_p,
        "drawn": False,
    }
    status = 200
    try:
        snap = await wr.line.fresh_snapshot(event_id)
    except EventNotFound:
        context["message"] = tr(lang, "This booking event was not found.")
        return _page(lang, here, context, 404)
    except Busy:
        context["message"] = tr(lang, "Please keep this page open.")
        context["refresh_s"] = BUSY_RETRY_S
        return _page(lang, here, context, 503)
    live = snap.live
    context["event_name"] = snap.name_en if lang == "en" else snap.name_ja
    if live.n_pre is None or live.seed is None:
        context["message"] = tr(
            lang, "The order is drawn at opening. Please look again after it opens."
        )
        return _page(lang, here, context, status)
    count = live.n_pre
    opened = datetime.fromtimestamp((live.opened_ms or 0) / 1000, UTC).astimezone(JST)
    context.update(
        drawn=True,
        count=count,
        seed=live.seed,
        opened_at=opened.strftime("%Y-%m-%d %H:%M:%S JST"),
        algorithm=ALGORITHM,
    )
    if count == 0:
        context["message"] = tr(lang, "Nobody joined before opening: there was nothing to draw.")
    elif raw_p:
        p = _number(raw_p)
        if p is None or p >= count:
            context["message"] = tr(
                lang, "Please enter a number from 0 to %(last)s.", last=format(count - 1, ",")
            )
            status = 422
        else:
            index = permute(p, count, live.seed)
            context["answer"] = {
                "index": index,
                "text": tr(
                    lang,
                    "Pre-queue number %(p)s stands at place %(place)s in line (line index "
                    "%(index)s).",
                    p=format(p, ","),
                    place=format(index + 1, ","),
                    index=index,
                ),
            }
    return _page(lang, here, context, status)


def _page(lang: str, here: str, context: dict[str, Any], status: int) -> Response:
    retry_s = BUSY_RETRY_S if status == 503 else None
    return page_response(render_page("shuffle.html", lang, here, context), status, retry_s)
