"""An opening-day surge, played over HTTP only: residents, operators, clinic staff, an admin.

The harness (`machiai loadtest`) sets the LT_* variables; to run by hand against a deployment
seeded with `loadtests/seed.py`, set them yourself:

    LT_WAITROOM_URL, LT_BOOKING_URL   base URLs of the two services
    LT_PROFILE                        JSON of a loadtests.profiles.Profile
    LT_DATASET                        JSON of a loadtests.seed.Dataset (event, vouchers, staff)
    LT_RECORDS_DIR                    where the master (or a lone process) writes the
                                      residents' journeys; workers send theirs to the master

Residents poll exactly as the server directs (``poll_after_s``), except the share that the
profile makes refresh aggressively. Each resident's journey (what the server told it, and when)
is written as a JSON line for the judge: no application code is imported here.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.runners import MasterRunner, WorkerRunner

PROFILE: dict[str, Any] = json.loads(os.environ.get("LT_PROFILE", "{}"))
DATASET: dict[str, Any] = json.loads(os.environ.get("LT_DATASET", "{}"))
WAITROOM = os.environ.get("LT_WAITROOM_URL", "http://127.0.0.1:8000")
BOOKING = os.environ.get("LT_BOOKING_URL", "http://127.0.0.1:8001")
RECORDS_DIR = Path(os.environ.get("LT_RECORDS_DIR", "records"))
EVENT = DATASET.get("event_id", "")
JSON_HEADERS = {"accept": "application/json", "content-type": "application/json"}
MAX_SLOT_TRIES = 4
# Pre-queue tickets come before every later arrival whatever their numbers; this offset makes
# one order key for the judge (pre-queue among themselves are shuffled and not compared).
LATER_ARRIVALS = 10**12

JOURNEYS: list[dict[str, Any]] = []
# Per endpoint: responses with status >= 500, and requests that got no response at all.
SERVER_ERRORS: dict[str, int] = {}
_voucher_counter = itertools.count()
_operator_counter = itertools.count()


def ticket_payload(token: str) -> list[Any]:
    """The ticket's public payload: itsdangerous signs tickets but does not encrypt them."""
    compressed = token.startswith(".")
    encoded = token.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    payload: list[Any] = json.loads(zlib.decompress(raw) if compressed else raw)
    return payload


def worker_index(user: FastHttpUser) -> int:
    """Which locust worker process this is (0 when locust runs as one process)."""
    runner = user.environment.runner
    index = int(getattr(runner, "worker_index", 0) or 0) if runner is not None else 0
    if index >= DATASET["processes"]:
        raise RuntimeError(
            f"locust worker {index} joined a run seeded for {DATASET['processes']} processes"
        )
    return index


