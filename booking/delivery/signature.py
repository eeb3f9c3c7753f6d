"""Webhook signatures: how machiai signs a webhook and how a receiver checks one.

Every webhook is a POST of a JSON body with three headers:

* ``X-Machiai-Timestamp``: when it was sent, in whole seconds since the Unix epoch;
* ``X-Machiai-Signature``: ``v1=<hex>`` for each signing key (comma-separated, newest key
  first), where ``<hex>`` = HMAC-SHA256(key, ``<timestamp>`` + ``.`` + body bytes);
* ``Idempotency-Key``: the same for every attempt of one message to one receiver.

A receiver accepts a request when one ``v1`` matches a key it holds (compared in constant
time) and the timestamp is within ``tolerance_s`` of its clock (a replayed old request is
refused), then drops a key it has seen already (at-least-once delivery sends again after a
timeout or a crash). :func:`verify_signature` does the first two; copy it, it needs only
the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

TIMESTAMP_HEADER = "X-Machiai-Timestamp"
SIGNATURE_HEADER = "X-Machiai-Signature"
KEY_HEADER = "Idempotency-Key"
TOLERANCE_S = 300


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secrets: Sequence[str], timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    return ",".join(f"v1={_digest(s, str(timestamp), body)}" for s in secrets)


def verify_signature(
    secrets: str | Sequence[str],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now_s: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """Whether a webhook's headers prove it came from machiai recently: ``timestamp`` and
    ``signature`` are the two headers' values (None when missing), ``body`` the raw bytes
    as received (not re-encoded JSON). ``secrets``: the key, or the keys the receiver holds."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys or not timestamp or not signature or not timestamp.isdigit():
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    sent = [part.strip()[3:] for part in signature.split(",") if part.strip().startswith("v1=")]
    return any(
        hmac.compare_digest(_digest(key, timestamp, body), candidate)
        for key in keys
        for candidate in sent
    )
