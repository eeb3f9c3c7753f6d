"""The outbox's delivery in SQL: fan-out into deliveries, claim with a lease, outcomes,
and what the admin console reads and changes (dead letters, a municipality's channels).

Promise: at-least-once. A message is fanned out exactly once (its outbox row is locked
with SKIP LOCKED and marked published in the transaction that inserts its deliveries; a
delivery is unique per message, channel and recipient). A delivery is claimed in a short
transaction that sets a lease; nothing holds a transaction open across a send. A worker
that dies leaves its claims to come due again when their lease ends.

Times are the worker's clock (``now``), passed in: tests move it instead of sleeping.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from booking.store import pg
from machiai.pg import Conn

CHANNELS = ("log", "email", "webhook")
STATES = ("pending", "sent", "dead")


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    outbox_id: int
    topic: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Contact:
    """Where a booking's messages go: its municipality, the resident's address, language."""

    municipality: str
    email: str | None
    locale: str


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    channel: str
    enabled: bool
    webhook_url: str | None = None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    outbox_id: int
    municipality: str | None
    channel: str
    recipient: str
    locale: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to this worker; ``attempt`` is this attempt's number (1, 2, ...)."""

    delivery_id: int
    outbox_id: int
    topic: str
    payload: dict[str, Any]
    municipality: str | None
    channel: str
    recipient: str
    locale: str
    idempotency_key: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: sent, or not (then ``retry_at``, or dead when None)."""

    delivery_id: int
    attempt: int
    sent: bool
    retry_at: datetime | None = None
    error: str | None = None


Planner = Callable[
    [Sequence[OutboxMessage], Mapping[str, Contact], Mapping[str, Sequence[ChannelConfig]]],
    list[NewDelivery],
]


def _booking_ids(messages: Sequence[OutboxMessage]) -> list[uuid.UUID]:
    found = (pg.parse_uuid(str(m.payload.get("booking_id", ""))) for m in messages)
    return [i for i in found if i is not None]


async def fan_out(conn: Conn, limit: int, now: datetime, plan: Planner) -> tuple[int, int]:
    """Turn up to ``limit`` unpublished outbox rows into deliveries (``plan`` says which)
    and mark them published, in one transaction; (messages, deliveries) made."""
    async with conn.transaction():
        rows = await conn.fetch(
            "SELECT id, topic, payload::text AS payload FROM outbox WHERE published_at IS NULL "
            "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        if not rows:
            return 0, 0
        messages = [OutboxMessage(r["id"], r["topic"], json.loads(r["payload"])) for r in rows]
        contacts = await _contacts(conn, _booking_ids(messages))
        municipalities = {str(m.payload.get("municipality_code", "")) for m in messages}
        municipalities |= {c.municipality for c in contacts.values()}
        channels = await channels_of(conn, sorted(municipalities - {""}))
        planned = plan(messages, contacts, channels)
        made = 0
        if planned:
            made = int(
                (
                    await conn.execute(
                        "INSERT INTO deliveries (outbox_id, municipality_code, channel, recipient, "
                        "locale, idempotency_key, next_attempt_at, created_at) "
                        "SELECT o, m, c, r, l, k, $7, $7 FROM unnest($1::bigint[], $2::text[], "
                        "$3::text[], $4::text[], $5::text[], $6::text[]) AS d(o, m, c, r, l, k) "
                        "ON CONFLICT DO NOTHING",
                        [d.outbox_id for d in planned],
                        [d.municipality for d in planned],
                        [d.channel for d in planned],
                        [d.recipient for d in planned],
                        [d.locale for d in planned],
                        [d.idempotency_key for d in planned],
                        now,
                    )
                ).split()[-1]
            )
        await conn.execute(
            "UPDATE outbox SET published_at = $2 WHERE id = ANY($1::bigint[])",
            [m.outbox_id for m in messages],
            now,
        )
    return len(messages), made


async def _contacts(conn: Conn, booking_ids: list[uuid.UUID]) -> dict[str, Contact]:
    if not booking_ids:
        return {}
    rows = await conn.fetch(
        "SELECT id::text, municipality_code, contact_email, contact_locale FROM bookings "
        "WHERE id = ANY($1::uuid[])",
        booking_ids,
    )
    return {
        r["id"]: Contact(r["municipality_code"], r["contact_email"], r["contact_locale"])
        for r in rows
    }


async def channels_of(conn: Conn, municipalities: Sequence[str]) -> dict[str, list[ChannelConfig]]:
    """Each municipality's configured channels (none configured: absent from the answer)."""
    rows = await conn.fetch(
        "SELECT municipality_code, channel, enabled, webhook_url FROM delivery_channels "
        "WHERE municipality_code = ANY($1::text[]) ORDER BY municipality_code, channel",
        list(municipalities),
    )
    out: dict[str, list[ChannelConfig]] = {}
    for r in rows:
        out.setdefault(r["municipality_code"], []).append(
            ChannelConfig(r["channel"], r["enabled"], r["webhook_url"])
        )
    return out


