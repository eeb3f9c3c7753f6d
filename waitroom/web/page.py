"""GET /events/{event_id}/wait: the waiting page (HTML, ja/en, works without JS or cookies).

JSON for the same resource with ``Accept: application/json``. When Redis
cannot be reached the page stays calm: 503 + Retry-After, "please keep this
page open", and it refreshes itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from machiai.errors import AppError, Busy
from waitroom.errors import EventNotFound
from waitroom.services.estimate_wait import Phase, TicketStatus
from waitroom.services.tickets import load_ticket, status_of
from waitroom.web.common import (
    english,
    event_id_of,
    status_response,
    ticket_token,
    waitroom,
    wants_json,
)
from waitroom.web.status import enter_path
from waitroom.web.texts import SCRIPT_KEYS, TEXTS, duration

BUSY_RETRY_S = 5
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(resources.files("waitroom") / "templates")),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class PageView:
    lang: str
    event_name: str
    lines: list[str]
    notes: list[str] = field(default_factory=list)
    big: bool = False
    refresh_s: int | None = None
    refresh_url: str = ""
    action_url: str | None = None
    action_label: str = ""
    action_post: bool = False
    poll_url: str | None = None
    ticket: str = ""
    enter_url: str = ""
    first_poll_ms: int = 0


def _render(view: PageView, here: str, status_code: int = 200, retry_s: int | None = None
            ) -> Response:  # fmt: skip
    other = "en" if view.lang == "ja" else "ja"
    base = here.replace(f"lang={view.lang}", "").rstrip("&?")
    html = _env.get_template("wait.html").render(
        **view.__dict__,
        title=TEXTS[view.lang]["title"],
        other_lang=other,
        other_lang_label=TEXTS[view.lang]["other_lang_label"],
        other_lang_url=f"{base}{'&' if '?' in base else '?'}lang={other}",
        texts={k: TEXTS[view.lang][k] for k in SCRIPT_KEYS},
    )
    headers = {"Cache-Control": "no-store"}
    if retry_s is not None:
        headers["Retry-After"] = str(retry_s)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def _status_view(
    view: PageView, st: TicketStatus, event_id: str, token: str, lang: str
) -> PageView:
    t = TEXTS[lang]
    q = f"t={quote(token)}&lang={lang}"
    wait_url = f"/events/{event_id}/wait?{q}"
    enter_url = f"{enter_path(event_id)}?{q}"
    view.ticket, view.enter_url, view.refresh_url = token, enter_url, wait_url
    view.poll_url = f"/events/{event_id}/status"
    view.refresh_s = st.poll_after_s
    view.first_poll_ms = st.poll_after_s * 1000
    view.big = True
    view.notes = [t["auto"], t["no_reload"]]
    if st.phase is Phase.ADMITTED:
        within = duration(st.enter_within_s or 0, lang)
        view.lines = [t["admitted"], t["enter_within"].format(w=within)]
        view.action_url, view.action_label = enter_url, t["enter"]
        view.refresh_s, view.refresh_url, view.first_poll_ms = 3, enter_url, 1000
        view.notes = []
    elif st.phase is Phase.PREQUEUE:
        view.lines = [t["prequeue"], t["opens_in"].format(w=duration(st.opens_in_s or 0, lang))]
        view.big = False
    elif st.phase in (Phase.EXPIRED, Phase.CLOSED):
        view.lines = [t[st.phase.value]]
        view.refresh_s = view.poll_url = None
        view.notes = []
        if st.phase is Phase.EXPIRED:
            view.action_url = f"/events/{event_id}/join?lang={lang}"
            view.action_label, view.action_post = t["join"], True
    else:
        ahead = st.ahead or 0
        view.lines = [t["ahead"].format(n=f"{ahead:,}") if ahead else t["next"]]
        if st.phase is Phase.WAITING and st.estimated_wait_s is not None:
            view.lines.append(t["wait"].format(w=duration(st.estimated_wait_s, lang)))
        if st.phase is Phase.PAUSED:
            view.lines.append(t["paused"])
        if st.phase is Phase.SOLD_OUT:
            view.lines.append(t["sold_out"])
        if st.slots_left is not None:
            view.lines.append(t["slots"].format(n=f"{st.slots_left:,}"))
    return view


def error_page(request: Request, event_id: str, exc: AppError) -> Response:
    """A refused form join, for a browser: the message on the page, not a JSON body."""
    lang = "en" if english(request) else "ja"
    t = TEXTS[lang]
    here = f"/events/{event_id}/wait?lang={lang}"
    view = PageView(lang=lang, event_name=t["title"], lines=[])
    if isinstance(exc, Busy):
        view.lines, view.refresh_s, view.refresh_url = [t["busy"], t["keep"]], BUSY_RETRY_S, here
        return _render(view, here, 503, BUSY_RETRY_S)
    view.lines = [exc.message_en if lang == "en" else exc.message_ja]
    if exc.status == 429:
        view.action_url, view.action_label = here, t["join"]
        return _render(view, here, 429, int(exc.headers.get("Retry-After", "5")))
    return _render(view, here, exc.status)


async def page(request: Request) -> Response:
    wr = waitroom(request)
    event_id = event_id_of(request)
    lang = "en" if english(request) else "ja"
    t = TEXTS[lang]
    here = str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
    token = ticket_token(request.scope, event_id)
    as_json = wants_json(request)
    view = PageView(lang=lang, event_name=t["title"], lines=[])
    try:
        snap = await wr.line.fresh_snapshot(event_id)
        view.event_name = snap.name_en if lang == "en" else snap.name_ja
        if token is not None or as_json:
            ticket = load_ticket(wr, token, event_id)
            assert token is not None
            st = await status_of(wr, ticket, snap)
            if as_json:
                return status_response(event_id, st)
            return _render(_status_view(view, st, event_id, token, lang), here)
    except Busy:
        if as_json:
            raise
        view.lines, view.refresh_s, view.refresh_url = [t["busy"], t["keep"]], BUSY_RETRY_S, here
        return _render(view, here, 503, BUSY_RETRY_S)
    except EventNotFound:
        if as_json:
            raise
        view.lines = [t["not_found"]]
        return _render(view, here, 404)
    except AppError:
        if as_json:
            raise
        view.lines = [t["bad_ticket"]]
    if not view.lines:
        view.lines = [t["join_note"]]
    view.action_url = f"/events/{event_id}/join?lang={lang}"
    view.action_label, view.action_post = t["join"], True
    return _render(view, here)
