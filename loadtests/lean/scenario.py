"""The resident's journey of ``loadtests/locustfile.py``, one request at a time.

The same steps, shares, headers and records as locust's ``Resident``: join, a first status at
once, then each status after the ``poll_after_s`` the server told (or every 0.2–0.5 s for the
share that refreshes), enter on admission, open a session with the voucher, search, hold,
confirm (up to four slots), end the session, with think times in between; a share gives up
while waiting (after 1–5 polls), a share after holding. Two shares locust does not have (its
residents all book): the profile's ``book_share`` of the admitted go on into booking, and of
the others ``pass_share`` take their pass before leaving, the rest leave at their turn.

What differs is the shape, not the journey: a resident here is a small object that a worker
moves one step on when its time comes (``step`` returns how long until the next one), so
100,000 residents in line cost a heap entry each, not a task or a greenlet each.

One difference in what is written: ``last_waiting_at`` is when the status request that
answered "waiting" was sent, not when its answer was read (``admitted_at`` is when it was
read, as in locust). The server said "waiting" somewhere in between, so an order inversion
the judge finds from these records happened on the server, whatever the generator's own
delay: with thousands of requests a second, one slow turn of its event loop must not be
mistaken for the server admitting out of order.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
import zlib
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

from loadtests.lean.client import Lane, Origin, Reply
from loadtests.lean.stats import Stats

MAX_SLOT_TRIES = 4
# Pre-queue tickets come before every later arrival whatever their numbers (as the locustfile).
LATER_ARRIVALS = 10**12
# Requests without an expected status (locust's plain ``request``) fail at 400 and above.
ANY_SUCCESS = tuple(range(200, 400))
JSON = "accept: application/json\r\ncontent-type: application/json\r\n"


class Step(IntEnum):
    JOIN = 0
    POLL = 1
    ENTER = 2
    SESSION = 3
    SEARCH = 4
    HOLD = 5
    CONFIRM = 6
    END = 7


BOOKING_STEPS = frozenset({Step.SESSION, Step.SEARCH, Step.HOLD, Step.CONFIRM, Step.END})


class Trip:
    """A booking resident's passage through booking (the other residents never need one)."""

    __slots__ = ("token", "choices", "hold_id", "tries")

    def __init__(self, pass_token: str) -> None:
        self.token = pass_token  # the pass, then the session
        self.choices: list[str] = []
        self.hold_id = ""
        self.tries = 0


@dataclass(slots=True, eq=False)
class Resident:
    """One resident: where it is in its journey, and its record so far (the fields after
    ``trip``, named as the locustfile names them; None: not set, left out of the record)."""

    n: int
    step: Step = Step.JOIN
    ticket: str = ""
    polls: int = 0
    give_up_after: int = 0  # polls before giving up while waiting; 0: never
    refreshes: bool = False
    books: bool = True
    takes_pass: bool = True  # when it does not book: enters before leaving
    abandons_after_hold: bool = False
    trip: Trip | None = None
    joined_at: float | None = None
    arrival_no: int | None = None
    prequeue: bool | None = None
    predicted_wait_s: float | None = None
    last_waiting_at: float | None = None
    first_estimate_at: float | None = None
    first_estimate_s: float | None = None
    first_estimate_low_s: Any = None
    first_estimate_high_s: Any = None
    first_ahead: Any = None
    sold_out_seen: bool | None = None
    admitted_at: float | None = None
    enter_within_s: Any = None
    last_state: Any = None
    entered_at: float | None = None
    confirmation_code: str | None = None
    confirmed_at: float | None = None
    no_slot: bool | None = None
    abandoned: str | None = None
    left_at: float | None = None

    @classmethod
    def arriving(cls, n: int, profile: dict[str, Any]) -> Resident:
        """The ``n``-th resident, with the profile's shares drawn as the locustfile draws them."""
        abandons_waiting = random.random() < profile.get("abandon_waiting", 0)
        return cls(
            n,
            give_up_after=random.randint(1, 5) if abandons_waiting else 0,
            abandons_after_hold=not abandons_waiting
            and random.random() < profile.get("abandon_after_hold", 0),
            refreshes=random.random() < profile.get("aggressive_refresh", 0),
            books=random.random() < profile.get("book_share", 1.0),
            takes_pass=random.random() < profile.get("pass_share", 1.0),
        )

    def record(self, first_voucher: int) -> dict[str, Any]:
        """The JSON line the judge reads (the locustfile's keys; unset ones left out)."""
        out: dict[str, Any] = {"voucher": f"{first_voucher + self.n:010d}"}
        for name in RECORD_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


_NAMES = [f.name for f in fields(Resident)]
# What the judge reads of a resident.
RECORD_FIELDS = tuple(_NAMES[_NAMES.index("trip") + 1 :])


