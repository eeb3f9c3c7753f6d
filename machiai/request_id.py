"""A request id for the logs, the same from the waitroom's redirect into booking.

An incoming ``X-Request-Id`` (a proxy's, or another service's) is kept; booking's
``/enter`` also takes ``rid`` from its query string, which the waitroom's redirect into
booking carries (waitroom/web/enter.py). Otherwise an id is made the first time anything
asks for it (a log line, the redirect), not for every request: a status poll that logs
nothing pays for no id. The id lives in a context variable, cleared as each request
begins: it never leaks from one request into the next.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

HEADER = b"x-request-id"
QUERY_KEY = "rid"
# What an id from outside may look like (a proxy's UUID, ours): anything else is replaced.
_VALID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_CURRENT: ContextVar[str | None] = ContextVar("machiai_request_id", default=None)


# "" while a request has no id yet; None outside any request (a background task's line).
_NONE_YET = ""


def current() -> str:
    """This request's id, made now if it has none yet."""
    found = _CURRENT.get()
    if not found:
        found = secrets.token_hex(8)
        _CURRENT.set(found)
    return found


def for_log() -> str | None:
    """The id for a log line: this request's (made now if need be), None outside requests."""
    return None if _CURRENT.get() is None else current()


def adopt(value: str | None) -> bool:
    """Take ``value`` as this request's id if it is a valid one."""
    if value is not None and _VALID.match(value):
        _CURRENT.set(value)
        return True
    return False


class RequestId:
    """Plain ASGI: adopts the id a request brings (header, or ``rid`` on ``query_paths``)."""

    def __init__(self, app: ASGIApp, query_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.query_paths = query_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Cleared first: a server (or a test client) that runs requests one after
            # another in one task must not hand one request's id to the next.
            _CURRENT.set(_NONE_YET)
            for name, value in scope["headers"]:
                if name == HEADER:
                    adopt(value.decode("latin-1"))
                    break
            else:
                if scope["path"] in self.query_paths and b"rid=" in scope["query_string"]:
                    query = scope["query_string"].decode("latin-1")
                    adopt(dict(parse_qsl(query)).get(QUERY_KEY))
        await self.app(scope, receive, send)
