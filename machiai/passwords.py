"""Staff password hashing, so no credential is ever stored in clear.

New hashes are argon2id with argon2-cffi's default parameters, RFC 9106's low-memory choice
(t=3, m=64 MiB, p=4). Hashes of the scrypt scheme machiai used before (``scrypt$...``) still
verify; ``needs_rehash`` says which stored hashes should be replaced by a fresh one, which
sign-in does once it has the password in hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # RFC 9106 low-memory: argon2-cffi's default profile
_SCRYPT = "scrypt$"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    if stored.startswith(_SCRYPT):
        return _verify_scrypt(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError, UnicodeError):
        return False


def needs_rehash(stored: str) -> bool:
    """True for a hash that is not argon2id with today's parameters (scrypt, older or
    weaker argon2), so the next successful sign-in stores a new one."""
    if stored.startswith(_SCRYPT):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)
