"""`machiai seed-demo`: one municipality, an open event, clinics with a week of slots, a registry.

Idempotent: fixed ids and ON CONFLICT make a second run add nothing; staff
passwords are generated afresh on each run and printed (development only).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from machiai.passwords import hash_password
from machiai.pg import Conn

JST = timezone(timedelta(hours=9))
DEMO_MUNICIPALITY = "999999"
DEMO_EVENT = "demo-65plus"
_NAMESPACE = uuid.UUID("6d616368-6961-4964-656d-6f0000000000")
SLOT_HOURS = range(9, 17)
SLOT_MINUTES = 30
SLOT_CAPACITY = 4
REGISTRY_SIZE = 1000
FIRST_VOUCHER = 1_000_000_001

CLINICS = [
    ("中央保健センター", "Central Health Centre", "中区", "Naka"),
    ("西市民病院", "West Municipal Hospital", "西区", "Nishi"),
    ("北ふれあいクリニック", "North Fureai Clinic", "北区", "Kita"),
]


@dataclass(frozen=True, slots=True)
class DemoSummary:
    municipality: str
    event_id: str
    clinics: int
    slots: int
    residents: int
    first_voucher: str
    first_birth_date: date
    staff_passwords: dict[str, str]


def demo_birth_date(index: int) -> date:
    """Residents 0..n: birth dates spread over 1935–1960, all 65+ in 2026."""
    return date(1935, 1, 1) + timedelta(days=(index * 37) % (25 * 365))


async def seed_demo(conn: Conn, now: datetime | None = None) -> DemoSummary:
    now = now or datetime.now(JST)
    today = now.astimezone(JST).date()
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO municipalities (code, name_ja, name_en) "
            "VALUES ($1, 'デモ市', 'Demo City') "
            "ON CONFLICT (code) DO NOTHING",
            DEMO_MUNICIPALITY,
        )
        await conn.execute(
            """
            INSERT INTO vaccines (code, name_ja, name_en, dose_interval_days, max_doses)
            VALUES ('comirnaty', 'コミナティ', 'Comirnaty', 21, 2),
                   ('spikevax', 'スパイクバックス', 'Spikevax', 28, 2)
            ON CONFLICT (code) DO NOTHING
            """
        )
        await conn.execute(
            """
            INSERT INTO events (id, municipality_code, name_ja, name_en, prequeue_at, opens_at,
                                closes_at, admit_per_minute, max_active, eligibility_group, state)
            VALUES ($1, $2, '65歳以上 接種予約', 'Bookings for ages 65+', $3, $3, $4, 60, 100,
                    '65+', 'open')
            ON CONFLICT (id) DO NOTHING
            """,
            DEMO_EVENT,
            DEMO_MUNICIPALITY,
            now - timedelta(minutes=1),
            now + timedelta(days=30),
        )
        clinic_ids: list[uuid.UUID] = []
        for index, (name_ja, name_en, area_ja, _area_en) in enumerate(CLINICS):
            clinic_id = uuid.uuid5(_NAMESPACE, f"clinic-{index}")
            clinic_ids.append(clinic_id)
            # The clinic's 医療機関コード (10 digits) for the ledger export; a demo made
            # before codes existed gets one on the next run.
            await conn.execute(
                "INSERT INTO clinics (id, municipality_code, name_ja, name_en, area, code) "
                "VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (id) DO UPDATE SET code = coalesce(clinics.code, EXCLUDED.code)",
                clinic_id,
                DEMO_MUNICIPALITY,
                name_ja,
                name_en,
                area_ja,
                f"{DEMO_MUNICIPALITY}{index + 1:04d}",
            )
        slot_rows = []
        for clinic_id in clinic_ids:
            for day in range(1, 8):
                d = today + timedelta(days=day)
                for hour in SLOT_HOURS:
                    for minute in range(0, 60, SLOT_MINUTES):
                        starts = datetime(d.year, d.month, d.day, hour, minute, tzinfo=JST)
                        slot_rows.append(
                            (
                                clinic_id,
                                DEMO_EVENT,
                                starts,
                                SLOT_MINUTES,
                                SLOT_CAPACITY,
                                1,
                                "comirnaty",
                            )
                        )
        await conn.executemany(
            """
            INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity,
                               dose_number, vaccine_code)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (clinic_id, starts_at, vaccine_code, dose_number) DO NOTHING
            """,
            slot_rows,
        )
        await conn.executemany(
            "INSERT INTO registry (municipality_code, voucher_number, birth_date, "
            "eligibility_groups) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            [
                (DEMO_MUNICIPALITY, f"{FIRST_VOUCHER + i:010d}", demo_birth_date(i), ["65+"])
                for i in range(REGISTRY_SIZE)
            ],
        )
        passwords: dict[str, str] = {}
        staff: list[tuple[str, str, str, uuid.UUID | None]] = [
            ("demo-admin", "デモ管理者", "admin", None),
            ("demo-operator", "デモオペレーター", "operator", None),
            ("demo-clinic", "中央保健センター受付", "clinic", clinic_ids[0]),
        ]
        for login, display, role, staff_clinic in staff:
            password = secrets.token_urlsafe(12)
            passwords[login] = password
            await conn.execute(
                """
                INSERT INTO staff (municipality_code, login, display_name, role, clinic_id,
                                   password_hash)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (login) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                    generation = staff.generation + 1
                """,
                DEMO_MUNICIPALITY,
                login,
                display,
                role,
                staff_clinic,
                hash_password(password),
            )
        slots = await conn.fetchval("SELECT count(*) FROM slots WHERE event_id = $1", DEMO_EVENT)
    return DemoSummary(
        municipality=DEMO_MUNICIPALITY,
        event_id=DEMO_EVENT,
        clinics=len(clinic_ids),
        slots=int(slots),
        residents=REGISTRY_SIZE,
        first_voucher=f"{FIRST_VOUCHER:010d}",
        first_birth_date=demo_birth_date(0),
        staff_passwords=passwords,
    )
