"""The audit log's hash chains: sealing, a row's canonical encoding, and the verifier behind
``machiai audit verify``.

Writers only append audit rows, in the transaction of the change they record. The sealer,
the SQL function ``audit_seal`` of migration 0006 (which says why it never skips a row),
links the committed rows afterwards into one chain per municipality (rows without one form
their own): each row's seal (audit_seals) holds its position, the previous seal's hash and
its own hash over that and the row's values. Booking seals every second
(booking/background.py); a deployment without booking runs ``machiai audit seal`` from
cron. Chain order is seal order: a row committed late follows rows with higher ids.

The verifier recomputes every hash here, in Python, from the values it reads — it trusts no
SQL function, which whoever edited the rows could have replaced — and names, per chain, the
first row that was edited, deleted or inserted, and rows left unsealed longer than a limit:
until its seal a row can be changed unseen (about a second when the sealer runs). What it
cannot see: a chain rewritten from some seal to its end together with its head row; keep
the heads it prints somewhere else to catch that too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg

from machiai.pg import Conn

GENESIS = bytes(32)  # the "previous hash" of a chain's first seal
SEAL_BATCH_ROWS = 5000  # rows per audit_seal call
MAX_UNSEALED_S = 60.0  # verify: an older row without a seal is an error
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# before/after as their jsonb text (jsonb_out): the very text audit_seal hashed.
COLUMNS = (
    "id, at, municipality_code, actor_kind, actor_id, action, target, "
    "before::text AS before, after::text AS after, request_id"
)


def field_bytes(value: str | None) -> bytes:
    """One field: ``N`` for NULL, else ``S<byte length>:<utf-8 bytes>``."""
    if value is None:
        return b"N"
    data = value.encode("utf-8")
    return b"S%d:%s" % (len(data), data)


def epoch_us(at: datetime) -> int:
    """Microseconds since 1970-01-01 UTC, exactly (integer arithmetic)."""
    return (at - _EPOCH) // _US


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit row's values; ``before``/``after`` in their jsonb text form."""

    id: int
    at: datetime
    municipality_code: str | None
    actor_kind: str
    actor_id: str
    action: str
    target: str
    before: str | None
    after: str | None
    request_id: str | None

    @classmethod
    def of(cls, record: asyncpg.Record) -> AuditRow:
        return cls(**{f.name: record[f.name] for f in fields(cls)})

    def encoding(self, seq: int) -> bytes:
        """The bytes hashed after the previous hash, at position ``seq`` (migration 0006
        has the same rule)."""
        values = (
            str(self.id),
            str(seq),
            str(epoch_us(self.at)),
            self.municipality_code,
            self.actor_kind,
            self.actor_id,
            self.action,
            self.target,
            self.before,
            self.after,
            self.request_id,
        )
        return b"".join(field_bytes(v) for v in values)


def seal_hash(prev_hash: bytes, row: AuditRow, seq: int) -> bytes:
    return hashlib.sha256(prev_hash + row.encoding(seq)).digest()


@dataclass(frozen=True, slots=True)
class Seal:
    """A seal (audit_seals) with the row it seals; ``row`` None: that row is gone."""

    audit_id: int
    seq: int
    prev_hash: bytes
    hash: bytes
    row: AuditRow | None

    @classmethod
    def of(cls, record: asyncpg.Record) -> Seal:
        row = None if record["id"] is None else AuditRow.of(record)
        return cls(record["audit_id"], record["seq"], record["prev_hash"], record["hash"], row)

    @property
    def sound(self) -> bool:
        """Its row is there and still gives its hash."""
        return self.row is not None and seal_hash(self.prev_hash, self.row, self.seq) == self.hash


