"""What the endpoints share: where a ticket travels, language, the status body."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from machiai.errors import prefers_english
from waitroom.errors import InvalidInput
from waitroom.services.context import Waitroom
from waitroom.services.estimate_wait import TicketStatus
from waitroom.settings import WaitroomSettings
from waitroom.store.keys import EVENT_ID

TICKET_QUERY = "t"
# Raw ASGI header names (lower case, bytes), compared as they come off the scope.
TICKET_HEADER = b"x-machiai-ticket"


def waitroom(request: Request) -> Waitroom:
    wr: Waitroom = request.app.state.waitroom
    return wr


def event_id_of(request: Request) -> str:
    event_id = str(request.path_params["event_id"])
    if not EVENT_ID.match(event_id):
        raise InvalidInput("Malformed event id.", "予約受付のIDが正しくありません。")
    return event_id


def cookie_name(event_id: str) -> str:
    return f"machiai_ticket_{event_id}"


def english(request: Request) -> bool:
    lang = request.query_params.get("lang")
    if lang in ("en", "ja"):
        return lang == "en"
    return prefers_english(request)


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def client_id(scope: Scope, settings: WaitroomSettings) -> str:
    """Whom the join limit counts: the peer address, or behind a trusted proxy the address
    the first trusted proxy saw (never an X-Forwarded-For entry the client wrote itself).
    Read off the raw scope like the ticket: the join is a hot path."""
    return settings.trusted_proxies.client_of(scope)


def ticket_token(scope: Scope, event_id: str, body_token: str | None = None) -> str | None:
    """The ticket as sent: the X-Machiai-Ticket header, then ``?t=``, then the body, then
    the cookie.

    Read off the raw ASGI scope one source at a time: a status poll is the hottest request,
    and the waiting page's poll sends the header, so it parses no query string and no cookie
    (and builds no Request)."""
    cookie = b""
    for name, value in scope["headers"]:
        if name == TICKET_HEADER:
            if value:
                return str(value.decode("latin-1"))
        elif name == b"cookie":  # HTTP/2 may split the cookies over several headers
            cookie = cookie + b"; " + value if cookie else value
    query = scope.get("query_string")
    if query:
        found = parse_qs(query.decode("latin-1")).get(TICKET_QUERY)
        if found:
            return str(found[0])
    if body_token:
        return body_token
    if cookie:
        wanted = cookie_name(event_id) + "="
        for part in cookie.decode("latin-1").split(";"):
            part = part.strip()
            if part.startswith(wanted) and len(part) > len(wanted):
                return part[len(wanted) :]
    return None


def _num(value: float | None) -> str:
    return "null" if value is None else str(value)


def status_json(event_id: str, st: TicketStatus, **extra: str) -> bytes:
    """The status body, formatted by hand: it is the hottest response of the service.

    Every string in it is known to need no escaping: the event id matches EVENT_ID,
    states are enum values, tokens are URL-safe base64 and paths are built from these."""
    parts = [
        f'{{"event_id":"{event_id}","state":"{st.phase.value}","event_state":"{st.event_state}"',
        f',"position":{_num(st.position)},"ahead":{_num(st.ahead)}',
        f',"estimated_wait_s":{_num(st.estimated_wait_s)}',
        f',"admission_rate_per_min":{_num(st.admission_rate_per_min)}',
        f',"slots_left":{_num(st.slots_left)},"poll_after_s":{st.poll_after_s}',
    ]
    if st.estimated_wait_s is not None:
        parts.append(
            f',"estimated_wait_low_s":{st.wait_low_s},"estimated_wait_high_s":{st.wait_high_s}'
        )
    if st.more_ahead_than_slots:
        parts.append(',"more_ahead_than_slots":true')
    if st.prequeue_no is not None:
        parts.append(f',"prequeue_no":{st.prequeue_no},"line_index":{st.line_index}')
    if st.opens_in_s is not None:
        parts.append(f',"opens_in_s":{st.opens_in_s}')
    if st.enter_within_s is not None:
        parts.append(f',"enter_within_s":{st.enter_within_s}')
        parts.append(f',"enter_url":"/events/{event_id}/enter"')
    for name, value in extra.items():
        parts.append(f',"{name}":"{value}"')
    parts.append("}")
    return "".join(parts).encode()


def status_response(event_id: str, st: TicketStatus, status_code: int = 200, **extra: str
                    ) -> Response:  # fmt: skip
    return Response(status_json(event_id, st, **extra), status_code, media_type="application/json")


def ticket_cookie(wr: Waitroom, event_id: str, token: str) -> bytes:
    """Set-Cookie value: HttpOnly, Secure outside development, scoped to the event (tokens
    need no quoting). SameSite=Lax, not Strict: a resident who comes back by a link from
    the city's site or from booking (another site) must see the place their cookie holds.
    Lax keeps it out of another site's POST, which ``web/origin.py`` spots."""
    secure = "; Secure" if wr.settings.core.production else ""
    return (
        f"{cookie_name(event_id)}={token}; HttpOnly; Max-Age={wr.settings.ticket_ttl_s}; "
        f"Path=/events/{event_id}; SameSite=Lax{secure}"
    ).encode("latin-1")


def set_ticket_cookie(response: Response, wr: Waitroom, event_id: str, token: str) -> None:
    response.raw_headers.append((b"set-cookie", ticket_cookie(wr, event_id, token)))
