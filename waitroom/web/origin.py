"""Whether a request was sent from another site's page (a form or a script there).

The ticket cookie is ``SameSite=Lax``: a browser leaves it out of a POST that another
site's page sends, yet would store a cookie that POST's answer sets. A join from another
site therefore cannot see the ticket the browser holds, and must neither hand out a place
nor write the cookie (``web/join.py``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import Scope

# Raw ASGI header names and the Sec-Fetch-Site values of a request this service's own pages
# sent, or one the resident typed or bookmarked.
SEC_FETCH_SITE = b"sec-fetch-site"
ORIGIN = b"origin"
HOST = b"host"
OWN_SITE = (b"same-origin", b"none")


def from_another_site(scope: Scope) -> bool:
    """True for a request a browser sent from another site's page.

    ``Sec-Fetch-Site`` decides when it is sent (every current browser sends it): anything
    but ``same-origin`` or ``none`` is another site's page, a city's own site included.
    Without it (older browsers), an ``Origin`` whose host and port are not the ``Host`` the
    request was sent to. ``Origin: null`` decides nothing: our own pages send it, since
    ``Referrer-Policy: no-referrer`` has a browser hide even a same-origin form's origin.
    Non-browser clients send neither header and are never from another site."""
    origin = host = b""
    for name, value in scope["headers"]:
        if name == SEC_FETCH_SITE:
            return value not in OWN_SITE
        if name == ORIGIN:
            origin = value
        elif name == HOST:
            host = value
    if not origin or origin == b"null":
        return False
    netloc = urlsplit(origin.decode("latin-1")).netloc
    return netloc.lower() != host.decode("latin-1").lower()
