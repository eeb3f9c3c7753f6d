"""A dataset sized for a profile: one municipality, an event, clinics, slots, registry, staff.

Written straight to Postgres before the services start, so booking's start-up
rebuild loads the inventory and the waitroom finds the event.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import asyncpg

from loadtests.profiles import Profile

MUNICIPALITY = "990001"
FIRST_VOUCHER = 2_000_000_000
BIRTH_DATE = datetime(1950, 4, 1).date()
CLINICS = 5
SLOTS_PER_DAY = 16  # half-hour slots from 09:00, spread over the clinics
OPERATOR_CALLS = 200  # bookings one simulated operator makes at most
JST = timezone(timedelta(hours=9))


@dataclass(frozen=True, slots=True)
class Dataset:
    event_id: str
    municipality: str
    first_voucher: int
    residents: int  # registered vouchers in the block
    resident_block: int  # resident vouchers per locust worker process
    processes: int  # locust worker processes the block is split over
    operator_calls: int  # vouchers per simulated operator, after the residents' sub-blocks
    birth_date: str
    passwords: dict[str, str]
    opens_at: datetime
    first_slot_day: str  # Japan date of the first day with slots
    free_day: str  # Japan date of the first day after the seeded slots (for publishing more)


def staff_login(role: str) -> str:
    return f"lt-{role}"


async def seed_profile(
    conn: asyncpg.Connection, profile: Profile, now: datetime, processes: int = 1
) -> Dataset:
    from machiai.passwords import hash_password  # harness-side only; scenarios import no app code

    # Each run gets its own event, clinics and block of vouchers, so runs against one
    # deployment never collide with what an earlier run booked (nothing is deleted).
    event_id = f"lt-{profile.name}-{now:%Y%m%d-%H%M%S}"
    opens_at = now + timedelta(seconds=profile.prequeue_s)
    state = "prequeue" if profile.prequeue_s else "open"
    # Enough registered residents for every resident user and every operator booking, in one
    # sub-block per locust worker process: locust splits users between workers only roughly
    # evenly, so each worker gets some slack rather than a share computed to the last user.
    resident_block = -(-profile.residents // processes) + 16
    residents = processes * (resident_block + profile.operators * OPERATOR_CALLS)
    async with conn.transaction():
        # One seeding at a time per database: the voucher block below must not be shared.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('machiai-loadtest-seed'))")
        last = await conn.fetchval(
            "SELECT max(voucher_number::bigint) FROM registry WHERE municipality_code = $1",
            MUNICIPALITY,
        )
        first_voucher = FIRST_VOUCHER if last is None else int(last) + 1
        if first_voucher + residents > 9_999_999_999:
            raise RuntimeError("load-test voucher numbers exhausted: drop municipality 990001")
        await conn.execute(
            "INSERT INTO municipalities (code, name_ja, name_en) VALUES ($1, '負荷試験市', "
            "'Loadtest City') ON CONFLICT DO NOTHING",
            MUNICIPALITY,
        )
        await conn.execute(
            "INSERT INTO vaccines (code, name_ja, name_en, dose_interval_days) "
            "VALUES ('comirnaty', 'コミナティ', 'Comirnaty', 21) ON CONFLICT DO NOTHING"
        )
        await conn.execute(
            """
            INSERT INTO events (id, municipality_code, name_ja, name_en, prequeue_at, opens_at,
                                closes_at, admit_per_minute, max_active, eligibility_group, state)
            VALUES ($1, $2, '負荷試験', 'Load test', $3, $4, $5, $6, $7, '65+', $8)
            """,
            event_id,
            MUNICIPALITY,
            now - timedelta(seconds=1),
            opens_at,
            now + timedelta(days=30),
            profile.admit_per_minute,
            profile.max_active,
            state,
        )
        clinic_ids = [
            await conn.fetchval(
                "INSERT INTO clinics (municipality_code, name_ja, name_en, area) "
                "VALUES ($1, $2, $3, $4) RETURNING id",
                MUNICIPALITY,
                f"会場{i}",
                f"Clinic {i}",
                f"区{i % 3}",
            )
            for i in range(CLINICS)
        ]
        first_day = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        per_clinic = -(-profile.slots // CLINICS)
        seeded_days = -(-per_clinic // SLOTS_PER_DAY)
        rows = []
        for i in range(profile.slots):
            clinic = clinic_ids[i % CLINICS]
            n = i // CLINICS
            starts = first_day + timedelta(
                days=n // SLOTS_PER_DAY, hours=9, minutes=30 * (n % SLOTS_PER_DAY)
            )
            rows.append((clinic, event_id, starts, 30, profile.capacity_per_slot, 1, "comirnaty"))
        await conn.executemany(
            "INSERT INTO slots (clinic_id, event_id, starts_at, duration_min, capacity, "
            "dose_number, vaccine_code) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            rows,
        )
        await conn.copy_records_to_table(
            "registry",
            columns=["municipality_code", "voucher_number", "birth_date", "eligibility_groups"],
            records=[
                (MUNICIPALITY, f"{first_voucher + i:010d}", BIRTH_DATE, ["65+"])
                for i in range(residents)
            ],
        )
        passwords = {}
        for role in ("admin", "operator", "clinic"):
            password = secrets.token_urlsafe(12)
            passwords[role] = password
            status = await conn.execute(
                "INSERT INTO staff (municipality_code, login, display_name, role, clinic_id, "
                "password_hash) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (login) DO UPDATE SET clinic_id = EXCLUDED.clinic_id, "
                "password_hash = EXCLUDED.password_hash, active = true "
                # Never take over a login some real municipality happens to use.
                "WHERE staff.municipality_code = EXCLUDED.municipality_code",
                MUNICIPALITY,
                staff_login(role),
                f"load test {role}",
                role,
                clinic_ids[0] if role == "clinic" else None,
                hash_password(password),
            )
            if status != "INSERT 0 1":
                raise RuntimeError(
                    f"staff login {staff_login(role)!r} belongs to another municipality"
                )
    return Dataset(
        event_id=event_id,
        municipality=MUNICIPALITY,
        first_voucher=first_voucher,
        residents=residents,
        resident_block=resident_block,
        processes=processes,
        operator_calls=OPERATOR_CALLS,
        birth_date=BIRTH_DATE.isoformat(),
        passwords=passwords,
        opens_at=opens_at.astimezone(UTC),
        first_slot_day=(first_day + timedelta(hours=9)).astimezone(JST).date().isoformat(),
        free_day=(first_day + timedelta(days=seeded_days, hours=9))
        .astimezone(JST)
        .date()
        .isoformat(),
    )
