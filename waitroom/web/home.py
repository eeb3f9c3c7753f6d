"""GET /: what this service is, the bookings open now (or that there are none), the phone
number, and the way to one's booking — a small page in Japanese with an English switch."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from starlette.requests import Request
from starlette.responses import Response

from machiai.i18n import tr
from waitroom.web.common import english, waitroom
from waitroom.web.page import page_response, render_page

JST = timezone(timedelta(hours=9))
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def when(opens_at: datetime, now: datetime, lang: str) -> str:
    if opens_at <= now:
        return tr(lang, "Open now")
    t = opens_at.astimezone(JST)
    if lang == "ja":
        moment = f"{t.month}月{t.day}日 {t.hour}:{t.minute:02d}"
    else:
        moment = f"{t.day} {MONTHS[t.month - 1]} {t.hour:02d}:{t.minute:02d} JST"
    return tr(lang, "Opens %(when)s; you may join the line now.", when=moment)


async def home(request: Request) -> Response:
    wr = waitroom(request)
    lang = "en" if english(request) else "ja"
    now, events = await wr.directory.open_events()
    html = render_page(
        "home.html",
        lang,
        "/" + (f"?{request.url.query}" if request.url.query else ""),
        {
            "title": tr(lang, "Vaccination booking: the waiting line"),
            "events": [
                {
                    "url": f"/events/{e.event_id}/wait?lang={lang}",
                    "name": e.name_en if lang == "en" else e.name_ja,
                    "when": when(e.opens_at, now, lang),
                }
                for e in events
            ],
            "mine_url": f"{wr.settings.booking_url}/mine?lang={lang}",
            "phone": wr.settings.phone,
        },
    )
    return page_response(html)
