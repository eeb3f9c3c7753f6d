"""Test data: tenants, events, clinics, slots and registry rows with uuid ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from machiai.passwords import hash_password
from machiai.pg import Conn

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True, slots=True)
class World:
    municipality: str
    event_id: str
    clinic_id: str
    other_municipality: str
    other_event_id: str
    other_clinic_id: str


def voucher(n: int) -> str:
    return f"{1_000_000_000 + n:010d}"


BIRTH = date(1950, 4, 1)


async def make_world(conn: Conn, residents: int = 50) -> World:
    now = datetime.now(UTC)
    ids = []
    for code, tag in (("131001", "a"), ("271004", "b")):
        await conn.execute(
            "INSERT INTO municipalities (code, name_ja, name_en) VALUES ($1, $2, $3)",
            code,
            f"市{tag}",
            f"City {tag}",
        )
        event_id = f"ev-{tag}-{uuid.uuid4().hex[:8]}"
        await conn.execute(
            "INSERT INTO events (id, municipality_code, name_ja, name_en, prequeue_at, opens_at, "
            "closes_at, admit_per_minute, max_active, eligibility_group, state) "
            "VALUES ($1, $2, 'イベント', 'Event', $3, $3, $4, 60, 100, '65+', 'open')",
            event_id,
            code,
            now - timedelta(hours=1),
            now + timedelta(days=60),
        )
        clinic_id = await conn.fetchval(
            "INSERT INTO clinics (municipality_code, name_ja, name_en, area) "
            "VALUES ($1, '診療所', 'Clinic', '中区') RETURNING id::text",
            code,
        )
        ids.append((code, event_id, clinic_id))
    await conn.execute(
        "INSERT INTO vaccines (code, name_ja, name_en, dose_interval_days, max_doses) VALUES "
        "('comirnaty', 'コミナティ', 'Comirnaty', 21, 2) ON CONFLICT DO NOTHING"
    )
    await conn.executemany(
        "INSERT INTO registry (municipality_code, voucher_number, birth_date, eligibility_groups) "
        "VALUES ($1, $2, $3, $4)",
        [(ids[0][0], voucher(i), BIRTH, ["65+"]) for i in range(residents)]
        + [(ids[0][0], voucher(900_000), BIRTH, ["under65"])],
    )
    return World(ids[0][0], ids[0][1], ids[0][2], ids[1][0], ids[1][1], ids[1][2])


async def make_slot(
    conn: Conn,
    clinic_id: str,
    event_id: str,
    capacity: int,
    *,
    days: float = 3,
    dose: int = 1,
    closed: bool = False,
    publish_from: datetime | None = None,
    publish_until: datetime | None = None,
) -> str:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)
    starts += timedelta(microseconds=uuid.uuid4().int % 10**9)
    slot_id = await conn.fetchval(
        "INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity, dose_number, "
        "vaccine_code, closed, publish_from, publish_until) "
        "VALUES ($1, $2, $3, 30, $4, $5, 'comirnaty', $6, $7, $8) RETURNING id::text",
        uuid.UUID(clinic_id),
        event_id,
        starts,
        capacity,
        dose,
        closed,
        publish_from,
        publish_until,
    )
    return str(slot_id)


async def make_staff(
    conn: Conn, municipality: str, role: str, clinic_id: str | None = None
) -> tuple[str, str]:
    """(staff id, login)"""
    login = f"{role}-{uuid.uuid4().hex[:8]}"
    staff_id = await conn.fetchval(
        "INSERT INTO staff (municipality_code, login, display_name, role, clinic_id, "
        "password_hash) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id::text",
        municipality,
        login,
        login,
        role,
        None if clinic_id is None else uuid.UUID(clinic_id),
        hash_password(PASSWORD),
    )
    return str(staff_id), login
