"""Staff generations: a staff token carries one, a token without it is refused, and the
per-process memory reads a staff row at most once per CHECK_TTL_S (concurrent misses share
the read) and admits only what the row still says."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from machiai.staff_generation import CHECK_TTL_S, StaffGenerations, Standing
from machiai.tokens import StaffClaims, TokenError, Tokens

TOKENS = Tokens(["k" * 40])
CLAIMS = StaffClaims("s1", "131001", "clinic", "c1", generation=7)
ROW = Standing(True, "131001", "clinic", "c1", 7)


def test_a_staff_token_carries_its_generation() -> None:
    claims = TOKENS.load_staff(TOKENS.dump_staff(CLAIMS), 60)
    assert (claims.staff_id, claims.role, claims.clinic_id, claims.generation) == (
        "s1",
        "clinic",
        "c1",
        7,
    )


@pytest.mark.parametrize(
    "payload",
    [
        ["s1", "131001", "admin", ""],  # signed before generations: cannot be ended, refused
        ["s1", "131001", "admin", "", -1],
        ["s1", "131001", "admin", "", "1"],
        ["s1", "131001", "admin", "", True],
        ["s1", "131001", "admin", "", 1, "x"],
    ],
)
def test_a_staff_token_without_a_good_generation_is_refused(payload: list[object]) -> None:
    with pytest.raises(TokenError):
        TOKENS.load_staff(TOKENS.staff.dumps(payload), 60)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_one_read_per_staff_member_per_ttl_and_concurrent_misses_share_it() -> None:
    clock = Clock()
    rows = {"s1": ROW}
    reads: list[str] = []

    async def lookup(staff_id: str) -> Standing | None:
        reads.append(staff_id)
        await asyncio.sleep(0.01)
        return rows.get(staff_id)

    generations = StaffGenerations(lookup, clock=clock)
    assert all(await asyncio.gather(*(generations.admits(CLAIMS) for _ in range(50))))
    assert reads == ["s1"] and generations.reads == 1
    rows["s1"] = replace(ROW, generation=8)  # signed out meanwhile
    clock.now += CHECK_TTL_S - 0.01
    assert await generations.admits(CLAIMS)  # remembered: not older than the promise
    assert reads == ["s1"]
    clock.now += 0.01
    assert not await generations.admits(CLAIMS)  # read again once CHECK_TTL_S passed
    assert reads == ["s1", "s1"]
    other = replace(CLAIMS, staff_id="s2")
    assert not await generations.admits(other)  # no such row: nothing admitted
    assert not await generations.admits(other)
    assert reads == ["s1", "s1", "s2"]
    generations.forget("s1")
    assert not await generations.admits(CLAIMS)
    assert reads == ["s1", "s1", "s2", "s1"]


@pytest.mark.parametrize(
    "row",
    [
        replace(ROW, active=False),
        replace(ROW, generation=8),
        replace(ROW, role="operator", clinic_id=None),
        replace(ROW, clinic_id="c2"),
        replace(ROW, municipality_code="271004"),
    ],
)
def test_only_the_row_as_the_token_knew_it_admits(row: Standing) -> None:
    assert ROW.admits(CLAIMS)
    assert not row.admits(CLAIMS)
