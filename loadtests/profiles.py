"""Named load profiles: how many residents arrive, how fast, and what goes wrong on purpose."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import StrEnum


class Fault(StrEnum):
    NONE = "none"
    REDIS_RESTART = "redis-restart"  # Redis stopped and started empty mid-surge
    SLOW_BOOKING = "slow-booking"  # every confirm slowed in Postgres for a while


class ProfileError(ValueError):
    pass


class Generator(StrEnum):
    LOCUST = "locust"  # loadtests/locustfile.py: residents, operators, clinic staff, an admin
    LEAN = "lean"  # loadtests/lean: the same residents, by the hundred thousand; nobody else


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
    # Of the residents admitted, the share that signs in to booking and books; of the others,
    # the share that still takes its pass before leaving (the rest leave at their turn). The
    # lean generator only: locust's residents all book.
    book_share: float = 1.0
    pass_share: float = 1.0
    generator: Generator = Generator.LOCUST

    def __post_init__(self) -> None:
        for name, share in (("book_share", self.book_share), ("pass_share", self.pass_share)):
            if not 0.0 <= share <= 1.0:
                raise ProfileError(f"{name} {share} is not a share (0 to 1)")
        if self.generator is Generator.LOCUST and self.book_share != 1.0:
            raise ProfileError("book_share below 1 needs the lean generator")
        staff = self.operators or self.clinic_staff or self.admins
        if self.generator is Generator.LEAN and staff:
            raise ProfileError(
                "the lean generator plays residents only: operators, clinic_staff and admins "
                "must be 0"
            )

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
        Profile(
            name="city-opening",
            description="A city's opening: 100,000 residents (lean generator), a pre-queue, "
            "admission at 12,000/min, a tenth of them book",
            # 1,000 arrivals a second for 100 s; the event opens 40 s after seeding, so the
            # first ~25,000 are shuffled in the pre-queue. At 12,000/min the line drains in
            # under nine minutes (6,000/min would take 17: beyond a run of at most 15).
            residents=100_000,
            spawn_per_s=1000,
            duration_s=600,
            # 12,000 places for the ~9,500 who book: nobody is turned away as sold out.
            slots=2000,
            capacity_per_slot=6,
            admit_per_minute=12_000,
            # A turn not taken holds its place for 120 s (~22,000 at this rate; an unused pass
            # 300 s, ~55,000 with pass_share=1): the rate is the limit here, never the cap.
            max_active=100_000,
            operators=0,
            clinic_staff=0,
            admins=0,
            prequeue_s=40,
            # 100 residents refreshing every 0.2–0.5 s (~300 polls/s on top of the
            # directed ones; counted apart in the report).
            aggressive_refresh=0.001,
            book_share=0.1,
            # The others leave when their turn comes, as most who do not book would: a pass
            # taken is followed to booking by the browser (and redeemed there); unredeemed
            # passes count as active in booking until they expire (loadtests/README.md).
            pass_share=0.0,
            generator=Generator.LEAN,
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
    "book_share": float,
    "pass_share": float,
}


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
