"""The registry import: merge by default (nobody removed), replace only with the number of
removals confirmed, residents with a booking to come kept, a city-sized file read as it
arrives under its own body limit, all or nothing."""

from __future__ import annotations

import dataclasses
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from booking.app import create_app
from booking.services.context import Ctx
from booking.services.registry_import import BATCH_ROWS, Mode, import_registry
from booking.settings import BookingSettings
from booking.store import pg_registry
from machiai.config import SettingsError
from tests.booking.client import code, open_session, running, staff_token
from tests.booking.factory import BIRTH, World, make_slot, make_staff, voucher
from tests.servers import serving

HEADER = "voucher_number,birth_date,municipality_code,groups\n"
WORLD_RESIDENTS = 51  # make_world: 50 residents of group 65+ and one under65
MOVED_BIRTH = date(1935, 6, 15)  # no birth date city_file gives otherwise


def line(number: str, born: date, municipality: str, groups: str = "65+") -> str:
    return f"{number},{born.isoformat()},{municipality},{groups}\n"


def city_file(municipality: str, first: int, count: int, *, moved: int = 0) -> bytes:
    """``count`` residents from voucher 2000000000 + ``first``; the first ``moved`` of them
    with another birth date. Every third is also in group ``medical``."""
    rows = [
        line(
            str(2_000_000_000 + n),
            MOVED_BIRTH if n - first < moved else date(1940 + n % 40, 1 + n % 12, 1),
            municipality,
            "65+|medical" if n % 3 == 0 else "65+",
        )
        for n in range(first, first + count)
    ]
    return (HEADER + "".join(rows)).encode()


