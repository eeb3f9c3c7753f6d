"""The audit log's hash chains: writers only append, the sealer links committed rows in
order and never skips one however transactions interleave; intact chains verify; an edited,
deleted or inserted row is named, and so is a row left unsealed too long; the encoding is
reproduced in Python for any values; the application's role may append and seal but not
change."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machiai import cli
from machiai.audit import (
    COLUMNS,
    GENESIS,
    AuditRow,
    ChainReport,
    Fault,
    Seal,
    epoch_us,
    field_bytes,
    seal,
    seal_hash,
    seal_waiting,
    verify_chains,
)
from machiai.migrate import apply_migrations, load_migrations
from machiai.pg import Conn
from tests.servers import PostgresForTests

A, B = "131001", "271004"
INSERT = (
    "INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, target, before, "
    "after, request_id) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8) RETURNING id"
)
SEALS = (
    f"SELECT s.audit_id, s.seq, s.prev_hash, s.hash, a.* FROM audit_seals s "
    f"LEFT JOIN (SELECT {COLUMNS} FROM audit_log) a ON a.id = s.audit_id "
    "WHERE s.municipality_code IS NOT DISTINCT FROM $1 ORDER BY s.seq"
)
UNSEALED = (
    "SELECT count(*) FROM audit_log a "
    "WHERE NOT EXISTS (SELECT FROM audit_seals s WHERE s.audit_id = a.id)"
)


async def write(
    conn: Conn | asyncpg.Pool,
    municipality: str | None = A,
    *,
    action: str = "booking.slot.published",
    before: Any = None,
    after: Any = None,
    actor_kind: str = "staff",
    actor_id: str = "staff-1",
    target: str = "t",
    request_id: str | None = None,
) -> int:
    row_id = await conn.fetchval(
        INSERT,
        municipality,
        actor_kind,
        actor_id,
        action,
        target,
        None if before is None else json.dumps(before),
        None if after is None else json.dumps(after),
        request_id,
    )
    assert isinstance(row_id, int)
    return row_id


async def seal_all(db: asyncpg.Pool) -> int:
    async with db.acquire() as conn:
        return await seal_waiting(conn)


async def skip_ids(conn: Conn | asyncpg.Pool, n: int = 10) -> None:
    """Leave room in the id sequence, where a forger could put a row."""
    await conn.execute("SELECT setval('audit_log_id_seq', nextval('audit_log_id_seq') + $1)", n)


async def seals_of(conn: Conn | asyncpg.Pool, municipality: str | None) -> list[Seal]:
    return [Seal.of(r) for r in await conn.fetch(SEALS, municipality)]


async def row_of(conn: Conn | asyncpg.Pool, row_id: int) -> AuditRow:
    record = await conn.fetchrow(f"SELECT {COLUMNS} FROM audit_log WHERE id = $1", row_id)
    assert record is not None
    return AuditRow.of(record)


async def problems(
    db: asyncpg.Pool, municipality: str | None = None, max_unsealed_s: float = 60.0
) -> list[ChainReport]:
    async with db.acquire() as conn:
        reports = await verify_chains(conn, municipality, max_unsealed_s)
    return [r for r in reports if not r.intact]


async def verify_chains_of(db: asyncpg.Pool) -> list[ChainReport]:
    async with db.acquire() as conn:
        return await verify_chains(conn)


async def tamper(db: asyncpg.Pool, sql: str, *args: Any) -> None:
    """As a superuser bypassing the triggers, as a tamperer would have to."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)


async def a_chain(db: asyncpg.Pool, n: int = 6) -> list[int]:
    """``n`` rows of municipality A with gaps in the ids between them, and rows of B and of
    no municipality written in between; all sealed."""
    ids = []
    for i in range(n):
        ids.append(await write(db, A, after={"i": i}))
        await write(db, B, after={"i": i})
        await write(db, None, action="waitroom.event.clock_state")
        await skip_ids(db)
    await seal_all(db)
    return ids


