"""The pre-queue shuffle: a keyed pseudo-random permutation of [0, n), no per-resident storage.

At opening, ``n`` (residents who arrived in the pre-queue) is frozen and a
random seed chosen (Redis, atomically with the freeze). Pre-queue ticket
number ``p`` then stands at line index ``permute(p, n, seed)``, ahead of every
later arrival (index ``n + arrival number``). The seed is published after
opening, so anyone can recompute every position:

    permutation on [0, n): a balanced Feistel network over 2k bits, where
    2k = the smallest even bit width with 2**2k >= n (at least 2), 6 rounds;
    round r maps (L, R) to (R, L xor F_r(R)) with
        F_r(R) = first 8 bytes, big-endian, of BLAKE2b(key=bytes.fromhex(seed),
                 data = R as 8 bytes big-endian + r as 1 byte, digest_size=8) mod 2**k;
    x = L * 2**k + R; values >= n are fed through again (cycle walking) until < n.

A Feistel network is a bijection for any round function, and cycle walking
keeps it one on [0, n); with a keyed PRF as round function the result is a
pseudo-random permutation, so every pre-queue resident is equally likely to
get every place.
"""

from __future__ import annotations

import hashlib

ROUNDS = 6
# What the public page and the seed endpoint say the method is (the docstring gives every byte).
ALGORITHM = (
    "waitroom.services.prequeue_shuffle.permute(p, prequeue_count, seed): 6-round balanced "
    "Feistel network, round function keyed BLAKE2b-64, cycle walking; pre-queue ticket p "
    "stands at line index permute(p), later arrival a at prequeue_count + a."
)


def _half_bits(n: int) -> int:
    bits = max(2, (n - 1).bit_length())
    return (bits + 1) // 2


def _feistel(x: int, half: int, key: bytes) -> int:
    mask = (1 << half) - 1
    left, right = x >> half, x & mask
    for rnd in range(ROUNDS):
        digest = hashlib.blake2b(
            right.to_bytes(8, "big") + bytes((rnd,)), key=key, digest_size=8
        ).digest()
        left, right = right, left ^ (int.from_bytes(digest, "big") & mask)
    return (left << half) | right


def permute(index: int, n: int, seed_hex: str) -> int:
    """The line index of pre-queue number ``index`` among ``n``; a bijection on [0, n)."""
    if not 0 <= index < n:
        raise ValueError(f"pre-queue number {index} outside [0, {n})")
    if n == 1:
        return 0
    key = bytes.fromhex(seed_hex)[:64] or b"\0"
    half = _half_bits(n)
    x = _feistel(index, half, key)
    while x >= n:
        x = _feistel(x, half, key)
    return x