def ticket_payload(token: str) -> list[Any]:
    """The ticket's public payload (itsdangerous signs tickets but does not encrypt them);
    the locustfile's function, here because importing the locustfile starts gevent."""
    compressed = token.startswith(".")
    encoded = token.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    payload: list[Any] = json.loads(zlib.decompress(raw) if compressed else raw)
    return payload


def error_code(reply: Reply) -> str:
    """`` <code>`` of an error answer (``{"error": {"code": …}}``), or nothing."""
    try:
        return f" {reply.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return ""


class Scenario:
    """Moves residents one request at a time; records what the server said, and when."""

    def __init__(
        self,
        waitroom: Origin,
        booking: Origin,
        profile: dict[str, Any],
        dataset: dict[str, Any],
        stats: Stats,
    ) -> None:
        self.waitroom = waitroom
        self.booking = booking
        self.profile = profile
        self.dataset = dataset
        self.stats = stats
        event = dataset["event_id"]
        self.join_path = f"/events/{event}/join"
        self.status_path = f"/events/{event}/status"
        self.enter_path = f"/events/{event}/enter"
        low, high = profile.get("think_s", (0.5, 2.0))
        self.think_s = (float(low), float(high))
        # The pace the line was last told (``admission_rate_per_min``): what the polling
        # formula is computed from.
        self.told_rate_per_min: float | None = None

    def think(self) -> float:
        return random.uniform(*self.think_s)

    def voucher(self, r: Resident) -> str:
        return f"{self.dataset['first_voucher'] + r.n:010d}"

    @staticmethod
    def client_ip(r: Resident) -> str:
        # Each resident is its own client behind the load balancer, as in the locustfile.
        n = r.n
        return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"

    async def call(
        self, lane: Lane, method: str, name: str, data: bytes, ok: tuple[int, ...]
    ) -> tuple[Reply, float]:
        """Send, time and count one request; returns the reply and when it was sent (unix s).
        A status outside ``ok`` counts as a failure, named as the locustfile names it."""
        sent = time.time()
        started = time.perf_counter()
        reply = await lane.send(data)
        ms = (time.perf_counter() - started) * 1000
        failure = None
        if reply.status not in ok:
            # The locustfile's reason ("enter 409"), with the API's error code when there is one.
            failure = f"{name.split()[-1]} {reply.status}{error_code(reply)}"
        self.stats.record(method, name, ms, reply.status, failure)
        return reply, sent

    async def step(self, r: Resident, lane: Lane) -> float | None:
        """Do the resident's next request; seconds until the one after, None: it has left."""
        try:
            if r.step is Step.JOIN:
                return await self.join(r, lane)
            if r.step is Step.POLL:
                return await self.poll(r, lane)
            if r.step is Step.ENTER:
                return await self.enter(r, lane)
            return await self.book(r, lane)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            # A 2xx answer without what the API promises: the journey cannot go on.
            self.stats.record("", "unreadable answer", 0.0, 200, type(exc).__name__)
            return None

    async def join(self, r: Resident, lane: Lane) -> float | None:
        headers = f"{JSON}x-forwarded-for: {self.client_ip(r)}\r\n"
        data = self.waitroom.request("POST", self.join_path, headers)
        reply, _sent = await self.call(lane, "POST", "waitroom join", data, (200, 201))
        if reply.status not in (200, 201):
            return None
        body = reply.json()
        r.joined_at = time.time()
        r.ticket = body["ticket"]
        payload = ticket_payload(r.ticket)
        prequeue = bool(payload[3])
        r.arrival_no = int(payload[1]) + (0 if prequeue else LATER_ARRIVALS)
        r.prequeue = prequeue
        if not prequeue and body.get("estimated_wait_s") is not None:
            r.predicted_wait_s = float(body["estimated_wait_s"])
        self.observe(r, body, r.joined_at)
        # The locustfile polls once at once after joining (its first sleep is 0 s).
        return self.after_answer(r, 0.0)

    def observe(self, r: Resident, body: dict[str, Any], sent: float) -> float:
        """Record what the server said; returns how long it told us to wait before polling."""
        now = time.time()
        state = body.get("state")
        if state == "waiting":
            r.last_waiting_at = sent
            if r.first_estimate_s is None and body.get("estimated_wait_s") is not None:
                r.first_estimate_at = now
                r.first_estimate_s = float(body["estimated_wait_s"])
                r.first_estimate_low_s = body.get("estimated_wait_low_s")
                r.first_estimate_high_s = body.get("estimated_wait_high_s")
                r.first_ahead = body.get("ahead")
        elif state == "sold_out":
            r.sold_out_seen = True
        elif state == "admitted" and r.admitted_at is None:
            r.admitted_at = now
            r.enter_within_s = body.get("enter_within_s")
        r.last_state = state
        rate = body.get("admission_rate_per_min")
        if rate is not None:
            self.told_rate_per_min = float(rate)
        return float(body.get("poll_after_s") or 1.0)

    def after_answer(self, r: Resident, delay: float) -> float | None:
        """The locustfile's loop head after each answer: in, out, or poll again."""
        if r.last_state == "admitted":
            if not (r.books or r.takes_pass):
                return None  # its turn came, and it left without entering
            r.step = Step.ENTER
            return 0.0
        if r.last_state in ("expired", "closed"):
            return None
        if r.give_up_after and r.polls >= r.give_up_after:
            r.abandoned = "waiting"
            return None
        r.step = Step.POLL
        return random.uniform(0.2, 0.5) if r.refreshes else delay

    async def poll(self, r: Resident, lane: Lane) -> float | None:
        headers = (
            f"accept: application/json\r\nx-machiai-ticket: {r.ticket}\r\n"
            f"x-forwarded-for: {self.client_ip(r)}\r\n"
        )
        data = self.waitroom.request("GET", self.status_path, headers)
        reply, sent = await self.call(lane, "GET", "waitroom status", data, (200,))
        if reply.status != 200:
            return self.after_answer(r, 2.0)
        delay = self.observe(r, reply.json(), sent)
        r.polls += 1
        return self.after_answer(r, delay)

    async def enter(self, r: Resident, lane: Lane) -> float | None:
        headers = (
            f"accept: application/json\r\nx-machiai-ticket: {r.ticket}\r\n"
            f"x-forwarded-for: {self.client_ip(r)}\r\n"
        )
        data = self.waitroom.request("POST", self.enter_path, headers)
        reply, _sent = await self.call(lane, "POST", "waitroom enter", data, (200,))
        if reply.status != 200:
            return None
        pass_token = reply.json()["pass"]
        if not r.books:
            return None  # looked, and left: the pass lapses unused
        r.trip = Trip(pass_token)
        r.step = Step.SESSION
        return self.think()

    async def book(self, r: Resident, lane: Lane) -> float | None:
        trip = r.trip
        assert trip is not None
        auth = f"{JSON}authorization: Bearer {trip.token}\r\n"
        if r.step is Step.SESSION:
            body = json.dumps(
                {
                    "pass": trip.token,
                    "voucher": self.voucher(r),
                    "birth_date": self.dataset["birth_date"],
                }
            ).encode()
            headers = f"{JSON}x-forwarded-for: {self.client_ip(r)}\r\n"
            data = self.booking.request("POST", "/api/sessions", headers, body)
            reply, _sent = await self.call(lane, "POST", "booking session", data, (201,))
            if reply.status != 201:
                return None
            trip.token = reply.json()["session"]
            r.entered_at = time.time()
            r.step = Step.SEARCH
            return 0.0
        if r.step is Step.SEARCH:
            data = self.booking.request("GET", "/api/slots", auth)
            reply, _sent = await self.call(lane, "GET", "booking search", data, (200,))
            if reply.status != 200:
                return self.end(r)
            slots = [s for s in reply.json()["slots"] if s.get("remaining", 0) > 0]
            if not slots:
                r.no_slot = True
                return self.end(r)
            trip.choices = [str(s["slot_id"]) for s in slots[:20]]
            r.step = Step.HOLD
            return self.think()
        if r.step is Step.HOLD:
            body = json.dumps({"slot_id": random.choice(trip.choices)}).encode()
            data = self.booking.request("POST", "/api/holds", auth, body)
            # 409/410: someone was faster; not a failure (the locustfile's ``success()``).
            reply, _sent = await self.call(lane, "POST", "booking hold", data, (201, 409, 410))
            if reply.status in (409, 410):
                return self.try_again(r)  # someone was faster: another slot
            if reply.status != 201:
                return self.end(r)
            trip.hold_id = reply.json()["hold_id"]
            if r.abandons_after_hold:
                r.abandoned = "hold"
                return None  # the session is left open, as the locustfile leaves it
            r.step = Step.CONFIRM
            return self.think()
        if r.step is Step.CONFIRM:
            body = json.dumps({"hold_id": trip.hold_id}).encode()
            headers = f"{auth}idempotency-key: {uuid.uuid4().hex}\r\n"
            data = self.booking.request("POST", "/api/bookings", headers, body)
            reply, _sent = await self.call(lane, "POST", "booking confirm", data, (201, 409, 410))
            if reply.status == 201:
                r.confirmation_code = reply.json()["booking"]["confirmation_code"]
                r.confirmed_at = time.time()
                return self.end(r)
            if reply.status in (409, 410):
                return self.try_again(r)
            return self.end(r)
        data = self.booking.request("DELETE", "/api/sessions", auth)
        await self.call(lane, "DELETE", "booking end session", data, ANY_SUCCESS)
        return None

    def try_again(self, r: Resident) -> float:
        trip = r.trip
        assert trip is not None
        trip.tries += 1
        if trip.tries >= MAX_SLOT_TRIES:
            return self.end(r)
        r.step = Step.SEARCH
        return 0.0

    @staticmethod
    def end(r: Resident) -> float:
        """End the session next (the locustfile's ``finally``)."""
        r.step = Step.END
        return 0.0
