"""Where a ticket and a client address are read from the ASGI scope (web/common.py): the one
set of rules both the hot paths and the framework's endpoints use."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from machiai.client_address import parse_trusted_proxies
from waitroom.settings import WaitroomSettings
from waitroom.web.common import client_id, ticket_token

EVENT = "ev-1"
COOKIE = (b"cookie", b"a=1; machiai_ticket_ev-1=from-cookie; b=2")


def scope(*headers: tuple[bytes, bytes], query: bytes = b"", client: Any = None) -> Any:
    return {"type": "http", "headers": list(headers), "query_string": query, "client": client}


def test_ticket_is_read_header_then_query_then_body_then_cookie() -> None:
    header = (b"x-machiai-ticket", b"from-header")
    assert ticket_token(scope(COOKIE, header, query=b"t=q"), EVENT, "body") == "from-header"
    assert ticket_token(scope(COOKIE, query=b"lang=en&t=from-query"), EVENT, "b") == "from-query"
    assert ticket_token(scope(COOKIE, query=b"lang=en"), EVENT, "from-body") == "from-body"
    assert ticket_token(scope(COOKIE, query=b"t="), EVENT) == "from-cookie"
    # Empty values count as absent; another event's cookie is not this event's ticket.
    empty = (b"x-machiai-ticket", b"")
    assert ticket_token(scope(empty, (b"cookie", b"machiai_ticket_ev-1=")), EVENT, "") is None
    assert ticket_token(scope(COOKIE), "ev-2") is None
    # Cookies split over several headers (HTTP/2) are all read.
    split = scope((b"cookie", b"a=1"), (b"cookie", b"machiai_ticket_ev-1=second"))
    assert ticket_token(split, EVENT) == "second"


def test_client_is_the_peer_unless_a_proxy_is_trusted(settings: WaitroomSettings) -> None:
    forwarded = (b"x-forwarded-for", b"192.0.2.7, 10.0.0.1")
    peer = ("10.0.0.2", 5000)
    assert client_id(scope(forwarded, client=peer), settings) == "10.0.0.2"
    proxies = parse_trusted_proxies("WAITROOM_TRUSTED_PROXIES", "10.0.0.0/8")
    trusted = replace(settings, trusted_proxies=proxies)
    assert client_id(scope(forwarded, client=peer), trusted) == "192.0.2.7"
    # The client's own leading entries are not read: the proxy's entry is the client.
    forged = (b"x-forwarded-for", b"198.51.100.66, 192.0.2.7, 10.0.0.1")
    assert client_id(scope(forged, client=peer), trusted) == "192.0.2.7"
    assert client_id(scope(forwarded, client=("198.51.100.4", 1)), trusted) == "198.51.100.4"
    assert client_id(scope((b"x-forwarded-for", b" "), client=peer), trusted) == "10.0.0.2"
    assert client_id(scope(), trusted) == "unknown"
