"""Personal data kept no longer than needed: ``machiai purge --before DATE``.

An event is *finished* when it closed before the cutoff (DATE, 00:00 Japan time) and every
one of its slots ended before it too. Of finished events, the purge removes what
identifies a resident and keeps what counts:

* bookings: the voucher number goes (``purged_at`` says when); slot, clinic, dose, status,
  dates and ``slots.booked`` stay;
* registry rows (voucher number, birth date) of those residents, and, once a municipality
  has no event left that is not finished, every registry row it imported before its last
  event closed;
* used passes of finished events; idempotency records created before the cutoff (they
  serve retries of a few minutes; all municipalities, whatever ``--municipality`` says);
* messages' addresses: deliveries sent or given up before the cutoff (all
  municipalities), and the address, webhook id and link of "your turn is near" messages of
  events closed before it (bookings' own addresses go with their voucher numbers).

A resident with a booking in an event not finished is kept whole (registry row and every
booking): a later dose's rules and a change of it read the earlier doses. A purged resident
is forgotten: no sign-in (no registry row) and no earlier doses, so pick a DATE after which
nobody books a further dose on these records. Audit rows are never edited, the chain would
break: they hold voucher numbers (as actor or target of residents' and operators' actions),
never birth dates (infra/README.md, "Database roles and the audit log"). The purge is
audited itself, in the same transaction (``admin.data.purged``, with the counts); the sealer
links that row into its chain afterwards, like every audit row.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone

import asyncpg

from machiai.pg import Conn

JST = timezone(timedelta(hours=9))
ACTION = "admin.data.purged"


class PurgeRefused(ValueError):
    """The purge was asked for something it will not do (nothing was changed)."""


# $1 cutoff, $2 municipality (NULL: all). One text for counting and for purging.
_SCOPE = """
finished AS MATERIALIZED (
    SELECT e.id, e.municipality_code, e.closes_at FROM events e
    WHERE e.closes_at < $1 AND ($2::text IS NULL OR e.municipality_code = $2)
      AND NOT EXISTS (SELECT 1 FROM slots s WHERE s.event_id = e.id
                      AND s.starts_at + make_interval(mins => s.duration_min) > $1)
),
kept AS MATERIALIZED (
    -- Residents with a booking in an event not finished.
    SELECT DISTINCT b.municipality_code, b.voucher_number
    FROM bookings b JOIN slots s ON s.id = b.slot_id
    WHERE b.voucher_number IS NOT NULL AND ($2::text IS NULL OR b.municipality_code = $2)
      AND s.event_id NOT IN (SELECT id FROM finished)
),
booked AS MATERIALIZED (
    SELECT b.id, b.municipality_code, b.voucher_number
    FROM bookings b JOIN slots s ON s.id = b.slot_id JOIN finished f ON f.id = s.event_id
    WHERE b.voucher_number IS NOT NULL
      AND (b.municipality_code, b.voucher_number) NOT IN (SELECT * FROM kept)
),
gone AS MATERIALIZED (
    SELECT r.municipality_code, r.voucher_number FROM registry r
    WHERE r.imported_at < $1 AND ($2::text IS NULL OR r.municipality_code = $2)
      AND (r.municipality_code, r.voucher_number) NOT IN (SELECT * FROM kept)
      AND ((r.municipality_code, r.voucher_number) IN
                (SELECT municipality_code, voucher_number FROM booked)
           OR (NOT EXISTS (SELECT 1 FROM events e
                           WHERE e.municipality_code = r.municipality_code
                             AND e.id NOT IN (SELECT id FROM finished))
               AND r.imported_at <= (SELECT max(f.closes_at) FROM finished f
                                     WHERE f.municipality_code = r.municipality_code)))
)"""

_PER_MUNICIPALITY = """
SELECT m.code AS municipality,
       (SELECT count(*) FROM finished f WHERE f.municipality_code = m.code) AS events,
       (SELECT count(*) FROM {bookings} x WHERE x.municipality_code = m.code) AS bookings,
       (SELECT count(*) FROM {registry} x WHERE x.municipality_code = m.code) AS registry,
       (SELECT count(*) FROM {passes} x WHERE x.municipality_code = m.code) AS used_passes
FROM municipalities m WHERE $2::text IS NULL OR m.code = $2
ORDER BY m.code
"""

COUNT_SQL = (
    f"WITH {_SCOPE},\n"
    "passes AS (SELECT f.municipality_code FROM used_passes p JOIN finished f "
    "ON f.id = p.event_id)"
    + _PER_MUNICIPALITY.format(bookings="booked", registry="gone", passes="passes")
)

PURGE_SQL = (
    f"WITH {_SCOPE},\n"
    + """
anonymised AS (
    -- The resident's e-mail address goes with the voucher number (issue 15: an address
    -- given for messages is kept no longer than the booking's personal data).
    UPDATE bookings b SET voucher_number = NULL, contact_email = NULL, purged_at = now()
    FROM booked x WHERE b.id = x.id
    RETURNING b.municipality_code
),
deleted AS (
    DELETE FROM registry r USING gone g
    WHERE (r.municipality_code, r.voucher_number) = (g.municipality_code, g.voucher_number)
    RETURNING r.municipality_code
),
passes AS (
    DELETE FROM used_passes p USING finished f WHERE p.event_id = f.id
    RETURNING f.municipality_code
)"""
    + _PER_MUNICIPALITY.format(bookings="anonymised", registry="deleted", passes="passes")
)

IDEMPOTENCY_COUNT_SQL = "SELECT count(*) FROM idempotency_keys WHERE created_at < $1"
IDEMPOTENCY_PURGE_SQL = "DELETE FROM idempotency_keys WHERE created_at < $1"

# Messages (issue 15) hold addresses: a delivery its recipient (an e-mail address), a
# "your turn is near" outbox row the address or webhook id and the link with the ticket.
# Deliveries done with (sent or given up) before the cutoff go, all municipalities (they
# serve delivery, nothing counts them); the turn notices of events closed before it keep
# their event and topic, not whom they were for. Pending deliveries stay (still to send).
_DELIVERIES = "FROM deliveries WHERE created_at < $1 AND state <> 'pending'"
_TURN_NOTICES = """
o.topic = 'waitroom.turn.near' AND o.published_at IS NOT NULL
  AND e.id = o.payload ->> 'event_id' AND e.closes_at < $1
  AND ($2::text IS NULL OR e.municipality_code = $2)
  AND (o.payload ?| ARRAY['email', 'webhook_id', 'link'])"""
MESSAGES_COUNT_SQL = f"""
SELECT (SELECT count(*) {_DELIVERIES})
     + (SELECT count(*) FROM outbox o, events e WHERE {_TURN_NOTICES})
