"""What ``REDIS_URL=redis+cluster://[user:password@]host:port[,host:port…]`` says.

Apart from :mod:`machiai.redis_cluster` so that settings validate the URL before anything
starts without importing a Redis client.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
Address = tuple[str, int]


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0] in CLUSTER_SCHEMES


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """What ``redis+cluster://[user:password@]host:port[,host:port…][?ssl_cert_reqs=…]`` says."""

    seeds: tuple[Address, ...]
    username: str | None
    password: str | None
    tls: bool
    ssl_ca_certs: str | None
    ssl_cert_reqs: str | None


def parse_cluster_url(url: str) -> ClusterUrl:
    """The seeds and credentials of a cluster URL; ``ValueError`` says what is wrong
    (never quoting the URL: it may carry a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in CLUSTER_SCHEMES:
        raise ValueError("a cluster URL starts with redis+cluster:// or rediss+cluster://")
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    if "?" in netloc:
        netloc, _, query = netloc.partition("?")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0 (remove the /<db> of the URL)")
    seeds: list[Address] = []
    for item in hosts.split(","):
        # urlsplit understands [::1]:7000 and checks the port's range.
        parts = urlsplit(f"//{item.strip()}")
        try:
            port = parts.port
        except ValueError:
            port = None  # out of range
        if not parts.hostname or port is None:
            raise ValueError("each cluster seed is host:port (port 1-65535), comma-separated")
        seeds.append((parts.hostname, port))
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    return ClusterUrl(
        seeds=tuple(seeds),
        username=username,
        password=password,
        tls=scheme == "rediss+cluster",
        ssl_ca_certs=params.get("ssl_ca_certs"),
        ssl_cert_reqs=params.get("ssl_cert_reqs"),
    )
