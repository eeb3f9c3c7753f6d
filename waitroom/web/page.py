"""GET /events/{event_id}/wait: the waiting page (HTML, ja/en, works without JS or cookies).

JSON for the same resource with ``Accept: application/json``. When Redis
cannot be reached the page stays calm: 503 + Retry-After, "please keep this
page open", and it refreshes itself. With JavaScript the page polls its status
and updates in place; an answer other than 200, 429 or 503 (the ticket became
unknown, the event ended) reloads it, so it says what the page says without
JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from machiai import i18n
from machiai.errors import AppError, Busy
from machiai.i18n import tr
from machiai.pages import SECURITY_HEADERS, Asset
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
from waitroom.web.texts import (
    ahead_text,
    chance_texts,
    duration,
    other_lang,
    phone_text,
    script_texts,
    wait_text,
)

BUSY_RETRY_S = 5
env = i18n.environment(jinja2.FileSystemLoader(str(resources.files("waitroom") / "templates")))
# Japanese in the script's texts as UTF-8, not \u escapes: half the bytes.
env.policies["json.dumps_kwargs"] = {
    "ensure_ascii": False,
    "sort_keys": True,
    "separators": (",", ":"),
}
# No inline style or script (the pages' CSP): one stylesheet, and the waiting page's script.
CSS = Asset.packaged("waitroom", "waitroom.css", "text/css; charset=utf-8")
JS = Asset.packaged("waitroom", "wait.js", "text/javascript; charset=utf-8")
for _lang_env in env.envs.values():
    _lang_env.globals.update(css=CSS.path, js=JS.path)


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
    # The state the page shows (the script reloads the page when it changes) and the event's
    # path, from which the script builds its URLs (the ticket is long: written once).
    state: str = ""
    event_path: str = ""
    # (href, text) links under the live region: the shuffle check, my bookings.
    links: list[tuple[str, str]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)


def render_page(name: str, lang: str, here: str, context: dict[str, Any]) -> str:
    """A waitroom page in ``lang``, with the language switch back to ``here``."""
    other, label = other_lang(lang)
    base = here.replace(f"lang={lang}", "").rstrip("&?")
    return i18n.render(
        env,
        name,
        lang,
        {
            **context,
            "other_lang": other,
            "other_lang_label": label,
            "other_lang_url": f"{base}{'&' if '?' in base else '?'}lang={other}",
        },
    )


def _render(view: PageView, here: str, status_code: int = 200, retry_s: int | None = None
            ) -> Response:  # fmt: skip
    html = render_page(
        "wait.html", view.lang, here, {**view.__dict__, "title": tr(view.lang, "Waiting line")}
    )
    return page_response(html, status_code, retry_s)


def page_response(html: str, status_code: int = 200, retry_s: int | None = None) -> HTMLResponse:
    """A waitroom page with the security headers (``machiai.pages``), not stored anywhere."""
    headers = dict(SECURITY_HEADERS)
    if retry_s is not None:
        headers["Retry-After"] = str(retry_s)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def _status_view(
    view: PageView, st: TicketStatus, event_id: str, token: str, lang: str, phone: str
) -> PageView:
    q = f"t={quote(token)}&lang={lang}"
    wait_url = f"/events/{event_id}/wait?{q}"
    enter_url = f"{enter_path(event_id)}?{q}"
    view.ticket, view.enter_url, view.refresh_url = token, enter_url, wait_url
    view.event_path = f"/events/{event_id}/"
    view.poll_url = f"/events/{event_id}/status"
    view.refresh_s = st.poll_after_s
    view.first_poll_ms = st.poll_after_s * 1000
    view.big = True
    view.state = st.phase.value
    view.notes = [
        tr(lang, "This page updates by itself. Please keep it open."),
        tr(lang, "Reloading the page does not move you forward."),
    ]
    if st.phase is Phase.ADMITTED:
        within = duration(st.enter_within_s or 0, lang)
        view.lines = [
            tr(lang, "It is your turn. Please go to the booking page."),
            tr(lang, "Please go within %(w)s.", w=within),
        ]
        view.action_url, view.action_label = enter_url, tr(lang, "Go to booking")
        view.refresh_s, view.refresh_url, view.first_poll_ms = 3, enter_url, 1000
        view.notes = []
    elif st.phase is Phase.PREQUEUE:
        view.lines = [
            tr(
                lang,
                "Booking has not opened yet. At opening, everyone waiting now is placed in a "
                "random order.",
            ),
            tr(lang, "Opens in about %(w)s", w=duration(st.opens_in_s or 0, lang)),
        ]
        if st.slots_left is not None:
            places = format(st.slots_left, ",")
            view.lines.append(tr(lang, "Places that will open: %(n)s", n=places))
        view.big = False
    elif st.phase in (Phase.EXPIRED, Phase.CLOSED):
        if st.phase is Phase.EXPIRED:
            view.lines = [tr(lang, "Your turn has expired. Please join the line again.")]
            view.action_url = f"/events/{event_id}/join?lang={lang}"
            view.action_label, view.action_post = tr(lang, "Join the line"), True
        else:
            view.lines = [tr(lang, "This booking event has closed.")]
        view.refresh_s = view.poll_url = None
        view.notes = []
    else:
        view.lines = [ahead_text(st.ahead or 0, lang)]
        if st.phase is Phase.WAITING and st.estimated_wait_s is not None:
            low = st.wait_low_s if st.wait_low_s is not None else st.estimated_wait_s
            high = st.wait_high_s if st.wait_high_s is not None else st.estimated_wait_s
            view.lines.append(wait_text(st.estimated_wait_s, low, high, lang))
        if st.phase is Phase.PAUSED:
            view.lines.append(tr(lang, "Admission is paused. Your place is kept."))
        if st.phase is Phase.SOLD_OUT:
            view.lines.append(script_texts(lang, phone)["sold_out"])
        if st.slots_left is not None:
            left = format(st.slots_left, ",")
            view.lines.append(tr(lang, "Booking places left: %(n)s", n=left))
        if st.more_ahead_than_slots:
            view.lines.extend(chance_texts(phone, lang))
        elif st.phase is Phase.SOLD_OUT:
            view.lines.append(phone_text(phone, lang))
        # Issue 15: a page of its own (this one reloads itself without JavaScript).
        view.links.insert(
            0, (f"/events/{event_id}/notify?{q}", tr(lang, "Get a message when your turn is near"))
        )
    if st.prequeue_no is not None and st.line_index is not None:
        # The draw, told so it can be checked: number → place, and where to check it.
        view.notes.insert(
            0,
            tr(
                lang,
                "Your pre-queue number %(p)s was drawn to place %(place)s in line.",
                p=format(st.prequeue_no, ","),
                place=format(st.line_index + 1, ","),
            ),
        )
        view.links.append(
            (
                f"/events/{event_id}/shuffle?p={st.prequeue_no}&lang={lang}",
                tr(lang, "How the order was drawn (check it yourself)"),
            )
        )
    return view


def _mine_link(booking_url: str, event_id: str, lang: str) -> tuple[str, str]:
    return (
        f"{booking_url}/mine?event={event_id}&lang={lang}",
        tr(lang, "See, change or cancel my booking"),
    )


def error_page(request: Request, event_id: str, exc: AppError) -> Response:
    """A refused form join, for a browser: the message on the page, not a JSON body."""
    lang = "en" if english(request) else "ja"
    here = f"/events/{event_id}/wait?lang={lang}"
    view = PageView(lang=lang, event_name=tr(lang, "Waiting line"), lines=[])
    if isinstance(exc, Busy):
        view.lines, view.refresh_s, view.refresh_url = _busy_lines(lang), BUSY_RETRY_S, here
        return _render(view, here, 503, BUSY_RETRY_S)
    view.lines = [exc.message_en if lang == "en" else exc.message_ja]
    if exc.status == 429:
        view.action_url, view.action_label = here, tr(lang, "Join the line")
        return _render(view, here, 429, int(exc.headers.get("Retry-After", "5")))
    return _render(view, here, exc.status)


def _busy_lines(lang: str) -> list[str]:
    return [
        tr(
            lang,
            "The service is busy. Please keep this page open; it will refresh by itself.",
        ),
        tr(lang, "Please keep this page open."),
    ]


async def page(request: Request) -> Response:
    wr = waitroom(request)
    event_id = event_id_of(request)
    lang = "en" if english(request) else "ja"
    here = str(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
    token = ticket_token(request.scope, event_id)
    as_json = wants_json(request)
    phone = wr.settings.phone
    view = PageView(lang=lang, event_name=tr(lang, "Waiting line"), lines=[])
    view.links.append(_mine_link(wr.settings.booking_url, event_id, lang))
    try:
        snap = await wr.line.fresh_snapshot(event_id)
        view.event_name = snap.name_en if lang == "en" else snap.name_ja
        if token is not None or as_json:
            ticket = load_ticket(wr, token, event_id)
            assert token is not None
            st = await status_of(wr, ticket, snap)
            if as_json:
                return status_response(event_id, st)
            view = _status_view(view, st, event_id, token, lang, phone)
            if request.query_params.get("notify") == "saved" and st.phase is not Phase.ADMITTED:
                view.notes.insert(0, tr(lang, "We will send you a message when your turn is near."))
            if view.poll_url:
                view.texts = script_texts(lang, phone)
            return _render(view, here)
    except Busy:
        if as_json:
            raise
        view.lines, view.refresh_s, view.refresh_url = _busy_lines(lang), BUSY_RETRY_S, here
        return _render(view, here, 503, BUSY_RETRY_S)
    except EventNotFound:
        if as_json:
            raise
        view.lines = [tr(lang, "This booking event was not found.")]
        view.links = []
        return _render(view, here, 404)
    except AppError:
        if as_json:
            raise
        view.lines = [tr(lang, "Your ticket could not be read. Please join the line again.")]
    if not view.lines:
        view.lines = [
            tr(lang, "Press the button; you will be called in the order you joined."),
        ]
    view.action_url = f"/events/{event_id}/join?lang={lang}"
    view.action_label, view.action_post = tr(lang, "Join the line"), True
    return _render(view, here)
