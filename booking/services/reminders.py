"""Day-before reminders: once a day per municipality, one outbox row per confirmed booking
of the next day (Japan time), which the delivery worker sends.

Invariant: a (municipality, day) is written once, however often and from however many
processes the job runs (booking.store.pg_reminders claims the day in the statement that
writes the rows). The daily trigger only decides *when* to try; trying twice is harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg

from booking.store import pg, pg_reminders
from booking.store.pg_reminders import JST, RunResult

log = logging.getLogger("booking.reminders")


@dataclass(frozen=True, slots=True)
class Reminded:
    municipality: str
    day: date
    result: RunResult


class UnknownMunicipality(ValueError):
    """``machiai remind --municipality`` names no municipality of the database."""


def describe(r: Reminded) -> str:
    """One line of ``machiai remind``'s report."""
    tomorrow = r.day + timedelta(days=1)
    if r.result.claimed:
        written = r.result.written
        return f"{r.municipality} {r.day}: {written} reminders (appointments on {tomorrow})"
    return f"{r.municipality} {r.day}: written before; nothing written now"


def today_jst(now: datetime | None = None) -> date:
    return (now or datetime.now(JST)).astimezone(JST).date()


async def remind_day(pool: asyncpg.Pool, municipality: str, day: date) -> RunResult:
    """Write the reminders of ``municipality``'s appointments on the day after ``day``."""
    async with pg.acquire(pool) as conn:
        return await pg_reminders.write_reminders(conn, municipality, day)


async def remind(pool: asyncpg.Pool, day: date, municipality: str | None = None) -> list[Reminded]:
    """The job: ``municipality`` (default: every one) for ``day``."""
    async with pg.acquire(pool) as conn:
        codes = await pg_reminders.municipalities(conn)
    if municipality is not None:
        if municipality not in codes:
            raise UnknownMunicipality(f"no municipality {municipality!r}")
        codes = [municipality]
    return [Reminded(code, day, await remind_day(pool, code, day)) for code in codes]


def due_day(now: datetime, at_min: int | None) -> date | None:
    """The day whose reminders are due at ``now``: today (Japan time) once its time of day
    ``at_min`` has come; None before it (or when reminders are off)."""
    if at_min is None:
        return None
    local = now.astimezone(JST)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return local.date() if local >= midnight + timedelta(minutes=at_min) else None


async def remind_when_due(
    pool: asyncpg.Pool, now: datetime, at_min: int | None, done: set[tuple[str, date]]
) -> list[Reminded]:
    """What booking's background loop calls: the due day's reminders of every municipality
    not yet written. ``done`` remembers, in this process, the days already settled (here
    or by another process), so the loop reads ``reminder_runs`` once per municipality
    and day, not every turn."""
    day = due_day(now, at_min)
    if day is None:
        return []
    written: list[Reminded] = []
    async with pg.acquire(pool) as conn:
        codes = await pg_reminders.municipalities(conn)
    for code in codes:
        if (code, day) in done:
            continue
        async with pg.acquire(pool) as conn:
            already = await pg_reminders.ran(conn, code, day)
        if not already:
            result = await remind_day(pool, code, day)
            if result.claimed:
                written.append(Reminded(code, day, result))
                log.info("reminders for %s on %s: %d", code, day, result.written)
        done.add((code, day))
    return written


async def remind_database(
    database_url: str, day: date, municipality: str | None = None
) -> list[Reminded]:
    """``machiai remind``: the job on the database at ``database_url``."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        return await remind(pool, day, municipality)
    finally:
        await pool.close()