# Seals in chain order, each with its row's values (NULLs when the row is gone).
SEALS_SQL = f"""
SELECT s.municipality_code AS chain_code, s.audit_id, s.seq, s.prev_hash, s.hash, a.*
FROM audit_seals s LEFT JOIN (SELECT {COLUMNS} FROM audit_log) a ON a.id = s.audit_id
WHERE $1::text IS NULL OR s.chain = 'm' || $1
ORDER BY s.chain, s.seq, s.audit_id
"""
# Rows without a seal, per chain; $2: the age (s) past which they are overdue.
UNSEALED_SQL = """
SELECT a.municipality_code, count(*) AS rows,
       count(*) FILTER (WHERE a.at < now() - make_interval(secs => $2)) AS overdue,
       min(a.id) FILTER (WHERE a.at < now() - make_interval(secs => $2)) AS first_overdue,
       extract(epoch FROM now() - min(a.at))::float8 AS oldest_s
FROM audit_log a
WHERE NOT EXISTS (SELECT FROM audit_seals s WHERE s.audit_id = a.id)
  AND ($1::text IS NULL OR a.municipality_code = $1)
GROUP BY a.municipality_code
"""


async def seal(conn: Conn, max_rows: int = SEAL_BATCH_ROWS) -> int:
    """Seal up to ``max_rows`` committed audit rows (one ``audit_seal`` batch): how many;
    0 when none was waiting or another process is sealing at this moment."""
    return int(await conn.fetchval("SELECT audit_seal($1)", max_rows))


async def seal_waiting(conn: Conn, max_rows: int = SEAL_BATCH_ROWS) -> int:
    """Seal batch after batch until one is not full: every row committed before the call
    is then sealed (unless another process was sealing them). How many this call sealed."""
    total = 0
    while True:
        sealed = await seal(conn, max_rows)
        total += sealed
        if sealed < max_rows:
            return total


