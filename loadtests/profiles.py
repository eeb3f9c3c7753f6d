"""Named load profiles: how many residents arrive, how fast, and what goes wrong on purpose."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum


class Fault(StrEnum):
    NONE = "none"
    REDIS_RESTART = "redis-restart"  # Redis stopped and started empty mid-surge
    SLOW_BOOKING = "slow-booking"  # every confirm slowed in Postgres for a while


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    residents: int  # locust users playing residents (each books at most once)
    spawn_per_s: float  # arrival rate of residents
    duration_s: int  # hard bound of the locust run
    slots: int
    capacity_per_slot: int
    admit_per_minute: int
    max_active: int
    operators: int = 1
    clinic_staff: int = 1
    admins: int = 1
    prequeue_s: int = 0  # > 0: the event opens this long after the run starts
    abandon_waiting: float = 0.05
    abandon_after_hold: float = 0.05
    aggressive_refresh: float = 0.05
    think_s: tuple[float, float] = (0.5, 2.0)
    fault: Fault = Fault.NONE
    fault_at_s: int = 0
    fault_for_s: int = 0

    @property
    def capacity(self) -> int:
        return self.slots * self.capacity_per_slot

    @property
    def users(self) -> int:
        return self.residents + self.operators + self.clinic_staff + self.admins


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile(
            name="smoke",
            description="CI smoke: a small line admitted into booking; every invariant judged",
            residents=60,
            spawn_per_s=20,
            duration_s=45,
            slots=20,
            capacity_per_slot=2,
            admit_per_minute=600,
            max_active=30,
            think_s=(0.1, 0.4),
        ),
        Profile(
            name="opening-spike",
            description="Everyone arrives in the first minute at 2x the design load; "
            "a pre-queue opens 20 s in",
            residents=1200,
            spawn_per_s=40,
            # Admission at 400/min drains the line in three minutes, so the later arrivals
            # wait over two (the wait estimate is judged on waits of two minutes or more).
            duration_s=240,
            slots=300,
            capacity_per_slot=3,
            admit_per_minute=400,
            max_active=150,
            prequeue_s=20,
            operators=2,
        ),
        Profile(
            name="refresh-storm",
            description="A third of the line refreshes as fast as it can",
            residents=600,
            spawn_per_s=30,
            duration_s=120,
            slots=150,
            capacity_per_slot=2,
            admit_per_minute=300,
            max_active=100,
            aggressive_refresh=0.33,
        ),
        Profile(
            name="call-centre",
            description="Call-centre operators book from the same inventory during the web surge",
            residents=400,
            spawn_per_s=20,
            duration_s=120,
            slots=100,
            capacity_per_slot=2,
            admit_per_minute=400,
            max_active=80,
            operators=10,
        ),
        Profile(
            name="redis-restart",
            description="Redis is restarted empty mid-surge; booking rebuilds from Postgres",
            residents=400,
            spawn_per_s=20,
            duration_s=120,
            slots=100,
            capacity_per_slot=2,
            admit_per_minute=400,
            max_active=80,
            fault=Fault.REDIS_RESTART,
            fault_at_s=40,
            fault_for_s=3,
        ),
        Profile(
            name="slow-booking",
            description="Confirms are slowed for 30 s while residents still arrive; "
            "admission slows (backpressure), then recovers",
            # Arrivals go on through the slow spell, and the line is long enough that the
            # later ones wait over two minutes: their estimates are told during the spell.
            residents=480,
            spawn_per_s=8,
            duration_s=300,
            slots=250,
            capacity_per_slot=2,
            admit_per_minute=120,
            max_active=80,
            fault=Fault.SLOW_BOOKING,
            fault_at_s=30,
            fault_for_s=30,
        ),
        Profile(
            name="cap-bound",
            description="Few active places and long booking sessions: admission is bound by "
            "the active cap (places freeing), not by the rate",
            # 30 places, each held ~40 s (three long thinks per booking; abandoned turns
            # hold theirs for WAITROOM_HOLD_S): under one admission a second against a
            # configured 600/min. Arrivals at 2/s for 100 s: the later ones wait over two
            # minutes, with the line's pace measured by then.
            residents=200,
            spawn_per_s=2,
            duration_s=360,
            slots=150,
            capacity_per_slot=2,
            admit_per_minute=600,
            max_active=30,
            think_s=(10.0, 16.0),
            # A session abandoned after a hold keeps its place until booking's session TTL
            # (30 min): with 30 places a few of those would halve admission within the run,
            # a leak this profile is not about (the others keep their 5 %).
            abandon_after_hold=0.0,
        ),
    ]
}


# What `--set` may change: the sizes and rates, not the fault machinery or the shares.
TUNABLE = {
    "residents": int,
    "spawn_per_s": float,
    "duration_s": int,
    "slots": int,
    "capacity_per_slot": int,
    "admit_per_minute": int,
    "max_active": int,
    "operators": int,
    "clinic_staff": int,
    "prequeue_s": int,
}


class ProfileError(ValueError):
    pass


def with_overrides(profile: Profile, assignments: list[str]) -> Profile:
    """``profile`` with ``name=value`` assignments applied, e.g. to find the largest surge."""
    assert set(TUNABLE) <= {f.name for f in fields(Profile)}
    changes: dict[str, int | float] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        convert = TUNABLE.get(name.strip())
        if not sep or convert is None:
            raise ProfileError(
                f"--set {assignment!r}: expected NAME=VALUE with NAME one of {', '.join(TUNABLE)}"
            )
        try:
            value = convert(raw.strip())
        except ValueError:
            raise ProfileError(f"--set {assignment!r}: {raw!r} is not a number") from None
        if value < 0 or (value == 0 and name in ("residents", "spawn_per_s", "duration_s")):
            raise ProfileError(f"--set {assignment!r}: must be positive")
        changes[name.strip()] = value
    return replace(profile, **changes) if changes else profile  # type: ignore[arg-type]