class Resident(FastHttpUser):
    """Join, wait as told, enter with the pass, book one slot (or give up on the way)."""

    host = WAITROOM
    weight = 100

    def on_start(self) -> None:
        # The seed gave each worker process its own sub-block of vouchers.
        local = next(_voucher_counter)
        if local >= DATASET["resident_block"]:
            raise RuntimeError("more residents in this locust process than the seed planned")
        n = worker_index(self) * DATASET["resident_block"] + local
        self.voucher = f"{DATASET['first_voucher'] + n:010d}"
        self.record: dict[str, Any] = {"voucher": self.voucher}
        JOURNEYS.append(self.record)
        roll = random.random()
        self.abandons_waiting = roll < PROFILE.get("abandon_waiting", 0)
        self.abandons_after_hold = not self.abandons_waiting and random.random() < PROFILE.get(
            "abandon_after_hold", 0
        )
        self.refreshes = random.random() < PROFILE.get("aggressive_refresh", 0)
        # Each resident is its own client behind the load balancer (the harness tells the
        # waitroom to trust X-Forwarded-For); it is a header only, no traffic goes there.
        self.client_ip = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        self.done = False

    def think(self) -> None:
        low, high = PROFILE.get("think_s", (0.5, 2.0))
        time.sleep(random.uniform(low, high))

    @task
    def journey(self) -> None:
        # One journey per resident; afterwards the user idles, because locust would replace a
        # stopped user with a new resident and the line would grow past the profile.
        if self.done:
            time.sleep(5)
            return
        self.done = True
        j = self.record
        ticket = self.join()
        if ticket is not None and self.wait_for_turn(ticket):
            self.book(ticket)
        j["left_at"] = j.get("left_at") or time.time()

    def join(self) -> str | None:
        j = self.record
        with self.client.post(
            f"/events/{EVENT}/join",
            headers={**JSON_HEADERS, "x-forwarded-for": self.client_ip},
            name="waitroom join",
            catch_response=True,
        ) as response:
            if response.status_code not in (200, 201):
                response.failure(f"join {response.status_code}")
                return None
            body = response.json()
        j["joined_at"] = time.time()
        token: str = body["ticket"]
        payload = ticket_payload(token)
        prequeue = bool(payload[3])
        j["arrival_no"] = int(payload[1]) + (0 if prequeue else LATER_ARRIVALS)
        j["prequeue"] = prequeue
        if not prequeue and body.get("estimated_wait_s") is not None:
            j["predicted_wait_s"] = float(body["estimated_wait_s"])
        self.observe(body)
        return token

    def observe(self, body: dict[str, Any]) -> float:
        """Record what the server said; returns how long it told us to wait before polling."""
        j = self.record
        now = time.time()
        state = body.get("state")
        if state == "waiting":
            j["last_waiting_at"] = now
            if "first_estimate_s" not in j and body.get("estimated_wait_s") is not None:
                # The first wait a resident is told (at join, or at opening for the pre-queue):
                # the judge compares it with the real wait from this moment.
                j["first_estimate_at"] = now
                j["first_estimate_s"] = float(body["estimated_wait_s"])
                j["first_estimate_low_s"] = body.get("estimated_wait_low_s")
                j["first_estimate_high_s"] = body.get("estimated_wait_high_s")
                j["first_ahead"] = body.get("ahead")
        elif state == "sold_out":
            # Standby while sold out is a stall no estimate can foresee: judged apart.
            j["sold_out_seen"] = True
        elif state == "admitted" and "admitted_at" not in j:
            j["admitted_at"] = now
            # The grace left since the turn: lets the judge tell the server's admission time
            # from the moment this poll noticed it.
            j["enter_within_s"] = body.get("enter_within_s")
        j["last_state"] = state
        return float(body.get("poll_after_s") or 1.0)

    def wait_for_turn(self, ticket: str) -> bool:
        j = self.record
        polls_before_giving_up = random.randint(1, 5) if self.abandons_waiting else None
        headers = {
            "accept": "application/json",
            "x-machiai-ticket": ticket,
            "x-forwarded-for": self.client_ip,
        }
        delay = 0.0
        polls = 0
        while j.get("last_state") != "admitted":
            if j.get("last_state") in ("expired", "closed"):
                return False
            if polls_before_giving_up is not None and polls >= polls_before_giving_up:
                j["abandoned"] = "waiting"
                return False
            time.sleep(random.uniform(0.2, 0.5) if self.refreshes else delay)
            with self.client.get(
                f"/events/{EVENT}/status",
                headers=headers,
                name="waitroom status",
                catch_response=True,
            ) as response:
                if response.status_code != 200:
                    response.failure(f"status {response.status_code}")
                    delay = 2.0
                    continue
                delay = self.observe(response.json())
            polls += 1
        return True

    def book(self, ticket: str) -> None:
        j = self.record
        with self.client.post(
            f"/events/{EVENT}/enter",
            headers={
                "accept": "application/json",
                "x-machiai-ticket": ticket,
                "x-forwarded-for": self.client_ip,
            },
            name="waitroom enter",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"enter {response.status_code}")
                return
            pass_token = response.json()["pass"]
        self.think()
        with self.client.post(
            f"{BOOKING}/api/sessions",
            headers={**JSON_HEADERS, "x-forwarded-for": self.client_ip},
            name="booking session",
            json={"pass": pass_token, "voucher": self.voucher, "birth_date": DATASET["birth_date"]},
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"session {response.status_code}")
                return
            session = response.json()["session"]
        j["entered_at"] = time.time()
        auth = {**JSON_HEADERS, "authorization": f"Bearer {session}"}
        try:
            self.hold_and_confirm(auth)
        finally:
            if not self.abandons_after_hold:
                self.client.request(
                    "DELETE", f"{BOOKING}/api/sessions", headers=auth, name="booking end session"
                )

    def hold_and_confirm(self, auth: dict[str, str]) -> None:
        j = self.record
        for _ in range(MAX_SLOT_TRIES):
            with self.client.get(
                f"{BOOKING}/api/slots", headers=auth, name="booking search", catch_response=True
            ) as response:
                if response.status_code != 200:
                    response.failure(f"search {response.status_code}")
                    return
                slots = [s for s in response.json()["slots"] if s.get("remaining", 0) > 0]
            if not slots:
                j["no_slot"] = True
                return
            self.think()
            slot = random.choice(slots[:20])
            with self.client.post(
                f"{BOOKING}/api/holds",
                headers=auth,
                json={"slot_id": slot["slot_id"]},
                name="booking hold",
                catch_response=True,
            ) as response:
                if response.status_code == 201:
                    hold_id = response.json()["hold_id"]
                elif response.status_code in (409, 410):
                    response.success()  # someone was faster: try another slot
                    continue
                else:
                    response.failure(f"hold {response.status_code}")
                    return
            if self.abandons_after_hold:
                j["abandoned"] = "hold"
                return
            self.think()
            with self.client.post(
                f"{BOOKING}/api/bookings",
                headers={**auth, "idempotency-key": uuid.uuid4().hex},
                json={"hold_id": hold_id},
                name="booking confirm",
                catch_response=True,
            ) as response:
                if response.status_code == 201:
                    j["confirmation_code"] = response.json()["booking"]["confirmation_code"]
                    j["confirmed_at"] = time.time()
                    return
                if response.status_code in (409, 410):
                    response.success()
                    continue
                response.failure(f"confirm {response.status_code}")
                return


