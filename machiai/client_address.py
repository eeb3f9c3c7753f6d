"""Whom a request comes from, for the per-client limits of both services.

The client is the direct peer, unless that peer is one of the trusted proxies: then
X-Forwarded-For is walked from the right, past every trusted hop, and the first address
not trusted is the client. Every proxy appends the address it saw, so that entry was
written by a proxy we trust; whatever a client writes itself stays to its left and is
never read (the first entry, which earlier code took, is exactly the one a client forges).
If every hop is trusted, the left-most is taken (a client inside the trusted networks).

A hop that is not an IP address (``unknown``, an obfuscated id, garbage) stops the walk
and the peer stands for the client: a throttle key is then always an IP address (the
peer's, or one a trusted proxy wrote), never free text from a header, and a proxy that
writes nonsense makes its clients share its bucket rather than giving each value a fresh one. An
address with a port (``192.0.2.7:5100``, ``[2001:db8::7]:5100``) counts without it, so
changing the source port buys no new budget. IPv4-mapped IPv6 (``::ffff:10.0.0.1``) is
read as the IPv4 address it maps.

Same semantics as uvicorn's ProxyHeadersMiddleware and werkzeug's ProxyFix; uvicorn's
trust check (``_TrustedHosts``) is private, hence this small walk.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from machiai.config import Env, SettingsError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR = b"x-forwarded-for"  # raw ASGI header name, as it comes off the scope
UNKNOWN = "unknown"  # no peer at all (the ASGI server gave none)
# Longer than any address with a zone id and port: not parsed, not cached, taken as garbage.
MAX_HOP_CHARS = 64


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an address, a port after it dropped; None if it is not one."""
    if text.startswith("["):  # [v6] or [v6]:port
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port.startswith(":") and port[1:].isdigit())):
            return None
        text = host
    elif text.count(":") == 1:  # v4:port (a bare v6 has at least two colons)
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The networks whose X-Forwarded-For entries are believed; empty = none (header ignored)."""

    networks: tuple[Network, ...] = ()
    # hop text -> (the address as the client key, trusted?), None if not an address. Cached
    # per text: the waitroom's join path asks for the same few proxies on every request.
    # Only hops the walk reaches are looked up, and it stops at the first untrusted one, so
    # the strings a client makes up do not reach it past a well-behaved proxy (and it is
    # bounded if they do).
    _hop: Callable[[str], tuple[str, bool] | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hop", lru_cache(maxsize=4096)(self._lookup))

    def _lookup(self, text: str) -> tuple[str, bool] | None:
        address = _address(text)
        if address is None:
            return None
        return str(address), any(address in network for network in self.networks)

    def hop(self, text: str) -> tuple[str, bool] | None:
        """One X-Forwarded-For entry (or a peer): its address and whether it is a trusted
        proxy; None when it is not an address."""
        if len(text) > MAX_HOP_CHARS:
            return None
        return self._hop(text)

    def trusts(self, host: str) -> bool:
        """Whether ``host`` (a peer or a hop) is one of the trusted proxies."""
        if not self.networks:
            return False
        found = self.hop(host)
        return found is not None and found[1]

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client behind ``peer`` given its X-Forwarded-For (all values joined by ","):
        the right-most hop not trusted, the left-most if all are; the peer itself if it is
        not a trusted proxy, if the header is absent, or if a hop is not an address."""
        if forwarded_for is None or not self.trusts(peer):
            return peer
        return self._walk(peer, forwarded_for)

    def client_of(self, scope: Mapping[str, Any]) -> str:
        """:meth:`client` for a raw ASGI scope. The headers are scanned only when the peer is
        a trusted proxy (without proxies it costs nothing more than reading the peer).
        Several X-Forwarded-For headers are one list in order, as HTTP combines them: a
        proxy that adds its own header line after the client's is still read from the right."""
        peer_info = scope.get("client")
        if not peer_info:
            return UNKNOWN
        peer = str(peer_info[0])
        if not self.networks or not self.trusts(peer):  # the first test: no call without proxies
            return peer
        forwarded: str | None = None
        for name, value in scope["headers"]:
            if name == FORWARDED_FOR:
                text = value.decode("latin-1")
                forwarded = text if forwarded is None else f"{forwarded},{text}"
        return peer if forwarded is None else self._walk(peer, forwarded)

    def _walk(self, peer: str, forwarded_for: str) -> str:
        client = peer
        for entry in reversed(forwarded_for.split(",")):
            found = self.hop(entry.strip())
            if found is None:
                return peer
            client, trusted = found
            if not trusted:
                return client
        return client  # every hop trusted: the left-most


NO_PROXIES = TrustedProxies()


def parse_trusted_proxies(name: str, value: str) -> TrustedProxies:
    """Comma-separated IPs and CIDRs (IPv4, IPv6) from variable ``name``; empty = none.

    A bad entry stops the start naming the variable and the entry. A /0 is refused: it would
    make every address on the internet a proxy, and so every forged header believed."""
    networks: list[Network] = []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name}: {entry!r} is not an IP address or network "
                "(comma-separated, e.g. 10.0.0.0/8,2001:db8::/32)"
            ) from None
        if network.prefixlen == 0:
            raise SettingsError(
                f"{name}: {entry!r} would trust every address, so any client could forge "
                "its X-Forwarded-For; list only your proxies' addresses or networks"
            )
        networks.append(network)
    return TrustedProxies(tuple(networks))


def trusted_proxies(env: Env, name: str, *, retired: str) -> TrustedProxies:
    """The proxies in ``name``; ``retired`` (the old true/false switch) stops the start.

    The switch trusted the first X-Forwarded-For entry, which the client writes: a deploy
    still setting it is told what replaced it rather than silently changing behaviour."""
    if env.raw(retired) is not None:
        raise SettingsError(
            f"{retired} is no longer read (it let clients pick their own address): remove it "
            f"and set {name} to your proxies' addresses or networks, e.g. {name}=10.0.0.0/8"
        )
    return parse_trusted_proxies(name, env.text(name, ""))