"""
DELIVERIES_PURGE_SQL = f"DELETE {_DELIVERIES}"
TURN_NOTICES_PURGE_SQL = f"""
UPDATE outbox o SET payload = o.payload - 'email' - 'webhook_id' - 'link'
FROM events e WHERE {_TURN_NOTICES}"""


@dataclass(frozen=True, slots=True)
class MunicipalityCounts:
    municipality: str
    events: int  # finished events (kept; only their residents' data goes)
    bookings: int  # bookings whose voucher number goes
    registry: int  # registry rows deleted
    used_passes: int


@dataclass(frozen=True, slots=True)
class PurgeResult:
    cutoff: datetime
    municipalities: list[MunicipalityCounts]
    idempotency_records: int
    messages: int  # deliveries done with, and turn notices' addresses (see _DELIVERIES)
    applied: bool
    audit_id: int | None  # the audit row of an applied purge that removed something

    @property
    def removes_anything(self) -> bool:
        return (
            self.idempotency_records > 0
            or self.messages > 0
            or any(m.bookings or m.registry or m.used_passes for m in self.municipalities)
        )


def cutoff_of(day: date) -> datetime:
    """DATE means its first moment in Japan."""
    return datetime.combine(day, time(), JST)


async def purge_personal_data(
    conn: Conn, before: date, municipality: str | None = None, *, apply: bool = False
) -> PurgeResult:
    """Count (and with ``apply``, remove) the personal data of events finished before
    ``before``, in one transaction; an applied purge that removed anything is audited in it.
    Keeps every count and every audit row: ``machiai audit verify`` passes afterwards."""
    cutoff = cutoff_of(before)
    if cutoff > datetime.now(JST):
        raise PurgeRefused(f"--before {before.isoformat()} is in the future")
    async with conn.transaction():
        if not apply:
            rows = await conn.fetch(COUNT_SQL, cutoff, municipality)
            idem = int(await conn.fetchval(IDEMPOTENCY_COUNT_SQL, cutoff))
            messages = int(await conn.fetchval(MESSAGES_COUNT_SQL, cutoff, municipality))
        else:
            rows = await conn.fetch(PURGE_SQL, cutoff, municipality)
            idem = int((await conn.execute(IDEMPOTENCY_PURGE_SQL, cutoff)).split()[-1])
            messages = int((await conn.execute(DELIVERIES_PURGE_SQL, cutoff)).split()[-1])
            messages += int(
                (await conn.execute(TURN_NOTICES_PURGE_SQL, cutoff, municipality)).split()[-1]
            )
        counts = [
            MunicipalityCounts(**dict(r))
            for r in rows
            if r["events"] or r["bookings"] or r["registry"] or r["used_passes"]
        ]
        result = PurgeResult(cutoff, counts, idem, messages, apply, None)
        if apply and result.removes_anything:
            audit_id = await conn.fetchval(
                "INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, "
                "target, after) VALUES ($1, 'system', 'machiai purge', $2, $3, $4::jsonb) "
                "RETURNING id",
                municipality,
                ACTION,
                before.isoformat(),
                json.dumps(
                    {
                        "before": before.isoformat(),
                        "cutoff": cutoff.isoformat(),
                        "municipalities": [asdict(m) for m in counts],
                        "idempotency_records": idem,
                        "messages": messages,
                    },
                    ensure_ascii=False,
                ),
            )
            result = PurgeResult(cutoff, counts, idem, messages, apply, int(audit_id))
    return result


async def purge_database(
    dsn: str, before: date, municipality: str | None = None, *, apply: bool = False
) -> PurgeResult:
    conn = await asyncpg.connect(dsn)
    try:
        return await purge_personal_data(conn, before, municipality, apply=apply)
    finally:
        await conn.close()


def describe(result: PurgeResult) -> str:
    cutoff = result.cutoff.strftime("%Y-%m-%d %H:%M Japan time")
    lines = [f"events finished before {cutoff}:"]
    if not result.municipalities:
        lines[0] += " none"
    verb = "" if result.applied else "to go: "
    for m in result.municipalities:
        lines.append(
            f"  {m.municipality}: {m.events} events; {verb}{m.bookings} booking voucher numbers, "
            f"{m.registry} registry rows, {m.used_passes} used passes"
        )
    lines.append(f"idempotency records created before it: {result.idempotency_records}")
    lines.append(f"messages' addresses (deliveries done, turn notices): {result.messages}")
    if not result.removes_anything:
        lines.append("nothing to purge")
    elif not result.applied:
        lines.append("dry run: nothing changed (add --apply to purge)")
    else:
        lines.append(f"purged; audited as {ACTION} (audit row {result.audit_id})")
    return "\n".join(lines)