async def forge(db: asyncpg.Pool, row: AuditRow, seq: int, prev_hash: bytes, hash_: bytes) -> None:
    """A row and its seal, inserted by a tamperer who also dropped the one-seal-per-position
    constraint (an owner may)."""
    await tamper(
        db, "ALTER TABLE audit_seals DROP CONSTRAINT IF EXISTS audit_seals_one_per_position"
    )
    await tamper(
        db,
        "INSERT INTO audit_log (id, at, municipality_code, actor_kind, actor_id, action, target) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        row.id,
        row.at,
        row.municipality_code,
        row.actor_kind,
        row.actor_id,
        row.action,
        row.target,
    )
    await tamper(
        db,
        "INSERT INTO audit_seals (audit_id, chain, municipality_code, seq, prev_hash, hash) "
        "VALUES ($1, 'm' || $2, $2, $3, $4, $5)",
        row.id,
        row.municipality_code,
        seq,
        prev_hash,
        hash_,
    )


def forged_row(row_id: int, action: str = "booking.booking.cancelled") -> AuditRow:
    return AuditRow(row_id, datetime.now(UTC), A, "staff", "x", action, "b", None, None, None)


async def test_an_intact_log_verifies_and_its_hashes_are_the_documented_encoding(
    db: asyncpg.Pool,
) -> None:
    await a_chain(db, 4)
    await write(db, A, before={"名前": "予約"}, after=[1, 2.5, None], request_id="req-1")
    await seal_all(db)
    async with db.acquire() as conn:
        reports = await verify_chains(conn)
    assert [(r.municipality_code, r.rows, r.unsealed, r.intact) for r in reports] == [
        (None, 4, 0, True),
        (A, 5, 0, True),
        (B, 4, 0, True),
    ]
    seals = await seals_of(db, A)
    assert [s.seq for s in seals] == [1, 2, 3, 4, 5]
    assert seals[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(seals, seals[1:], strict=False))
    last = seals[-1]
    assert last.row is not None
    # The encoding spelled out once, byte by byte, as migration 0006 documents it.
    message = b"".join(
        field_bytes(v)
        for v in (
            str(last.audit_id),
            "5",
            str(epoch_us(last.row.at)),
            A,
            "staff",
            "staff-1",
            "booking.slot.published",
            "t",
            '{"名前": "予約"}',
            "[1, 2.5, null]",
            "req-1",
        )
    )
    assert field_bytes("予約") == b"S6:" + "予約".encode()
    assert field_bytes(None) == b"N"
    assert last.hash == hashlib.sha256(seals[-2].hash + message).digest()
    head = reports[1].head
    assert head is not None and (head.last_id, head.last_seq, head.last_hash) == (
        last.audit_id,
        5,
        last.hash,
    )


async def test_writers_only_append_and_the_sealer_links_later(db: asyncpg.Pool) -> None:
    """No trigger on insert; a writer does not wait for a sealer at work; a fresh row
    without its seal is counted, not an error; one sealer at a time."""
    triggers = await db.fetch(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass "
        "AND NOT tgisinternal AND (tgtype & 4) <> 0"  # 4: INSERT
    )
    assert triggers == []
    first = await write(db, A)
    async with db.acquire() as sealer, sealer.transaction():
        assert await seal(sealer) == 1  # holds the sealer's lock until it commits
        async with db.acquire() as other:
            assert await seal(other) == 0  # another process: not now
            second = await asyncio.wait_for(write(other, A), 2)  # nothing waits for a sealer
    (report,) = await verify_chains_of(db)
    assert (report.rows, report.unsealed, report.intact) == (1, 1, True)
    assert [s.audit_id for s in await seals_of(db, A)] == [first]
    assert await seal_all(db) == 1
    assert [s.audit_id for s in await seals_of(db, A)] == [first, second]
    assert await seal_all(db) == 0


async def test_batches_are_bounded_and_chain_on(db: asyncpg.Pool) -> None:
    for i in range(10):
        await write(db, (A, B, None)[i % 3])
    async with db.acquire() as conn:
        assert [await seal(conn, 4) for _ in range(4)] == [4, 4, 2, 0]
    assert [s.seq for s in await seals_of(db, A)] == [1, 2, 3, 4]
    assert await problems(db) == []


