"""Stateful property test: hold / confirm / cancel / change / expire / Redis flush, on the web
and by phone, against a reference model. After every step Postgres, Redis and the model
agree on every slot: places booked, booked by phone, and left for each channel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from booking import errors
from booking.domain import Actor, Channel, Resident
from booking.services.confirm import cancel_booking, confirm_booking
from booking.services.context import Ctx, SlotCatalog
from booking.services.hold import hold_slot
from booking.settings import BookingSettings
from booking.store import keys
from booking.store.redis_store import RedisStore
from tests.booking.factory import World, make_slot, make_world
from tests.booking.helpers import operator, web
from tests.servers import redis_client_for_tests

T = TypeVar("T")
RESIDENTS = 4
SLOTS = 3
PHONE_SHARE_PCT = 50  # capacities 1, 2, 3 keep 0, 1, 1 places for the phone
PHONE = Channel.OPERATOR


@dataclass
class Model:
    capacity: dict[str, int]
    booked: dict[str, int] = field(default_factory=dict)
    booked_phone: dict[str, int] = field(default_factory=dict)
    holds: dict[int, tuple[str, Channel]] = field(default_factory=dict)  # resident -> slot
    hold_ids: dict[int, str] = field(default_factory=dict)
    # resident -> (booking id, slot, channel)
    bookings: dict[int, tuple[str, str, Channel]] = field(default_factory=dict)

    def book(self, slot: str, channel: Channel, step: int) -> None:
        self.booked[slot] = self.booked.get(slot, 0) + step
        if channel is PHONE:
            self.booked_phone[slot] = self.booked_phone.get(slot, 0) + step

    def left(self, slot: str, channel: Channel = Channel.WEB) -> int:
        """The pools, written afresh: the phone takes its kept places first, then the web's."""
        held = {
            ch: sum(1 for s, c in self.holds.values() if (s, c) == (slot, ch)) for ch in Channel
        }
        cap, booked = self.capacity[slot], self.booked.get(slot, 0)
        if channel is PHONE:
            return cap - booked - held[Channel.WEB] - held[PHONE]
        phone = self.booked_phone.get(slot, 0)
        kept = cap * PHONE_SHARE_PCT // 100
        return cap - (booked - phone) - held[Channel.WEB] - max(phone + held[PHONE], kept)


async def test_booking_matches_reference_model(env_vars: dict[str, str]) -> None:
    # The machine's steps are synchronous: it runs on its own loop, in a worker thread.
    await asyncio.to_thread(check_against_model, env_vars)