async def pieces(data: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    """The body sent chunked (no Content-Length), as a client streaming a file does."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def admin(db: asyncpg.Pool, settings: BookingSettings, municipality: str) -> dict[str, str]:
    async with db.acquire() as conn:
        staff_id, _ = await make_staff(conn, municipality, "admin")
    return staff_token(settings, staff_id, municipality, "admin", None)


async def registry_of(db: asyncpg.Pool, municipality: str) -> dict[str, tuple[date, list[str]]]:
    rows = await db.fetch(
        "SELECT voucher_number, birth_date, eligibility_groups FROM registry "
        "WHERE municipality_code = $1",
        municipality,
    )
    return {r["voucher_number"]: (r["birth_date"], list(r["eligibility_groups"])) for r in rows}


async def count(db: asyncpg.Pool, municipality: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM registry WHERE municipality_code = $1", municipality
        )
    )


async def test_merge_is_the_default_and_removes_nobody(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """Uploading a 3-row file used to replace the whole registry; now it adds one resident,
    updates one, leaves one as it was, and everyone else stays. The dry run says the same
    and writes nothing."""
    m = world.municipality
    auth = await admin(db, settings, m)
    before = await registry_of(db, m)
    csv = (
        HEADER
        + line(voucher(0), BIRTH, m)  # as it is
        + line(voucher(1), date(1951, 2, 3), m, "65+|medical")  # another birth date, groups
        + line("3000000000", date(1940, 1, 1), m)  # new
    )
    expected = {
        "mode": "merge",
        "rows": 3,
        "added": 1,
        "updated": 1,
        "unchanged": 1,
        "removed": 0,
        "kept_booked": 0,
        "groups": {"65+": 3, "medical": 1},
        "errors": [],
    }
    async with running(settings) as (_, client):
        preview = await client.post("/api/registry/import?dry_run=true", content=csv, headers=auth)
        assert preview.status_code == 200, preview.text
        assert preview.json() == {"dry_run": True, **expected}
        assert await registry_of(db, m) == before
        done = await client.post("/api/registry/import", content=csv, headers=auth)
        assert done.status_code == 200, done.text
        assert done.json() == {"dry_run": False, **expected}
    after = await registry_of(db, m)
    assert len(after) == WORLD_RESIDENTS + 1
    assert after[voucher(1)] == (date(1951, 2, 3), ["65+", "medical"])
    assert after["3000000000"] == (date(1940, 1, 1), ["65+"])
    assert {v: after[v] for v in before if v != voucher(1)} == {
        v: before[v] for v in before if v != voucher(1)
    }
    audit = await db.fetchrow(
        "SELECT before, after FROM audit_log WHERE action = 'booking.registry.imported'"
    )
    assert audit is not None and '"added": 1' in audit["after"] and '"removed": 0' in audit["after"]


async def test_replace_removes_only_the_number_confirmed(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """A replace that would remove residents is refused (409 removals_unconfirmed, with
    the number, in Japanese and English) until expect_removed says that number; a wrong
    number is refused too, and a refusal writes nothing."""
    m = world.municipality
    auth = await admin(db, settings, m)
    csv = HEADER + "".join(line(voucher(i), BIRTH, m) for i in range(10))
    before = await registry_of(db, m)
    gone = WORLD_RESIDENTS - 10
    async with running(settings) as (_, client):
        preview = await client.post(
            "/api/registry/import?mode=replace&dry_run=true", content=csv, headers=auth
        )
        assert preview.status_code == 200, preview.text
        assert preview.json()["removed"] == gone and preview.json()["unchanged"] == 10
        for query in ("mode=replace", "mode=replace&expect_removed=40"):
            refused = await client.post(f"/api/registry/import?{query}", content=csv, headers=auth)
            assert refused.status_code == 409 and code(refused) == "removals_unconfirmed"
            assert refused.json()["error"]["detail"]["removed"] == gone
            assert f"expect_removed={gone}" in refused.json()["error"]["message"]
            assert "削除" in refused.json()["error"]["message"]  # Japanese by default
        english = await client.post(
            "/api/registry/import?mode=replace",
            content=csv,
            headers={**auth, "Accept-Language": "en"},
        )
        assert f"removes {gone} residents" in english.json()["error"]["message"]
        assert await registry_of(db, m) == before
        # A confirmation where nothing is removed, or a mode that does not exist: the
        # caller meant something else.
        for query in ("expect_removed=41", "mode=merge&expect_removed=0", "mode=wipe", "mode="):
            wrong = await client.post(f"/api/registry/import?{query}", content=csv, headers=auth)
            assert wrong.status_code == 422 and code(wrong) == "invalid_input", query
        done = await client.post(
            f"/api/registry/import?mode=replace&expect_removed={gone}", content=csv, headers=auth
        )
        assert done.status_code == 200, done.text
        assert done.json()["removed"] == gone and done.json()["mode"] == "replace"
        # The registry is the file now: replacing again removes nobody, unconfirmed.
        again = await client.post("/api/registry/import?mode=replace", content=csv, headers=auth)
        assert again.status_code == 200 and again.json()["removed"] == 0
    assert sorted(await registry_of(db, m)) == [voucher(i) for i in range(10)]
    assert await count(db, world.other_municipality) == 0  # another city untouched


async def test_replace_keeps_residents_with_a_booking_to_come(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """Bookings do not reference the registry (a re-import must not rewrite history), but
    a resident needs their registry row to sign in and cancel or change a booking: a
    replace keeps those with a confirmed booking still to come (counted in kept_booked),
    and removes those whose booking is cancelled or past."""
    m = world.municipality
    auth = await admin(db, settings, m)
    async with db.acquire() as conn:
        future = await make_slot(conn, world.clinic_id, world.event_id, 5, days=3)
        past = await make_slot(conn, world.clinic_id, world.event_id, 5, days=-3)
        for n, (slot, status) in enumerate(
            ((future, "confirmed"), (future, "cancelled"), (past, "confirmed"))
        ):
            await conn.execute(
                "INSERT INTO bookings (confirmation_code, slot_id, municipality_code, "
                "voucher_number, dose_number, vaccine_code, slot_starts_at, channel, status, "
                "cancelled_at) SELECT $1, s.id, $2, $3, 1, 'comirnaty', s.starts_at, 'web', "
                "$4::booking_status, CASE WHEN $4 = 'cancelled' THEN now() END "
                "FROM slots s WHERE s.id = $5::uuid",
                f"KEEP{n:04d}", m, voucher(20 + n), status, slot,
            )  # fmt: skip
    csv = HEADER + "".join(line(voucher(i), BIRTH, m) for i in range(10))
    async with running(settings) as (_, client):
        preview = await client.post(
            "/api/registry/import?mode=replace&dry_run=true", content=csv, headers=auth
        )
        assert preview.json()["removed"] == WORLD_RESIDENTS - 11
        assert preview.json()["kept_booked"] == 1
        refused = await client.post(
            f"/api/registry/import?mode=replace&expect_removed={WORLD_RESIDENTS - 10}",
            content=csv,
            headers=auth,
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["detail"]["removed"] == WORLD_RESIDENTS - 11
        done = await client.post(
            f"/api/registry/import?mode=replace&expect_removed={WORLD_RESIDENTS - 11}",
            content=csv,
            headers=auth,
        )
        assert done.status_code == 200, done.text
        assert done.json()["kept_booked"] == 1
        # The resident with a booking to come can still sign in (to cancel or change it).
        await open_session(client, settings, world.event_id, voucher(20), BIRTH.isoformat())
    assert sorted(await registry_of(db, m)) == sorted(
        [voucher(i) for i in range(10)] + [voucher(20)]
    )
    assert await db.fetchval("SELECT count(*) FROM bookings") == 3


async def test_a_bad_or_repeated_row_anywhere_writes_nothing(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """Repeated voucher numbers are found across batches (Postgres holds every row, the
    service one batch); with the bad rows they are listed in file order, nothing written."""
    m = world.municipality
    auth = await admin(db, settings, m)
    rows = [line(str(2_000_000_000 + n), BIRTH, m) for n in range(BATCH_ROWS + 500)]
    rows[BATCH_ROWS + 100] = rows[3]  # file row 5 repeated at row BATCH_ROWS + 102
    rows[7] = line("12345", BIRTH, m)
    before = await registry_of(db, m)
    async with running(settings) as (_, client):
        for mode in ("merge", "replace"):
            r = await client.post(
                f"/api/registry/import?mode={mode}", content=HEADER + "".join(rows), headers=auth
            )
            assert r.status_code == 422 and code(r) == "csv_invalid"
            assert r.json()["error"]["detail"]["errors"] == [
                {"row": 9, "column": "voucher_number", "reason": "must be exactly 10 digits"},
                {
                    "row": BATCH_ROWS + 102,
                    "column": "voucher_number",
                    "reason": "duplicate of row 5",
                },
            ]
    assert await registry_of(db, m) == before


async def test_the_import_route_has_its_own_body_limit(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """A city's file is far above the 1 MiB every other body may have: the import takes
    up to BOOKING_REGISTRY_MAX_BYTES (here 4 MiB), announced or streamed, while the limit of
    the other routes stays; beyond its own limit, 413 body_too_large and nothing written."""
    settings = dataclasses.replace(
        settings, max_body_bytes=1_048_576, registry_max_bytes=4 * 1_048_576
    )
    m = world.municipality
    auth = await admin(db, settings, m)
    async with db.acquire() as conn:
        clinic_id, _ = await make_staff(conn, m, "clinic", world.clinic_id)
    clinic = staff_token(settings, clinic_id, m, "clinic", world.clinic_id)
    two_mib = city_file(m, 0, 60_000)
    assert 2 * 1_048_576 < len(two_mib) < 4 * 1_048_576
    too_big = city_file(m, 0, 150_000)
    assert len(too_big) > 4 * 1_048_576
    async with running(settings) as (_, client):
        other = await client.post("/api/clinic/slots/import", content=two_mib, headers=clinic)
        assert other.status_code == 413
        for body in (too_big, pieces(too_big)):
            r = await client.post("/api/registry/import", content=body, headers=auth)
            assert r.status_code == 413 and code(r) == "body_too_large"
        assert await count(db, m) == WORLD_RESIDENTS
        r = await client.post("/api/registry/import", content=pieces(two_mib), headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["added"] == 60_000
    assert await count(db, m) == WORLD_RESIDENTS + 60_000


def test_the_registry_limit_is_a_setting(env_vars: dict[str, str]) -> None:
    assert BookingSettings.from_env(env_vars).registry_max_bytes == 256 * 1_048_576
    given_env = {**env_vars, "BOOKING_REGISTRY_MAX_BYTES": str(1_073_741_824)}
    assert BookingSettings.from_env(given_env).registry_max_bytes == 1_073_741_824
    for wrong in ("lots", "100", "-1", str(17 * 1024 * 1_048_576)):
        with pytest.raises(SettingsError, match="BOOKING_REGISTRY_MAX_BYTES"):
            BookingSettings.from_env({**env_vars, "BOOKING_REGISTRY_MAX_BYTES": wrong})


@pytest.mark.timeout(600)
async def test_a_city_sized_file_through_real_http(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """100,000 residents (3.5 MiB) through uvicorn, streamed; then a replace with 60,000 of
    them (1,000 with another birth date): previewed, refused unconfirmed, applied."""
    m = world.municipality
    auth = await admin(db, settings, m)
    city = city_file(m, 0, 100_000)
    assert len(city) > 3 * 1_048_576
    smaller = city_file(m, 0, 60_000, moved=1_000)
    removed = 40_000 + WORLD_RESIDENTS
    async with (
        serving(create_app(settings)) as base,
        httpx.AsyncClient(base_url=base, headers=auth, timeout=300) as client,
    ):
        r = await client.post("/api/registry/import", content=pieces(city))
        assert r.status_code == 200, r.text
        assert r.json() == {
            "dry_run": False,
            "mode": "merge",
            "rows": 100_000,
            "added": 100_000,
            "updated": 0,
            "unchanged": 0,
            "removed": 0,
            "kept_booked": 0,
            "groups": {"65+": 100_000, "medical": 33_334},
            "errors": [],
        }
        assert await count(db, m) == 100_000 + WORLD_RESIDENTS
        assert (
            await db.fetchval(
                "SELECT count(*) FROM registry WHERE municipality_code = $1 "
                "AND 'medical' = ANY(eligibility_groups)",
                m,
            )
            == 33_334
        )
        preview = await client.post(
            "/api/registry/import?mode=replace&dry_run=true", content=smaller
        )
        assert preview.status_code == 200, preview.text
        counts = {
            k: preview.json()[k] for k in ("rows", "added", "updated", "unchanged", "removed")
        }
        assert counts == {
            "rows": 60_000,
            "added": 0,
            "updated": 1_000,
            "unchanged": 59_000,
            "removed": removed,
        }
        refused = await client.post("/api/registry/import?mode=replace", content=smaller)
        assert refused.status_code == 409 and code(refused) == "removals_unconfirmed"
        assert refused.json()["error"]["detail"] == {"removed": removed, "expect_removed": None}
        assert await count(db, m) == 100_000 + WORLD_RESIDENTS
        done = await client.post(
            f"/api/registry/import?mode=replace&expect_removed={removed}", content=smaller
        )
        assert done.status_code == 200, done.text
        assert {k: done.json()[k] for k in counts} == counts
    assert await count(db, m) == 60_000
    assert (
        await db.fetchval(
            "SELECT count(*) FROM registry WHERE municipality_code = $1 AND birth_date = $2",
            m,
            MOVED_BIRTH,
        )
        == 1_000
    )


async def test_rows_go_to_postgres_in_batches_as_the_body_arrives(
    ctx: Ctx, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service holds a batch, never the file: rows are applied while the body is still
    arriving, BATCH_ROWS at a time, and what Python allocates stays far below what the
    file's rows would take as objects."""
    m = world.municipality
    data = city_file(m, 0, 100_000)
    sent = 0
    staged: list[tuple[int, int]] = []  # (pieces sent by then, rows)

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        async for piece in pieces(data):
            sent += 1
            yield piece

    apply_rows = pg_registry.apply_rows

    async def spy(conn: Any, municipality: str, rows: Any) -> tuple[int, int]:
        staged.append((sent, len(rows)))
        return await apply_rows(conn, municipality, rows)

    monkeypatch.setattr(pg_registry, "apply_rows", spy)
    tracemalloc.start()
    try:
        result = await import_registry(ctx, m, str(uuid.uuid4()), body())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["added"] == 100_000
    total = -(-len(data) // 65_536)
    assert sum(rows for _, rows in staged) == 100_000
    assert len(staged) >= 100_000 // (BATCH_ROWS + 2_000)
    assert staged[0][0] < total // 2  # the first batch went while half the body was unsent
    assert max(rows for _, rows in staged) < BATCH_ROWS + 2_000  # a batch and one piece
    # The 100,000 rows as Python objects (tuples of number, voucher, date, groups) take
    # 27 MB, the file's bytes 3.5 MB more; a batch and a piece, about 6 MB.
    assert peak < 12_000_000, peak


# Small registries: who is in it, with which birth date and groups.
VOUCHERS = [f"{4_000_000_000 + n}" for n in range(12)]
RESIDENTS = st.dictionaries(
    st.sampled_from(VOUCHERS),
    st.tuples(
        st.dates(min_value=date(1920, 1, 1), max_value=date(2000, 12, 31)),
        st.lists(st.sampled_from(["65+", "medical", "基礎疾患"]), unique=True).map(sorted),
    ),
    min_size=1,
    max_size=12,
)


def as_csv(municipality: str, residents: dict[str, tuple[date, list[str]]]) -> bytes:
    return (
        HEADER
        + "".join(line(v, born, municipality, "|".join(gs)) for v, (born, gs) in residents.items())
    ).encode()


async def one_piece(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def apply(ctx: Ctx, municipality: str, data: bytes, **options: Any) -> dict[str, Any]:
    return await import_registry(ctx, municipality, str(uuid.uuid4()), one_piece(data), **options)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=RESIDENTS, b=RESIDENTS)
async def test_merge_then_merge_is_a_updated_by_b_and_replace_is_exactly_b(
    ctx: Ctx, db: asyncpg.Pool, world: World, a: dict[str, Any], b: dict[str, Any]
) -> None:
    m = world.municipality
    await db.execute("DELETE FROM registry WHERE municipality_code = $1", m)
    first = await apply(ctx, m, as_csv(m, a))
    assert first["added"] == len(a) and await registry_of(db, m) == a
    merged = {**a, **b}
    preview = await apply(ctx, m, as_csv(m, b), dry_run=True)
    second = await apply(ctx, m, as_csv(m, b))
    assert preview == {**second, "dry_run": True}
    assert await registry_of(db, m) == merged
    assert second["added"] == len(b.keys() - a.keys())
    assert second["updated"] == sum(1 for v in b.keys() & a.keys() if a[v] != b[v])
    assert second["unchanged"] == sum(1 for v in b.keys() & a.keys() if a[v] == b[v])
    assert second["removed"] == 0
    absent = len(merged.keys() - b.keys())
    replaced = await apply(ctx, m, as_csv(m, b), mode=Mode.REPLACE, expect_removed=absent)
    assert replaced["removed"] == absent and replaced["unchanged"] == len(b)
    assert await registry_of(db, m) == b


async def test_two_files_merged_one_after_the_other_make_the_union(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    """A city too large for one file sends several: merged one after another, they add up."""
    m = world.municipality
    await db.execute("DELETE FROM registry WHERE municipality_code = $1", m)
    for first in (0, 30_000, 60_000):
        result = await apply(ctx, m, city_file(m, first, 30_000))
        assert result["added"] == 30_000 and result["removed"] == 0
    assert await count(db, m) == 90_000


async def test_one_import_of_a_municipality_at_a_time(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    """While another import of the city applies its rows, an import waits up to the lock
    timeout and then answers busy (503 + Retry-After), writing nothing; a dry run, which
    writes nothing, still answers; another city's import is not held up."""
    settings = dataclasses.replace(settings, lock_timeout_ms=200)
    m = world.municipality
    auth = await admin(db, settings, m)
    other = await admin(db, settings, world.other_municipality)
    csv = HEADER + line("3000000000", BIRTH, m)
    async with running(settings) as (_, client), db.acquire() as holder, holder.transaction():
        await holder.execute("SELECT pg_advisory_xact_lock(hashtext('registry:' || $1))", m)
        busy = await client.post("/api/registry/import", content=csv, headers=auth)
        assert busy.status_code == 503 and code(busy) == "busy"
        assert int(busy.headers["retry-after"]) > 0
        preview = await client.post("/api/registry/import?dry_run=true", content=csv, headers=auth)
        assert preview.status_code == 200 and preview.json()["added"] == 1
        elsewhere = await client.post(
            "/api/registry/import",
            content=HEADER + line("3000000000", BIRTH, world.other_municipality),
            headers=other,
        )
        assert elsewhere.status_code == 200, elsewhere.text
    assert await count(db, m) == WORLD_RESIDENTS
