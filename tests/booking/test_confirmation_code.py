"""Confirmation codes: eight letters read out over the phone, every letter equally likely."""

from __future__ import annotations

import secrets
from collections import Counter

import pytest

from booking.store import pg

ALPHABET = pg._CODE_ALPHABET


def test_codes_are_eight_letters_without_look_alikes() -> None:
    codes = [pg.confirmation_code() for _ in range(2_000)]
    assert all(len(code) == 8 for code in codes)
    letters = Counter("".join(codes))
    assert set(letters) == set(ALPHABET)  # 16,000 letters: each of the 26 shows up
    assert not set(ALPHABET) & set("0O1I2Z5S8B")
    assert len(set(codes)) == len(codes)


def test_bytes_that_would_favour_some_letters_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    # 256 is not a multiple of 26: the 22 highest byte values would give the first 22
    # letters a tenth preimage each. They must be skipped, not folded in.
    size = len(ALPHABET)
    high = list(range(256 - 256 % size, 256))
    # Unfiltered, 240.. would come first and read as ALPHABET[6:14].
    chunks = iter([bytes(high[6:]), bytes(high[:6] + list(range(10)))])
    monkeypatch.setattr(secrets, "token_bytes", lambda n: next(chunks))
    assert pg.confirmation_code() == ALPHABET[:8]
