"""What the endpoints share: where a ticket travels, language, the status body."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from machiai.errors import prefers_english
from machiai.tokens import Ticket, TokenError, Tokens
from waitroom.errors import InvalidInput, TicketMissing, TicketRefused
from waitroom.services.admit_next import Clock, Line
from waitroom.services.estimate_wait import TicketStatus
from waitroom.services.join_line import ClientLimiter, JoinBatcher
from waitroom.settings import WaitroomSettings
from waitroom.store.keys import EVENT_ID
from waitroom.store.redis_store import RedisStore

TICKET_HEADER = "x-machiai-ticket"
TICKET_QUERY = "t"
MAX_TOKEN_CHARS = 512

TOKEN_ERRORS = {
    "token_invalid": ("ticket_invalid", "整理券が正しくありません。", "This ticket is not valid."),
    "token_expired": (
        "ticket_expired",
        "整理券の有効期限が切れました。もう一度列に並んでください。",
        "This ticket has expired. Please join the line again.",
    ),
    "token_wrong_event": (
        "ticket_wrong_event",
        "この整理券は別の予約受付のものです。",
        "This ticket belongs to another booking event.",
    ),
}


@dataclass(frozen=True, slots=True)
class Waitroom:
    """Everything a request handler needs, kept on ``app.state.waitroom``."""

    settings: WaitroomSettings
    store: RedisStore
    line: Line
    batcher: JoinBatcher
    limiter: ClientLimiter
    tokens: Tokens
    clock: Clock


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


def client_id(request: Request, settings: WaitroomSettings) -> str:
    if settings.trust_forwarded:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


def ticket_token(request: Request, event_id: str, body_token: str | None = None) -> str | None:
    """The ticket as sent: header, then ?t=, then the body, then the cookie."""
    # Checked one by one: parsing a query string or cookies costs time on the hot path.
    headers = request.headers
    token = headers.get(TICKET_HEADER)
    if not token and request.scope.get("query_string"):
        token = request.query_params.get(TICKET_QUERY)
    if not token:
        token = body_token
    if not token and "cookie" in headers:
        token = request.cookies.get(cookie_name(event_id))
    return token or None


def load_ticket(wr: Waitroom, token: str | None, event_id: str) -> Ticket:
    """A verified ticket of this event, or a refusal with a precise code."""
    if token is None:
        raise TicketMissing()
    if len(token) > MAX_TOKEN_CHARS:
        raise TicketRefused()
    try:
        return wr.tokens.load_ticket(token, wr.settings.ticket_ttl_s, event_id)
    except TokenError as exc:
        code, ja, en = TOKEN_ERRORS.get(exc.code, TOKEN_ERRORS["token_invalid"])
        raise TicketRefused(en, ja, code=code) from None


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
    """Set-Cookie value: HttpOnly, SameSite=Lax, scoped to the event (tokens need no quoting)."""
    secure = "; Secure" if wr.settings.core.production else ""
    return (
        f"{cookie_name(event_id)}={token}; HttpOnly; Max-Age={wr.settings.ticket_ttl_s}; "
        f"Path=/events/{event_id}; SameSite=lax{secure}"
    ).encode("latin-1")


def set_ticket_cookie(response: Response, wr: Waitroom, event_id: str, token: str) -> None:
    response.raw_headers.append((b"set-cookie", ticket_cookie(wr, event_id, token)))