def check_against_model(env_vars: dict[str, str]) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def run(coro: Awaitable[T]) -> T:
        return loop.run_until_complete(coro)

    base = BookingSettings.from_env(env_vars)
    pool: asyncpg.Pool = run(asyncpg.create_pool(base.core.database_url, min_size=1, max_size=4))
    client = redis_client_for_tests(base.core.redis_url)

    async def seed() -> World:
        async with pool.acquire() as conn:
            made = await make_world(conn, residents=0)
            await conn.execute(
                "UPDATE events SET phone_share_pct = $2 WHERE id = $1",
                made.event_id,
                PHONE_SHARE_PCT,
            )
            return made

    world = run(seed())
    catalog = SlotCatalog(pool)

    class BookingMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.prefix = f"m{uuid.uuid4().hex[:12]}:"
            self.ctx = Ctx(base, RedisStore(client, self.prefix), pool, catalog)
            self.run_id = uuid.uuid4().int % 10**9
            caps = [1, 2, 3][:SLOTS]

            async def slots() -> list[str]:
                async with pool.acquire() as conn:
                    return [await make_slot(conn, world.clinic_id, world.event_id, c) for c in caps]

            self.slots = run(slots())
            self.model = Model(capacity=dict(zip(self.slots, caps, strict=True)))
            self.actors = {
                Channel.WEB: web(world.municipality, world.event_id),
                PHONE: operator(world.municipality),
            }

        def actor(self, r: int) -> Actor:
            """Whoever holds for the resident confirms or changes that hold."""
            return self.actors[self.model.holds[r][1] if r in self.model.holds else Channel.WEB]

        def teardown(self) -> None:
            run(self._flush())
            run(self.ctx.redis.aclose())

        async def _flush(self) -> None:
            found = [k async for k in client.scan_iter(match=self.prefix + "*", count=1000)]
            if found:
                await client.delete(*found)

        def who(self, r: int) -> Resident:
            return Resident(world.municipality, f"{self.run_id + r * 10**9 % 10**10:010d}"[-10:])

        @rule(
            r=st.integers(0, RESIDENTS - 1),
            s=st.integers(0, SLOTS - 1),
            channel=st.sampled_from(Channel),
        )
        def hold(self, r: int, s: int, channel: Channel) -> None:
            slot = self.slots[s]
            m = self.model
            try:
                held = run(hold_slot(self.ctx, self.actors[channel], self.who(r), slot))
            except errors.HoldExists:
                assert r in m.holds
                return
            except errors.SlotFull:
                assert r not in m.holds and m.left(slot, channel) <= 0
                return
            assert r not in m.holds and m.left(slot, channel) > 0
            assert held.left == m.left(slot, channel) - 1
            m.holds[r] = (slot, channel)
            m.hold_ids[r] = held.hold_id

        @rule(r=st.integers(0, RESIDENTS - 1))
        def confirm(self, r: int) -> None:
            m = self.model
            hold_id = m.hold_ids.get(r, "0" * 32)
            try:
                result = run(confirm_booking(self.ctx, self.actor(r), self.who(r), hold_id))
            except errors.HoldExpired:
                assert r not in m.holds
                return
            except errors.AlreadyBooked:
                assert r in m.bookings
                m.holds.pop(r)
                return
            assert r in m.holds and r not in m.bookings
            slot, channel = m.holds.pop(r)
            m.book(slot, channel, 1)
            m.bookings[r] = (result["booking"]["booking_id"], slot, channel)

        @rule(r=st.integers(0, RESIDENTS - 1), by=st.sampled_from(Channel))
        def cancel(self, r: int, by: Channel) -> None:
            """The resident on the web, or an operator for them."""
            m = self.model
            booking_id = m.bookings[r][0] if r in m.bookings else str(uuid.uuid4())
            voucher = self.who(r).voucher if by is Channel.WEB else None
            try:
                run(cancel_booking(self.ctx, self.actors[by], booking_id, voucher))
            except errors.NoBooking:
                assert r not in m.bookings
                return
            _, slot, channel = m.bookings.pop(r)
            m.book(slot, channel, -1)

        @rule(r=st.integers(0, RESIDENTS - 1))
        def change(self, r: int) -> None:
            m = self.model
            if r not in m.bookings or r not in m.holds:
                return
            booking_id, old, old_channel = m.bookings[r]
            try:
                result = run(
                    confirm_booking(
                        self.ctx, self.actor(r), self.who(r), m.hold_ids[r], replaces=booking_id
                    )
                )
            except errors.Conflict:
                assert m.holds.pop(r)[0] == old
                return
            new, channel = m.holds.pop(r)
            assert new != old
            m.book(old, old_channel, -1)
            m.book(new, channel, 1)
            m.bookings[r] = (result["booking"]["booking_id"], new, channel)

        @rule(r=st.integers(0, RESIDENTS - 1))
        def expire(self, r: int) -> None:
            """Time passes for this resident's hold: its expiry is now in the past."""
            m = self.model
            if r not in m.holds:
                return
            slot, channel = m.holds.pop(r)
            hold_id = m.hold_ids.pop(r)
            who = self.who(r)

            member = f"{hold_id.partition('.')[2]}:{who.ref}"
            holds = keys.slot_phone_holds if channel is PHONE else keys.slot_holds

            async def lapse() -> None:
                await client.zadd(holds(self.prefix, slot), {member: 1}, xx=True)
                await client.delete(keys.resident_hold(self.prefix, who.municipality, who.voucher))

            run(lapse())

        @rule()
        def flush(self) -> None:
            """Redis loses everything: holds are gone; inventory comes back from Postgres."""
            run(self._flush())
            self.model.holds.clear()
            self.model.hold_ids.clear()

        @invariant()
        def accounts_agree(self) -> None:
            async def check() -> None:
                rows = await pool.fetch(
                    "SELECT s.id::text, s.capacity, s.booked, s.booked_phone, "
                    "(SELECT count(*) FROM bookings b WHERE b.slot_id = s.id "
                    " AND b.status = 'confirmed') AS active, "
                    "(SELECT count(*) FROM bookings b WHERE b.slot_id = s.id "
                    " AND b.status = 'confirmed' AND b.channel = 'operator') AS by_phone "
                    "FROM slots s WHERE s.id = ANY($1::uuid[])",
                    self.slots,
                )
                m = self.model
                for channel in Channel:
                    left = await self.ctx.redis.slot_left(self.slots, channel)
                    for sid, found in left.items():
                        if found is not None:
                            assert found == max(0, m.left(sid, channel)), (channel, sid)
                for row in rows:
                    sid = row["id"]
                    assert row["booked"] == row["active"] == m.booked.get(sid, 0)
                    assert row["booked_phone"] == row["by_phone"] == m.booked_phone.get(sid, 0)
                    assert row["booked"] <= row["capacity"]
                    # Promise "the phone keeps its share": the web never occupies more
                    # than the places the phone does not keep.
                    kept = row["capacity"] * PHONE_SHARE_PCT // 100
                    assert row["booked"] - row["booked_phone"] <= row["capacity"] - kept

            run(check())

    try:
        run_state_machine_as_test(
            BookingMachine,
            settings=settings(
                max_examples=25,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        run(pool.close())
        run(client.aclose())
        asyncio.set_event_loop(None)
        loop.close()
