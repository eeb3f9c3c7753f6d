"""Staff passwords: new hashes are argon2id with RFC 9106's low-memory parameters; the old
scrypt hashes still verify; anything not argon2id with today's parameters asks for a rehash."""

from __future__ import annotations

import base64
import hashlib
import secrets

import pytest
from argon2 import PasswordHasher, Type

from machiai.passwords import hash_password, needs_rehash, verify_password

PASSWORD = "correct horse battery staple"


def scrypt_hash(password: str) -> str:
    """A hash as machiai stored them before argon2id."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return (
        f"scrypt${2**14}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    )


def test_new_hashes_are_argon2id_with_rfc_9106_low_memory_parameters() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert stored != hash_password(PASSWORD)  # salted
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "!", stored)
    assert not needs_rehash(stored)


def test_old_scrypt_hashes_verify_and_ask_for_a_rehash() -> None:
    stored = scrypt_hash(PASSWORD)
    assert verify_password(PASSWORD, stored)
    assert not verify_password("wrong", stored)
    assert needs_rehash(stored)


@pytest.mark.parametrize(
    "hasher",
    [
        PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1),  # weaker than today's
        PasswordHasher(type=Type.I),  # argon2i, not argon2id
    ],
)
def test_argon2_hashes_of_other_parameters_verify_and_ask_for_a_rehash(
    hasher: PasswordHasher,
) -> None:
    stored = hasher.hash(PASSWORD)
    assert verify_password(PASSWORD, stored)
    assert not verify_password("wrong", stored)
    assert needs_rehash(stored)


@pytest.mark.parametrize(
    "stored",
    ["", "plain", "scrypt$x$y", "scrypt$16384$8$1$!!$!!", "$argon2id$v=19$m=1", "$argon2id$ü"],
)
def test_a_malformed_hash_verifies_nothing(stored: str) -> None:
    assert not verify_password(PASSWORD, stored)
    assert needs_rehash(stored)
