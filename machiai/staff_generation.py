"""Signing staff out everywhere: a staff token holds only while its row's generation does.

A staff token carries the generation its staff row had when it was signed (migration 0008).
Deactivating, a role change, a new password and signing out add one to it
(``bump_generation`` or the same ``generation + 1`` in the statement that changes the row),
and both services check every staff request against the row: still active, same
municipality, role and clinic, same generation (``Standing.admits``).

Promise: such a change stops every token signed before it within ``CHECK_TTL_S`` in every
process, and costs at most one indexed read per staff member per ``CHECK_TTL_S`` per
process (``StaffGenerations``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg

from machiai.errors import Busy
from machiai.pg import Conn
from machiai.single_flight import SingleFlight
from machiai.tokens import StaffClaims

# Promise: a revoked staff token stops working within this many seconds.
CHECK_TTL_S = 2.0
# Staff rows remembered per process; beyond it the memory starts over (more reads, no harm).
MAX_REMEMBERED = 50_000
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
)


@dataclass(frozen=True, slots=True)
class Standing:
    """What a staff row says now about the tokens signed for it."""

    active: bool
    municipality_code: str
    role: str
    clinic_id: str | None
    generation: int

    def admits(self, claims: StaffClaims) -> bool:
        return (
            self.active
            and self.generation == claims.generation
            and self.municipality_code == claims.municipality_code
            and self.role == claims.role
            and self.clinic_id == claims.clinic_id
        )


async def fetch_standing(conn: Conn, staff_id: str) -> Standing | None:
    """The staff row's standing (one primary-key read), or None when there is no such row."""
    try:
        key = uuid.UUID(staff_id)
    except ValueError:
        return None  # not a staff row's id: no row has it
    row = await conn.fetchrow(
        "SELECT active, municipality_code, role::text AS role, clinic_id::text AS clinic_id, "
        "generation FROM staff WHERE id = $1",
        key,
    )
    if row is None:
        return None
    return Standing(
        row["active"], row["municipality_code"], row["role"], row["clinic_id"], row["generation"]
    )


async def bump_generation(conn: Conn, staff_id: str) -> bool:
    """Ends every token of this staff member; False when there is no such row."""
    done = await conn.execute(
        "UPDATE staff SET generation = generation + 1 WHERE id = $1", uuid.UUID(staff_id)
    )
    return done != "UPDATE 0"


Lookup = Callable[[str], Coroutine[Any, Any, Standing | None]]


def reader(pool: asyncpg.Pool, timeout_s: float) -> Lookup:
    """A lookup on ``pool``; Postgres unreachable (or slower than ``timeout_s`` to hand out
    a connection) is ``busy``, never a refusal of a token that may be good."""

    async def lookup(staff_id: str) -> Standing | None:
        try:
            async with pool.acquire(timeout=timeout_s) as conn:
                return await fetch_standing(conn, staff_id)
        except UNAVAILABLE as exc:
            raise Busy() from exc

    return lookup


class StaffGenerations:
    """Per-process memory of staff rows' standing, each read again once ``ttl_s`` passed
    since its read began (so what it answers is never older than that). Concurrent misses
    for one staff member share one read."""

    def __init__(
        self,
        lookup: Lookup,
        *,
        ttl_s: float = CHECK_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._clock = clock
        self._seen: dict[str, tuple[float, Standing | None]] = {}
        self._reading: SingleFlight[str, Standing | None] = SingleFlight()

    @property
    def reads(self) -> int:
        """Lookups started: what Postgres was really asked."""
        return self._reading.started

    async def admits(self, claims: StaffClaims) -> bool:
        """Whether the staff row still stands behind ``claims`` (as of at most ``ttl_s`` ago)."""
        seen = self._seen.get(claims.staff_id)
        if seen is not None and seen[0] > self._clock():
            standing = seen[1]
        else:
            standing = await self._reading.run(claims.staff_id, lambda: self._read(claims.staff_id))
        return standing is not None and standing.admits(claims)

    def forget(self, staff_id: str) -> None:
        """Read this staff member's row again on their next request (this process changed it)."""
        self._seen.pop(staff_id, None)

    async def _read(self, staff_id: str) -> Standing | None:
        started = self._clock()
        standing = await self._lookup(staff_id)
        if len(self._seen) >= MAX_REMEMBERED:
            self._seen.clear()
        self._seen[staff_id] = (started + self._ttl_s, standing)
        return standing
