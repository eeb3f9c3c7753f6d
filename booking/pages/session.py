"""The resident's session on the pages: it travels as ``s`` in the URL and in every form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from booking import errors
from booking.domain import Resident, Session
from booking.http import ctx_of, tokens_of
from booking.pages.common import Form, link
from booking.services import bookings, sessions

MAX_TOKEN_CHARS = 2000


async def current_session(request: Request, fields: Form) -> tuple[str, Session]:
    """(token, live session) from the page's fields; a lapsed or ended one is refused."""
    token = fields.get("s")
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise errors.SessionExpired()
    session = await sessions.load_session(ctx_of(request), tokens_of(request), token)
    return token, session


def person(session: Session, voucher: str | None) -> Resident:
    """The household resident the page acts for (the resident themself by default)."""
    found = session.member(voucher)
    if found is None:
        raise errors.NoBooking()
    return found


def nav(token: str, session: Session, lang: str) -> dict[str, Any]:
    """The links every page of a session shows (built once per page, not per link)."""
    return {
        "s": token,
        "admitted": session.admitted,
        "slots": link("/book/slots", s=token, lang=lang),
        "mine": link("/book/mine", s=token, lang=lang),
        "household": link("/book/household", s=token, lang=lang),
    }


@dataclass(frozen=True, slots=True)
class Shown:
    """A booking a page shows: the session's token and session, whose it is, the booking."""

    token: str
    session: Session
    resident: Resident
    booking: dict[str, Any]


async def shown_booking(request: Request, q: Form) -> Shown:
    """The booking ``b`` of the household member ``who`` of the session ``s``; any other
    booking (or none) is not found."""
    token, session = await current_session(request, q)
    resident = person(session, q.opt("who"))
    booking = await bookings.resident_booking(ctx_of(request), resident, q.get("b"))
    return Shown(token, session, resident, booking)