async def test_a_row_committed_late_is_sealed_after_later_ids(db: asyncpg.Pool) -> None:
    """A transaction that drew its id first but commits last: the sealer seals the others
    and waits (its watermark stays below the open row's id), then seals it next."""
    early = await write(db, A)
    async with db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        late = await write(conn, A, action="booking.slot.closed")
        later = [await write(db, A) for _ in range(3)]
        for _ in range(3):
            await seal_all(db)
            through = await db.fetchval("SELECT sealed_through FROM audit_sealer")
            assert through < late
        assert [s.audit_id for s in await seals_of(db, A)] == [early, *later]
        await tx.commit()
    assert await seal_all(db) == 1
    assert [s.audit_id for s in await seals_of(db, A)] == [early, *later, late]
    await seal_all(db)
    assert await db.fetchval("SELECT sealed_through FROM audit_sealer") >= later[-1]
    assert await problems(db) == []


async def test_a_mark_from_another_cluster_does_not_hold_the_watermark(
    db: asyncpg.Pool,
) -> None:
    """A dump restored elsewhere brings the sealer's mark with a transaction id that cluster
    has not reached: its writers are long gone, the watermark moves on."""
    ids = [await write(db, A) for _ in range(3)]
    await db.execute("UPDATE audit_sealer SET mark_id = $1, mark_xid = '4000000000'", ids[-1])
    assert await seal_all(db) == 3
    assert await db.fetchval("SELECT sealed_through FROM audit_sealer") == ids[-1]


async def test_concurrent_writers_and_a_running_sealer_never_skip_or_fork(
    db: asyncpg.Pool,
) -> None:
    """Writers over three chains draw ids and commit (or roll back) after random delays,
    some with other writes first, some with the audit row as their first; a sealer runs in
    a loop meanwhile, in small batches. Every committed row ends up sealed exactly once,
    rolled-back ones never; chains stay single lines; the watermark moved while writers
    were in flight."""
    committed: set[int] = set()
    rolled_back: set[int] = set()
    writers_done = asyncio.Event()
    watermarks: list[int] = []
    await db.execute("CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL)")
    await db.execute("INSERT INTO counter VALUES (1, 0)")

    async def writer(i: int) -> None:
        await asyncio.sleep(random.random() / 10)
        async with db.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            if i % 2:
                await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
            row_id = await write(conn, (A, B, None)[i % 3], after={"i": i})
            await asyncio.sleep(random.random() / 20)
            if i % 7 == 0:
                await tx.rollback()
                rolled_back.add(row_id)
            else:
                await tx.commit()
                committed.add(row_id)

    async def sealer() -> None:
        async with db.acquire() as conn:
            while not writers_done.is_set():
                await seal(conn, 5)
                watermarks.append(await conn.fetchval("SELECT sealed_through FROM audit_sealer"))
                await asyncio.sleep(random.random() / 100)

    async def writers() -> None:
        try:
            await asyncio.gather(*(writer(i) for i in range(240)))
        finally:
            writers_done.set()

    await asyncio.gather(writers(), sealer())
    await seal_all(db)
    sealed = [r["audit_id"] for r in await db.fetch("SELECT audit_id FROM audit_seals")]
    assert len(sealed) == len(set(sealed))
    assert set(sealed) == committed and not set(sealed) & rolled_back
    assert await db.fetchval(UNSEALED) == 0
    assert await problems(db, max_unsealed_s=0) == []
    overtaken = 0  # rows sealed after a row with a higher id: commits out of id order
    for municipality in (A, B, None):
        seals = await seals_of(db, municipality)
        assert [s.seq for s in seals] == list(range(1, len(seals) + 1))
        overtaken += sum(b.audit_id < a.audit_id for a, b in zip(seals, seals[1:], strict=False))
    # Not a vacuous run: commits came out of id order, the watermark advanced meanwhile.
    moved = sorted(set(watermarks))
    assert overtaken > 0 and len(moved) >= 3, (overtaken, moved)
    assert watermarks == sorted(watermarks)