class Admin(FastHttpUser):
    """Watches live stats and nudges the admission rate mid-run, as a municipality would."""

    host = WAITROOM
    fixed_count = int(PROFILE.get("admins", 0))
    wait_time = between(2, 4)

    def on_start(self) -> None:
        self.token = staff_login(self, "admin")
        self.nudged = False
        self.started = time.time()

    @task
    def watch(self) -> None:
        auth = {"authorization": f"Bearer {self.token}", "accept": "application/json"}
        self.client.get(f"/admin/events/{EVENT}/stats", headers=auth, name="admin stats")
        if not self.nudged and time.time() - self.started > PROFILE.get("duration_s", 60) / 3:
            rate = int(PROFILE["admit_per_minute"])
            # Up by 10 %, then back: a live change that must neither break nor skip anyone.
            for value in (rate + rate // 10, rate):
                self.client.request(
                    "PATCH",
                    f"/admin/events/{EVENT}",
                    headers={**auth, **JSON_HEADERS},
                    json={"admit_per_minute": value},
                    name="admin change rate",
                )
                time.sleep(3)
            self.nudged = True


class Operator(FastHttpUser):
    """A call-centre operator booking for callers from the same inventory, in their own lane."""

    host = BOOKING
    fixed_count = int(PROFILE.get("operators", 0))
    wait_time = between(3, 8)  # a phone call takes a while

    def on_start(self) -> None:
        self.token = staff_login(self, "operator")
        # Operators' vouchers follow all the residents' sub-blocks, one run of calls each.
        local = next(_operator_counter)
        self.index = worker_index(self) * int(PROFILE.get("operators", 0)) + local
        self.calls = itertools.count()

    @task
    def take_a_call(self) -> None:
        n = next(self.calls)
        calls = int(DATASET["operator_calls"])
        if n >= calls:
            return
        voucher_no = (
            DATASET["first_voucher"]
            + DATASET["processes"] * DATASET["resident_block"]
            + self.index * calls
            + n
        )
        voucher = f"{voucher_no:010d}"
        auth = {**JSON_HEADERS, "authorization": f"Bearer {self.token}"}
        with self.client.get(
            f"/api/operator/slots?event_id={EVENT}",
            headers=auth,
            name="operator search",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"operator search {response.status_code}")
                return
            slots = [s for s in response.json()["slots"] if s.get("remaining", 0) > 0]
        if not slots:
            return
        slot = random.choice(slots[:20])
        person = {"voucher": voucher, "birth_date": DATASET["birth_date"]}
        with self.client.post(
            "/api/operator/holds",
            headers=auth,
            json={**person, "slot_id": slot["slot_id"]},
            name="operator hold",
            catch_response=True,
        ) as response:
            if response.status_code in (409, 410):
                response.success()
                return
            if response.status_code != 201:
                response.failure(f"operator hold {response.status_code}")
                return
            hold_id = response.json()["hold_id"]
        with self.client.post(
            "/api/operator/bookings",
            headers={**auth, "idempotency-key": uuid.uuid4().hex},
            json={"voucher": voucher, "hold_id": hold_id},
            name="operator confirm",
            catch_response=True,
        ) as response:
            if response.status_code in (409, 410):
                response.success()
                return
            if response.status_code != 201:
                response.failure(f"operator confirm {response.status_code}")
                return
            code = response.json()["booking"]["confirmation_code"]
        JOURNEYS.append({"operator": True, "voucher": voucher, "confirmation_code": code})


class ClinicStaff(FastHttpUser):
    """Clinic staff adding supply during the surge: first a new day of slots from a weekly plan
    (previewed, then published), then a few capacity changes (it must never oversell)."""

    host = BOOKING
    fixed_count = int(PROFILE.get("clinic_staff", 0))
    wait_time = between(8, 15)

    def on_start(self) -> None:
        self.token = staff_login(self, "clinic")
        self.published = False
        self.changes = 0

    @task
    def add_supply(self) -> None:
        auth = {**JSON_HEADERS, "authorization": f"Bearer {self.token}"}
        if not self.published:
            self.published = True
            self.publish_a_day(auth)
        elif self.changes < 3:
            self.changes += 1
            self.adjust_capacity(auth)

    def publish_a_day(self, auth: dict[str, str]) -> None:
        # The day after the seeded ones, mornings only; a second clinic-staff user publishing
        # the same plan finds the slots there and skips them.
        day = DATASET["free_day"]
        plan = {
            "event_id": EVENT,
            "from_date": day,
            "to_date": day,
            "weekdays": list(range(7)),
            "opens": "09:00",
            "closes": "12:00",
            "slot_min": 30,
            "capacity": int(PROFILE.get("capacity_per_slot", 1)),
            "vaccine_code": "comirnaty",
            "dose_number": 1,
        }
        for dry_run, expected in ((True, 200), (False, 201)):
            with self.client.post(
                "/api/clinic/slots/plan",
                headers=auth,
                json={**plan, "dry_run": dry_run},
                name="clinic preview plan" if dry_run else "clinic publish plan",
                catch_response=True,
            ) as response:
                if response.status_code != expected:
                    response.failure(f"clinic plan {response.status_code}")
                    return
                result = response.json()
        JOURNEYS.append({"published": int(result.get("created", 0))})

    def adjust_capacity(self, auth: dict[str, str]) -> None:
        with self.client.get(
            f"/api/clinic/slots?date={DATASET['first_slot_day']}",
            headers=auth,
            name="clinic list slots",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"clinic list {response.status_code}")
                return
            slots = response.json()["slots"]
        if not slots:
            return
        slot = random.choice(slots)
        # One more place: a vial stretched further. Never below what is booked, by the server.
        self.client.request(
            "PATCH",
            f"/api/clinic/slots/{slot['slot_id']}",
            headers=auth,
            json={"capacity": int(slot["capacity"]) + 1},
            name="clinic change capacity",
        )


def staff_login(user: FastHttpUser, role: str) -> str:
    response = user.client.post(
        f"{BOOKING}/api/staff/login",
        headers=JSON_HEADERS,
        name="staff login",
        json={"login": f"lt-{role}", "password": DATASET["passwords"][role]},
    )
    token: str = response.json()["token"]
    return token


@events.request.add_listener
def count_server_errors(name: str, response: Any = None, **_kwargs: Any) -> None:
    status = getattr(response, "status_code", 0) or 0
    if status >= 500 or status == 0:
        SERVER_ERRORS[name] = SERVER_ERRORS.get(name, 0) + 1


def write_records(journeys: list[dict[str, Any]]) -> None:
    """One file per batch; the judge reads them all."""
    if not journeys:
        return
    RECORDS_DIR.mkdir(parents=True, exist_ok=True)
    path = RECORDS_DIR / f"{os.getpid()}-{uuid.uuid4().hex[:6]}.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for journey in journeys:
            fh.write(json.dumps(journey) + "\n")


def take_journeys() -> list[dict[str, Any]]:
    """This process's records so far (and its 5xx counts), handed over once."""
    if SERVER_ERRORS:
        JOURNEYS.append({"server_errors": dict(SERVER_ERRORS)})
        SERVER_ERRORS.clear()
    taken = list(JOURNEYS)
    JOURNEYS.clear()
    return taken


# Workers that have handed their journeys to the master in this run.
_REPORTED: set[str] = set()


@events.init.add_listener
def exchange_journeys(environment: Any, **_kwargs: Any) -> None:
    """Workers (forked here or on other machines) hand their residents' journeys to the master,
    which writes them; the judge on the master's machine reads them all."""
    runner = environment.runner
    if isinstance(runner, MasterRunner):

        def receive(environment: Any, msg: Any, **_kw: Any) -> None:
            write_records(msg.data["journeys"])
            _REPORTED.add(msg.node_id)

        runner.register_message("journeys", receive)
    elif isinstance(runner, WorkerRunner):

        def send(environment: Any, msg: Any, **_kw: Any) -> None:
            runner.send_message("journeys", {"journeys": take_journeys()})

        runner.register_message("send journeys", send)


@events.test_stop.add_listener
def write_journeys(environment: Any, **_kwargs: Any) -> None:
    """At the end of a headless run locust's master quits without waiting for its workers, so
    the master asks each worker for its journeys and waits for them before it lets go."""
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        workers = {client.id for client in runner.clients.all}
        _REPORTED.clear()
        runner.send_message("send journeys")
        deadline = time.monotonic() + 60
        while not workers <= _REPORTED and time.monotonic() < deadline:
            time.sleep(0.1)  # locust runs under gevent's monkey-patching: this yields
        if not workers <= _REPORTED:
            print(f"journeys missing from {len(workers - _REPORTED)} locust worker(s)", flush=True)
    elif not isinstance(runner, WorkerRunner):
        write_records(take_journeys())
