"""Small helpers shared by booking tests."""

from __future__ import annotations

from typing import Any

import asyncpg
from redis.asyncio.cluster import RedisCluster

from booking.domain import Actor, Channel, Resident
from booking.services.confirm import confirm_booking
from booking.services.context import Ctx
from booking.services.hold import hold_slot
from booking.store import keys
from machiai.redis_cluster import ClusterMux, RedisClient, wire_like
from machiai.redis_mux import Arg, RedisMux
from tests.booking.factory import voucher


def web(municipality: str, event_id: str | None = None) -> Actor:
    return Actor(kind="resident", actor_id="web", municipality=municipality, event_id=event_id)


def operator(municipality: str, staff_id: str | None = None) -> Actor:
    return Actor(
        kind="staff",
        actor_id=staff_id or "operator",
        municipality=municipality,
        channel=Channel.OPERATOR,
        staff_id=staff_id,
    )


def resident(municipality: str, n: int) -> Resident:
    return Resident(municipality, voucher(n))


async def book(ctx: Ctx, actor: Actor, who: Resident, slot_id: str) -> dict[str, Any]:
    held = await hold_slot(ctx, actor, who, slot_id)
    return await confirm_booking(ctx, actor, who, held.hold_id)


async def pg_slot(db: asyncpg.Pool, slot_id: str) -> tuple[int, int]:
    row = await db.fetchrow("SELECT capacity, booked FROM slots WHERE id = $1::uuid", slot_id)
    assert row is not None
    return int(row["capacity"]), int(row["booked"])


async def pg_active_bookings(db: asyncpg.Pool, slot_id: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM bookings WHERE slot_id = $1::uuid "
            "AND status IN ('confirmed', 'attended')",
            slot_id,
        )
    )


async def redis_booked(ctx: Ctx, slot_id: str) -> int:
    raw = await ctx.redis.client.hget(keys.slot_inventory(ctx.redis.prefix, slot_id), "booked")
    return -1 if raw is None else int(raw)


class CountingMux(RedisMux):
    """Counts round trips (a pipeline is one)."""

    trips = 0

    async def execute(self, *args: Arg) -> Any:
        self.trips += 1
        return await super().execute(*args)

    async def pipeline(self, commands: Any, *, raise_on_error: bool = True) -> list[Any]:
        self.trips += 1
        return await super().pipeline(commands, raise_on_error=raise_on_error)


class CountingClusterMux(ClusterMux):
    """Counts calls as :class:`CountingMux` does (a pipeline is one, though a cluster sends
    its parts to their nodes at once)."""

    trips = 0

    async def execute(self, *args: Arg) -> Any:
        self.trips += 1
        return await super().execute(*args)

    async def pipeline(self, commands: Any, *, raise_on_error: bool = True) -> list[Any]:
        self.trips += 1
        return await super().pipeline(commands, raise_on_error=raise_on_error)


def counting_wire(client: RedisClient) -> CountingMux | CountingClusterMux:
    """A wire to the Redis ``client`` names, one server or a cluster, that counts its calls."""
    if not isinstance(client, RedisCluster):
        return CountingMux.like(client)
    plain = wire_like(client, timeout_s=10.0, connect_timeout_s=5.0)
    assert isinstance(plain, ClusterMux)
    return CountingClusterMux(
        plain.seeds,
        plain.options,
        timeout_s=plain.timeout_s,
        connect_timeout_s=plain.connect_timeout_s,
    )


def master_count(client: RedisClient) -> int:
    """How many servers own keys: each needs its own copy of a script."""
    return len(client.get_primaries()) if isinstance(client, RedisCluster) else 1


async def command_stats(client: RedisClient) -> dict[str, dict[str, int]]:
    """INFO commandstats (counts only), summed over a cluster's masters: a command runs on
    the master of its key, and INFO asks one node unless told otherwise."""
    if not isinstance(client, RedisCluster):
        stats: dict[str, dict[str, Any]] = await client.info("commandstats")
        per_node = [stats]
    else:
        by_node = await client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        per_node = list(by_node.values())
    total: dict[str, dict[str, int]] = {}
    for node_stats in per_node:
        for command, fields in node_stats.items():
            into = total.setdefault(command, {})
            for field, value in fields.items():
                if isinstance(value, int):
                    into[field] = into.get(field, 0) + value
    return total