async def test_concurrent_writers_never_fork_a_chain(db: asyncpg.Pool) -> None:
    """200 transactions over two municipalities, each holding its transaction open a
    moment after its insert: once sealed, every chain is one line with every row."""

    async def one(i: int) -> None:
        async with db.acquire() as conn, conn.transaction():
            await write(conn, (A, B)[i % 2], after={"i": i})
            await asyncio.sleep(random.random() / 500)

    await asyncio.gather(*(one(i) for i in range(200)))
    assert await seal_all(db) == 200
    assert await problems(db, max_unsealed_s=0) == []
    for municipality in (A, B):
        seals = await seals_of(db, municipality)
        assert [s.seq for s in seals] == list(range(1, 101))
        parity = 0 if municipality == A else 1
        assert {json.loads(s.row.after or "")["i"] for s in seals if s.row} == set(
            range(parity, 200, 2)
        )


async def test_audit_rows_and_seals_are_append_only_even_for_the_owner(db: asyncpg.Pool) -> None:
    row_id = await write(db)
    await seal_all(db)
    for sql in (
        "UPDATE audit_log SET action = 'booking.slot.closed' WHERE id = $1",
        "DELETE FROM audit_log WHERE id = $1",
        "UPDATE audit_seals SET seq = 2 WHERE audit_id = $1",
        "DELETE FROM audit_seals WHERE audit_id = $1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.execute(sql, row_id)
    for table in ("audit_log", "audit_seals"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.execute(f"TRUNCATE {table} CASCADE")
    assert await problems(db) == []


@pytest.mark.parametrize(
    "assignment",
    [
        "action = 'booking.slot.closed'",
        "after = '{\"i\": 99}'::jsonb",
        "at = at - interval '1 microsecond'",
        "request_id = 'forged'",
        "municipality_code = '271004'",
    ],
)
async def test_an_edited_row_is_named(db: asyncpg.Pool, assignment: str) -> None:
    ids = await a_chain(db)
    await tamper(db, f"UPDATE audit_log SET {assignment} WHERE id = $1", ids[2])
    found = await problems(db)
    assert len(found) == 1 and found[0].problem is not None
    assert (found[0].municipality_code, found[0].problem.fault) == (A, Fault.EDITED)
    assert found[0].problem.row_id == ids[2]
    assert f"row {ids[2]} was edited" in found[0].problem.message


async def test_an_edit_with_its_hash_recomputed_is_named(db: asyncpg.Pool) -> None:
    ids = await a_chain(db)
    await tamper(db, "UPDATE audit_log SET target = 'forged' WHERE id = $1", ids[3])
    old = next(s for s in await seals_of(db, A) if s.audit_id == ids[3])
    new_hash = seal_hash(old.prev_hash, await row_of(db, ids[3]), old.seq)
    await tamper(db, "UPDATE audit_seals SET hash = $2 WHERE audit_id = $1", ids[3], new_hash)
    (found,) = await problems(db)
    assert found.problem is not None and found.problem.fault is Fault.EDITED
    assert found.problem.row_id == ids[3]
    assert "hash recomputed" in found.problem.message


async def test_a_deleted_row_is_named_by_its_seal(db: asyncpg.Pool) -> None:
    ids = await a_chain(db)
    await tamper(db, "DELETE FROM audit_log WHERE id = $1", ids[2])
    (found,) = await problems(db)
    assert found.problem is not None and found.problem.fault is Fault.DELETED
    assert found.problem.row_id == ids[2]
    assert found.problem.message == f"row {ids[2]} was deleted: its seal (position 3) remains"


async def test_a_deleted_row_and_seal_are_named(db: asyncpg.Pool) -> None:
    ids = await a_chain(db)
    await tamper(db, "DELETE FROM audit_seals WHERE audit_id = $1", ids[2])
    await tamper(db, "DELETE FROM audit_log WHERE id = $1", ids[2])
    (found,) = await problems(db)
    assert found.problem is not None and found.problem.fault is Fault.DELETED
    assert found.problem.message == (
        f"rows were deleted between row {ids[1]} and row {ids[3]}: position 3 missing"
    )


async def test_deleted_first_rows_are_named(db: asyncpg.Pool) -> None:
    ids = await a_chain(db)
    await tamper(db, "DELETE FROM audit_seals WHERE audit_id = ANY($1)", ids[:2])
    await tamper(db, "DELETE FROM audit_log WHERE id = ANY($1)", ids[:2])
    (found,) = await problems(db)
    assert found.problem is not None and found.problem.fault is Fault.DELETED
    assert found.problem.message == (
        f"rows were deleted between the chain's start and row {ids[2]}: positions 1-2 missing"
    )


async def test_a_deleted_last_row_is_named(db: asyncpg.Pool) -> None:
    ids = await a_chain(db, 3)
    await tamper(db, "DELETE FROM audit_seals WHERE audit_id = $1", ids[-1])
    await tamper(db, "DELETE FROM audit_log WHERE id = $1", ids[-1])
    (found,) = await problems(db)
    assert found.problem is not None and found.problem.fault is Fault.DELETED
    assert f"the head records position 3 (row {ids[-1]})" in found.problem.message


async def test_a_forged_row_in_the_middle_is_named(db: asyncpg.Pool) -> None:
    ids = await a_chain(db)
    seals = await seals_of(db, A)
    row = forged_row(ids[2] + 5)  # in the room skip_ids left
    await forge(db, row, 4, seals[2].hash, bytes(32))  # naive: no valid hash
    (found,) = await problems(db)
    assert found.problem is not None and found.problem.fault is Fault.INSERTED
    assert found.problem.row_id == row.id
    assert found.problem.message == (
        f"row {row.id} was inserted: the chain goes on from row {ids[2]} to row {ids[3]}"
    )


async def test_a_forged_row_with_a_valid_hash_is_named(db: asyncpg.Pool) -> None:
    """A forger who knows the encoding seals a row of their own after row 3: it claims the
    place of the genuine row 4, from which the chain goes on."""
    ids = await a_chain(db)
    seals = await seals_of(db, A)
    row = forged_row(ids[2] + 5)
    await forge(db, row, 4, seals[2].hash, seal_hash(seals[2].hash, row, 4))
    (found,) = await problems(db)
    assert found.problem is not None and found.problem.fault is Fault.INSERTED
    assert found.problem.row_id == row.id
    assert f"which row {ids[3]} holds" in found.problem.message


async def test_a_row_sealed_past_the_head_is_named(db: asyncpg.Pool) -> None:
    ids = await a_chain(db, 3)
    last = (await seals_of(db, A))[-1]
    row = forged_row(ids[-1] + 5, "booking.slot.closed")
    await forge(db, row, 4, last.hash, seal_hash(last.hash, row, 4))
    (found,) = await problems(db)
    assert found.problem is not None and found.problem.fault is Fault.INSERTED
    assert found.problem.row_id == row.id


async def test_a_row_left_unsealed_too_long_is_named(db: asyncpg.Pool) -> None:
    """The sealer did not run: a row written two minutes ago has no seal (a fresh one is
    only counted). And a row the sealer can never reach — below its watermark — is named
    once it is older than the limit."""
    await a_chain(db, 2)
    old = await db.fetchval(
        "INSERT INTO audit_log (at, municipality_code, actor_kind, actor_id, action) "
        "VALUES (now() - interval '2 minutes', $1, 'system', 'x', 'booking.slot.closed') "
        "RETURNING id",
        B,
    )
    fresh = await write(db, A)
    (found,) = await problems(db)
    assert (found.municipality_code, found.problem, found.unsealed) == (B, None, 1)
    assert found.overdue is not None and found.overdue.fault is Fault.UNSEALED
    assert found.overdue.row_id == old
    assert f"row {old} not sealed 60 s after it was written" in found.overdue.message
    assert [r.unsealed for r in await verify_chains_of(db)] == [0, 1, 1]
    await seal_all(db)
    assert await problems(db) == []
    assert fresh in [s.audit_id for s in await seals_of(db, A)]

    through = await db.fetchval("SELECT sealed_through FROM audit_sealer")
    await tamper(
        db,
        "INSERT INTO audit_log (id, municipality_code, actor_kind, actor_id, action) "
        "VALUES ($1, $2, 'staff', 'x', 'booking.slot.closed')",
        through - 3,  # a gap skip_ids left, under the watermark
        A,
    )
    await seal_all(db)
    assert await problems(db) == []  # younger than the limit
    (found,) = await problems(db, max_unsealed_s=0)
    assert found.overdue is not None and found.overdue.row_id == through - 3


async def test_a_rolled_back_insert_leaves_no_hole(db: asyncpg.Pool) -> None:
    await write(db, A)
    async with db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await write(conn, A, action="booking.slot.closed")
        await tx.rollback()
    await write(db, A)
    await seal_all(db)
    assert [s.seq for s in await seals_of(db, A)] == [1, 2]
    assert await problems(db, max_unsealed_s=0) == []


async def test_rows_written_before_the_migration_are_sealed_by_it(
    postgres: PostgresForTests,
) -> None:
    name = await postgres.create_database(migrated=False)
    url = postgres.url_for(name)
    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "CREATE TABLE schema_migrations (version text PRIMARY KEY, name text NOT NULL, "
                "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for m in load_migrations():
                if m.version < "0006":
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        m.version,
                        m.name,
                        m.checksum,
                    )
            for municipality in (A, None, B, A, A, None):
                await conn.execute(
                    "INSERT INTO audit_log (municipality_code, actor_kind, actor_id, action, "
                    "after) VALUES ($1, 'system', 'old', 'waitroom.event.clock_state', "
                    """'{"state": "open", "n": 1.50}')""",
                    municipality,
                )
        finally:
            await conn.close()
        await apply_migrations(url)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        try:
            assert await pool.fetchval("SELECT count(*) FROM audit_seals") == 6
            await write(pool, A)
            assert await seal_all(pool) == 1
            async with pool.acquire() as pooled:
                reports = await verify_chains(pooled, max_unsealed_s=0)
            assert [(r.municipality_code, r.rows, r.intact) for r in reports] == [
                (None, 2, True),
                (A, 4, True),
                (B, 1, True),
            ]
            assert [s.seq for s in await seals_of(pool, A)] == [1, 2, 3, 4]
        finally:
            await pool.close()
    finally:
        await postgres.drop_database(name)


# Awkward values: Japanese and other non-ASCII text, control characters, quotes and
# backslashes (never NUL, which Postgres text refuses), nested JSON, floats, huge ints.
TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    municipality=st.none() | st.sampled_from([A, B, "日本", ""]),
    actor_id=TEXT,
    target=TEXT,
    before=st.none() | JSON,
    after=st.none() | JSON,
    request_id=st.none() | TEXT,
)
async def test_python_reproduces_the_sealers_hash_for_any_values(
    db: asyncpg.Pool,
    municipality: str | None,
    actor_id: str,
    target: str,
    before: Any,
    after: Any,
    request_id: str | None,
) -> None:
    async with db.acquire() as conn:
        row_id = await conn.fetchval(
            INSERT,
            municipality,
            "resident",
            actor_id,
            "booking.booking.confirmed",
            target,
            None if before is None else json.dumps(before),
            None if after is None else json.dumps(after),
            request_id,
        )
        assert await seal_waiting(conn) == 1
        record = await conn.fetchrow(
            f"SELECT s.audit_id, s.seq, s.prev_hash, s.hash, a.* FROM audit_seals s "
            f"JOIN (SELECT {COLUMNS} FROM audit_log) a ON a.id = s.audit_id "
            "WHERE s.audit_id = $1",
            row_id,
        )
    assert record is not None
    sealed = Seal.of(record)
    assert sealed.sound
    assert sealed.row is not None
    assert (sealed.row.actor_id, sealed.row.target, sealed.row.request_id) == (
        actor_id,
        target,
        request_id,
    )