async def seal_database(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await seal_waiting(conn)
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class Head:
    """Where the database says a chain ends (audit_heads)."""

    municipality_code: str | None
    last_id: int
    last_seq: int
    last_hash: bytes


class Fault(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    UNSEALED = "unsealed"  # left without a seal longer than the limit


@dataclass(frozen=True, slots=True)
class Problem:
    municipality_code: str | None
    fault: Fault
    row_id: int | None  # the row named (None: rows gone, no row left to name)
    message: str


@dataclass(frozen=True, slots=True)
class _Link:
    """An accepted seal: its place, its hash, its row's id (None: the chain's start)."""

    seq: int
    hash: bytes
    id: int | None

    @classmethod
    def of(cls, seal: Seal) -> _Link:
        return cls(seal.seq, seal.hash, seal.audit_id)


_START = _Link(0, GENESIS, None)


def _fits(seal: Seal, after: _Link) -> bool:
    return seal.seq == after.seq + 1 and seal.prev_hash == after.hash and seal.sound


def _name(link: _Link) -> str:
    return "the chain's start" if link.id is None else f"row {link.id}"


@dataclass
class ChainCheck:
    """One chain, fed its seals in position order. A seal that does not follow is judged
    once the seal after it (or the head) is known."""

    municipality_code: str | None
    head: Head | None
    rows: int = 0
    tip: _Link = _START
    before_tip: _Link | None = None
    pending: Seal | None = None
    past_head: int | None = None  # first accepted row beyond the head's position
    problem: Problem | None = field(default=None)

    def feed(self, seal: Seal) -> None:
        self.rows += 1
        if self.problem is not None:
            return
        if self.pending is not None:
            self._judge(self.pending, seal)
        elif _fits(seal, self.tip):
            self.before_tip, self.tip = self.tip, _Link.of(seal)
            if self.head is not None and seal.seq == self.head.last_seq + 1:
                self.past_head = seal.audit_id
        else:
            self.pending = seal

    def finish(self) -> Problem | None:
        if self.problem is None and self.pending is not None:
            self._judge(self.pending, None)
        if self.problem is None:
            self._check_tail()
        return self.problem

    def _fail(self, fault: Fault, row_id: int | None, message: str) -> None:
        self.problem = Problem(self.municipality_code, fault, row_id, message)

    def _goes_on_from(self, link: _Link, following: Seal | None) -> bool:
        """The rest of the chain continues from ``link``: the next seal follows it, or
        there is no next seal and the head is ``link``."""
        if following is not None:
            return _fits(following, link)
        head = self.head
        return head is not None and (head.last_seq, head.last_hash) == (link.seq, link.hash)

    def _judge(self, seal: Seal, following: Seal | None) -> None:
        """``seal`` does not follow the last accepted one (tip); say what happened."""
        tip, before, row_id = self.tip, self.before_tip, seal.audit_id
        after = f"row {following.audit_id}" if following is not None else "the recorded head"
        if self._goes_on_from(tip, following):
            self._fail(
                Fault.INSERTED,
                row_id,
                f"row {row_id} was inserted: the chain goes on from {_name(tip)} to {after}",
            )
        elif (
            before is not None
            and tip.id is not None
            and seal.sound
            and (seal.seq, seal.prev_hash) == (tip.seq, before.hash)
        ):
            # Two seals claim one place; the chain goes on from the genuine one.
            forged, kept = (
                (tip.id, row_id)
                if self._goes_on_from(_Link.of(seal), following)
                else (row_id, tip.id)
            )
            self._fail(
                Fault.INSERTED,
                forged,
                f"row {forged} was inserted: it claims position {seal.seq}, which row {kept} holds",
            )
        elif seal.row is None:
            self._fail(
                Fault.DELETED,
                row_id,
                f"row {row_id} was deleted: its seal (position {seal.seq}) remains",
            )
        elif not seal.sound:
            self._fail(
                Fault.EDITED, row_id, f"row {row_id} was edited: its values no longer give its hash"
            )
        elif seal.seq > tip.seq + 1:
            first, last = tip.seq + 1, seal.seq - 1
            where = f"position {first}" if first == last else f"positions {first}-{last}"
            self._fail(
                Fault.DELETED,
                row_id,
                f"rows were deleted between {_name(tip)} and row {row_id}: {where} missing",
            )
        elif seal.seq == tip.seq + 1 and tip.id is not None:
            self._fail(
                Fault.EDITED,
                tip.id,
                f"row {tip.id} was edited and its hash recomputed (or row {row_id} "
                f"rewritten): row {row_id}, next in the chain, was linked to another hash",
            )
        else:
            self._fail(
                Fault.INSERTED,
                row_id,
                f"row {row_id} was inserted: it claims position {seal.seq}, which "
                "does not follow " + _name(tip),
            )

    def _check_tail(self) -> None:
        head, tip = self.head, self.tip
        if head is None:
            if self.rows:
                self._fail(Fault.DELETED, None, "the chain's head (audit_heads) was deleted")
            return
        if head.last_seq > tip.seq:
            self._fail(
                Fault.DELETED,
                None,
                f"rows were deleted at the end: the head records position {head.last_seq} "
                f"(row {head.last_id}), the chain ends at {_name(tip)} (position {tip.seq})",
            )
        elif head.last_seq < tip.seq:
            self._fail(
                Fault.INSERTED,
                self.past_head,
                f"row {self.past_head} was inserted after the last row the head records "
                f"(row {head.last_id})",
            )
        elif head.last_hash != tip.hash:
            self._fail(
                Fault.EDITED,
                tip.id,
                f"{_name(tip)} is not the row the head records: edited with its hash "
                "recomputed, or the chain rewritten up to it",
            )


@dataclass(frozen=True, slots=True)
class ChainReport:
    municipality_code: str | None
    rows: int  # sealed
    head: Head | None
    problem: Problem | None  # the chain's first edited, deleted or inserted row
    unsealed: int = 0  # rows waiting for their seal
    overdue: Problem | None = None  # rows waiting longer than the limit

    @property
    def intact(self) -> bool:
        return self.problem is None and self.overdue is None


def _overdue(record: asyncpg.Record, max_unsealed_s: float) -> Problem | None:
    if not record["overdue"]:
        return None
    code, count, first = record["municipality_code"], record["overdue"], record["first_overdue"]
    others = f" ({count - 1:,} more)" if count > 1 else ""
    return Problem(
        code,
        Fault.UNSEALED,
        first,
        f"row {first}{others} not sealed {max_unsealed_s:g} s after it was written (the "
        f"oldest {record['oldest_s']:,.0f} s ago): it could have been changed unseen; is the "
        "sealer running (booking, or `machiai audit seal` from cron)?",
    )


async def verify_chains(
    conn: Conn, municipality: str | None = None, max_unsealed_s: float = MAX_UNSEALED_S
) -> list[ChainReport]:
    """Every chain (or ``municipality``'s alone), checked in one consistent snapshot;
    chains in code order, the chain without a municipality first."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head_rows = await conn.fetch(
            "SELECT municipality_code, last_id, last_seq, last_hash FROM audit_heads "
            "WHERE $1::text IS NULL OR chain = 'm' || $1",
            municipality,
        )
        heads = {r["municipality_code"]: Head(**dict(r)) for r in head_rows}
        checks: dict[str | None, ChainCheck] = {
            code: ChainCheck(code, head) for code, head in heads.items()
        }
        async for record in conn.cursor(SEALS_SQL, municipality, prefetch=2000):
            code = record["chain_code"]
            check = checks.get(code)
            if check is None:
                check = checks[code] = ChainCheck(code, None)
            check.feed(Seal.of(record))
        unsealed = {
            r["municipality_code"]: r
            for r in await conn.fetch(UNSEALED_SQL, municipality, max_unsealed_s)
        }
    for code in unsealed.keys() - checks.keys():
        checks[code] = ChainCheck(code, None)
    ordered = sorted(
        checks.values(), key=lambda c: (c.municipality_code is not None, c.municipality_code or "")
    )
    reports = []
    for c in ordered:
        waiting = unsealed.get(c.municipality_code)
        reports.append(
            ChainReport(
                c.municipality_code,
                c.rows,
                c.head,
                c.finish(),
                0 if waiting is None else int(waiting["rows"]),
                None if waiting is None else _overdue(waiting, max_unsealed_s),
            )
        )
    return reports


async def verify_database(
    dsn: str, municipality: str | None = None, max_unsealed_s: float = MAX_UNSEALED_S
) -> list[ChainReport]:
    conn = await asyncpg.connect(dsn)
    try:
        return await verify_chains(conn, municipality, max_unsealed_s)
    finally:
        await conn.close()


def chain_name(municipality: str | None) -> str:
    return "(no municipality)" if municipality is None else municipality


def describe(
    reports: list[ChainReport],
    municipality: str | None = None,
    max_unsealed_s: float = MAX_UNSEALED_S,
) -> tuple[bool, str, str]:
    """(intact, what goes to stdout, what goes to stderr) of a verification: every chain
    with its row count and head (keep the heads elsewhere: a later run must reach them)
    and its rows still waiting for a seal, then every broken chain's first fault and every
    chain's rows left unsealed too long."""
    if not reports:
        where = f" for municipality {municipality}" if municipality else ""
        return False, "", f"machiai audit verify: no audit rows{where}"
    rows = sum(r.rows for r in reports)
    waiting = sum(r.unsealed for r in reports)
    noun = "chain" if len(reports) == 1 else "chains"
    out = []
    for r in reports:
        line = f"  {chain_name(r.municipality_code)}: {r.rows:,} rows sealed"
        if r.head is not None:
            line += (
                f", head: position {r.head.last_seq}, row {r.head.last_id}, "
                f"sha256 {r.head.last_hash.hex()}"
            )
        if r.unsealed:
            line += f"; {r.unsealed:,} not sealed yet"
        out.append(line + ("" if r.intact else " BROKEN" if r.problem else " LATE"))
    if all(r.intact for r in reports):
        summary = f"audit log intact: {len(reports)} {noun}, {rows:,} rows sealed"
        if waiting:
            summary += f", {waiting:,} not sealed yet (under {max_unsealed_s:g} s old)"
        return True, "\n".join([summary, *out]), ""
    err = []
    for p in [p for r in reports for p in (r.problem, r.overdue) if p is not None]:
        where = chain_name(None) if p.municipality_code is None else "municipality "
        err.append(f"{where}{p.municipality_code or ''}: {p.message}")
    broken = sum(r.problem is not None for r in reports)
    late = sum(r.overdue is not None for r in reports)
    if broken:
        err.append(f"audit log BROKEN: {broken} of {len(reports)} {noun}")
    if late:
        err.append(
            f"audit log NOT SEALED IN TIME: rows older than {max_unsealed_s:g} s without a "
            f"seal in {late} of {len(reports)} {noun}"
        )
    return False, "\n".join(out), "\n".join(err)
