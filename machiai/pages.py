"""What the HTML pages of both services share: their security headers, and static files
served under a content hash.

Every page (and every redirect a page's form or link leads to) carries
:data:`SECURITY_HEADERS`: no inline script or style and nothing from elsewhere (CSP), no
framing, no Referer (tickets, passes and sessions ride in page URLs), no sniffing, not
stored by caches or the back/forward cache. Set where the response is built, never by a
middleware: the waitroom's status poll, its hottest request, pays nothing for them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }
)

STATIC_HEADERS: Mapping[str, str] = MappingProxyType(
    {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
)


@dataclass(frozen=True, slots=True)
class Asset:
    """A static file served under its content hash, so browsers keep it for a year (a
    changed file is a new URL)."""

    name: str
    body: bytes
    media_type: str

    @classmethod
    def packaged(cls, package: str, name: str, media_type: str) -> Asset:
        """``<package>/static/<name>``, read once."""
        return cls(name, resources.files(package).joinpath("static", name).read_bytes(), media_type)

    @property
    def path(self) -> str:
        stem, _, ext = self.name.rpartition(".")
        return f"/static/{stem}.{hashlib.sha256(self.body).hexdigest()[:12]}.{ext}"


def static_routes(*assets: Asset) -> list[Route]:
    """One GET route per file, at its hashed path."""
    return [Route(a.path, _serve(a), methods=["GET"]) for a in assets]


def _serve(asset: Asset) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return Response(asset.body, media_type=asset.media_type, headers=STATIC_HEADERS)

    return endpoint