async def test_the_application_role_may_append_and_seal_but_not_change(
    db: asyncpg.Pool, database_url: str
) -> None:
    """A login role given machiai_app, as a deployment does (infra/README.md)."""
    role = f"machiai_test_{uuid.uuid4().hex[:12]}"
    await db.execute(f"CREATE ROLE {role} LOGIN IN ROLE machiai_app")
    try:
        app = await asyncpg.connect(database_url, user=role)
        try:
            row_id = await write(app, A, after={"by": "app"})
            await write(app, None)
            assert await seal_waiting(app) == 2
            for sql in (
                "UPDATE audit_log SET action = 'booking.slot.closed' WHERE id = $1",
                "DELETE FROM audit_log WHERE id = $1",
                "DELETE FROM audit_seals WHERE audit_id = $1",
                "UPDATE audit_seals SET seq = 9 WHERE audit_id = $1",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await app.execute(sql, row_id)
            for sql in (
                "TRUNCATE audit_log",
                "TRUNCATE audit_seals",
                "INSERT INTO audit_seals (audit_id, chain, municipality_code, seq, prev_hash, "
                "hash) SELECT id, 'm' || municipality_code, municipality_code, 99, hash, hash "
                "FROM audit_log, (SELECT sha256('') AS hash) h LIMIT 1",
                "UPDATE audit_heads SET last_seq = 0",
                "UPDATE audit_sealer SET sealed_through = 0",
                "INSERT INTO audit_log (id, actor_kind, actor_id, action) "
                "VALUES (1, 'staff', 'x', 'booking.slot.closed')",
                "SELECT setval('audit_log_id_seq', 1)",
                "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
                "SET session_replication_role = replica",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await app.execute(sql)
            # The rest of the schema is the application's to write.
            await app.execute(
                "INSERT INTO municipalities (code, name_ja, name_en) VALUES ('999001', '市', 'C')"
            )
            await app.execute("UPDATE municipalities SET name_en = 'City' WHERE code = '999001'")
            await app.execute("DELETE FROM municipalities WHERE code = '999001'")
            reports = await verify_chains(app, max_unsealed_s=0)
            assert [(r.rows, r.intact) for r in reports] == [(1, True), (1, True)]
        finally:
            await app.close()
    finally:
        await db.execute(f"DROP ROLE {role}")


async def test_machiai_audit_seal_and_verify(
    db: asyncpg.Pool,
    env_vars: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env_vars.items():
        monkeypatch.setenv(name, value)
    ids = await a_chain(db, 3)
    await write(db, B)
    assert await asyncio.to_thread(cli.main, ["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "audit log intact: 3 chains, 9 rows sealed, 1 not sealed yet (under 60 s old)" in out
    assert f"{A}: 3 rows sealed, head: position 3, row {ids[-1]}, sha256 " in out
    assert f"{B}: 3 rows sealed, head: position 3" in out and "; 1 not sealed yet" in out
    assert await asyncio.to_thread(cli.main, ["audit", "seal"]) == 0
    assert "sealed 1 audit rows" in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["audit", "seal"]) == 0
    assert "no audit row was waiting for a seal" in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["audit", "verify", "--municipality", B]) == 0
    assert "audit log intact: 1 chain, 4 rows sealed" in capsys.readouterr().out

    await tamper(db, "UPDATE audit_log SET target = 'forged' WHERE id = $1", ids[1])
    await write(db, None)
    args = ["audit", "verify", "--max-unsealed-s", "0"]
    assert await asyncio.to_thread(cli.main, args) == 1
    captured = capsys.readouterr()
    assert f"municipality {A}: row {ids[1]} was edited" in captured.err
    assert "(no municipality): row " in captured.err and "not sealed 0 s after" in captured.err
    assert "audit log BROKEN: 1 of 3 chains" in captured.err
    assert "audit log NOT SEALED IN TIME: rows older than 0 s without a seal in 1 of 3" in (
        captured.err
    )
    assert await asyncio.to_thread(cli.main, ["audit", "verify", "--municipality", B]) == 0
    assert await asyncio.to_thread(cli.main, ["audit", "verify", "--municipality", "999999"]) == 1
    assert "no audit rows" in capsys.readouterr().err