# Due rows, oldest due first. The claim moves next_attempt_at to the lease's end, so a
# leased row is not due until its lease ends: a dead worker's rows come due by themselves.
CLAIM_SQL = """
WITH due AS (
    SELECT id FROM deliveries
    WHERE state = 'pending' AND next_attempt_at <= $1
    ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE deliveries d
SET attempts = d.attempts + 1, leased_until = $3, next_attempt_at = $3
FROM due, outbox o
WHERE d.id = due.id AND o.id = d.outbox_id
RETURNING d.id, d.outbox_id, o.topic, o.payload::text AS payload, d.municipality_code,
          d.channel, d.recipient, d.locale, d.idempotency_key, d.attempts
"""


async def claim(conn: Conn, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries (one short statement, its own transaction)."""
    rows = await conn.fetch(CLAIM_SQL, now, limit, now + lease)
    return [
        Claimed(
            delivery_id=r["id"],
            outbox_id=r["outbox_id"],
            topic=r["topic"],
            payload=json.loads(r["payload"]),
            municipality=r["municipality_code"],
            channel=r["channel"],
            recipient=r["recipient"],
            locale=r["locale"],
            idempotency_key=r["idempotency_key"],
            attempt=r["attempts"],
        )
        for r in sorted(rows, key=lambda r: int(r["id"]))
    ]


# A failure counts only from the attempt that holds the row now (a worker whose lease ran
# out and was taken over must not reschedule the newer attempt); a success always counts.
RECORD_SQL = """
UPDATE deliveries d
SET state = CASE WHEN r.sent THEN 'sent' WHEN r.retry_at IS NULL THEN 'dead'
                 ELSE 'pending' END::delivery_state,
    sent_at = CASE WHEN r.sent THEN $6::timestamptz END,
    next_attempt_at = CASE WHEN r.sent OR r.retry_at IS NULL THEN d.next_attempt_at
                           ELSE r.retry_at END,
    leased_until = NULL,
    last_error = CASE WHEN r.sent THEN d.last_error ELSE left(r.error, 500) END
FROM unnest($1::bigint[], $2::integer[], $3::boolean[], $4::timestamptz[], $5::text[])
     AS r(id, attempt, sent, retry_at, error)
WHERE d.id = r.id AND d.state = 'pending' AND (r.sent OR d.attempts = r.attempt)
"""


async def record(conn: Conn, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Write the attempts' outcomes in one statement."""
    if not outcomes:
        return
    await conn.execute(
        RECORD_SQL,
        [o.delivery_id for o in outcomes],
        [o.attempt for o in outcomes],
        [o.sent for o in outcomes],
        [o.retry_at for o in outcomes],
        [o.error for o in outcomes],
        now,
    )


# -- the admin console


@dataclass(frozen=True, slots=True)
class DeadDelivery:
    delivery_id: int
    topic: str
    channel: str
    recipient: str
    attempts: int
    last_error: str
    created_at: datetime


async def state_counts(conn: Conn, municipality: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT state::text, count(*) AS n FROM deliveries WHERE municipality_code = $1 "
        "GROUP BY state",
        municipality,
    )
    found = {r["state"]: int(r["n"]) for r in rows}
    return {state: found.get(state, 0) for state in STATES}


async def dead_deliveries(conn: Conn, municipality: str, limit: int) -> list[DeadDelivery]:
    """The municipality's dead letters, newest first."""
    rows = await conn.fetch(
        "SELECT d.id, o.topic, d.channel, d.recipient, d.attempts, "
        "coalesce(d.last_error, '') AS last_error, d.created_at "
        "FROM deliveries d JOIN outbox o ON o.id = d.outbox_id "
        "WHERE d.municipality_code = $1 AND d.state = 'dead' ORDER BY d.id DESC LIMIT $2",
        municipality,
        limit,
    )
    return [
        DeadDelivery(
            r["id"], r["topic"], r["channel"], r["recipient"], r["attempts"], r["last_error"],
            r["created_at"],
        )
        for r in rows
    ]  # fmt: skip


async def retry_dead(
    conn: Conn, municipality: str, delivery_id: int, actor_kind: str, actor_id: str
) -> bool:
    """Make a dead delivery of the municipality due again with a fresh count of attempts,
    audited (booking.delivery.retried); False when there is no such dead delivery."""
    async with conn.transaction():
        before = await conn.fetchrow(
            "SELECT id, state::text, attempts, last_error FROM deliveries "
            "WHERE id = $1 AND municipality_code = $2 AND state = 'dead' FOR UPDATE",
            delivery_id,
            municipality,
        )
        if before is None:
            return False
        after = await conn.fetchrow(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = now(), "
            "leased_until = NULL WHERE id = $1 RETURNING id, state::text, attempts, last_error",
            delivery_id,
        )
        assert after is not None
        await pg.audit(
            conn,
            municipality=municipality,
            actor_kind=actor_kind,
            actor_id=actor_id,
            action="booking.delivery.retried",
            target=str(delivery_id),
            before=before,
            after=after,
        )
    return True


async def set_channels(
    conn: Conn,
    municipality: str,
    configs: Sequence[ChannelConfig],
    actor_kind: str,
    actor_id: str,
) -> bool:
    """Set the municipality's channels to ``configs`` (the others are removed), audited
    (booking.delivery.channels_changed) when anything changed; whether it did."""
    async with conn.transaction():
        # One change of a municipality's channels at a time: the audit's before is true.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('delivery_channels:' || $1))",
                           municipality)  # fmt: skip
        before = await channels_of(conn, [municipality])
        old = before.get(municipality, [])
        if sorted(old, key=lambda c: c.channel) == sorted(configs, key=lambda c: c.channel):
            return False
        await conn.execute(
            "DELETE FROM delivery_channels WHERE municipality_code = $1", municipality
        )
        await conn.executemany(
            "INSERT INTO delivery_channels (municipality_code, channel, enabled, webhook_url) "
            "VALUES ($1, $2, $3, $4)",
            [(municipality, c.channel, c.enabled, c.webhook_url) for c in configs],
        )
        await pg.audit(
            conn,
            municipality=municipality,
            actor_kind=actor_kind,
            actor_id=actor_id,
            action="booking.delivery.channels_changed",
            target=municipality,
            before={"channels": [_shown(c) for c in old]},
            after={"channels": [_shown(c) for c in configs]},
        )
    return True


def _shown(config: ChannelConfig) -> dict[str, Any]:
    return {"channel": config.channel, "enabled": config.enabled, "webhook_url": config.webhook_url}


async def backlog(conn: Conn) -> tuple[int, int]:
    """(messages waiting: outbox rows not fanned out and deliveries pending, deliveries
    dead), over every municipality: the figures the metrics report. Both counts read
    partial indexes (outbox_unpublished_idx, deliveries_due_idx, deliveries_dead_idx)."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL)"
        " + (SELECT count(*) FROM deliveries WHERE state = 'pending') AS waiting,"
        " (SELECT count(*) FROM deliveries WHERE state = 'dead') AS dead"
    )
    assert row is not None
    return int(row["waiting"]), int(row["dead"])
