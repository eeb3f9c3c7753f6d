"""``machiai deliver``: one worker process until Ctrl-C or SIGTERM, which drain the pass in
flight (its sends and their outcomes) before the process exits."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import asyncpg

from booking.delivery.settings import DeliverySettings
from booking.delivery.worker import Worker
from machiai import logs

logger = logging.getLogger("machiai.delivery")


class SchemaMissing(RuntimeError):
    """The database has no deliveries table: migrations were not applied."""


async def serve(database_url: str, settings: DeliverySettings, stop: asyncio.Event) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    try:
        if await pool.fetchval("SELECT to_regclass('deliveries') IS NULL"):
            raise SchemaMissing("the database has no deliveries table: run `machiai migrate`")
        worker = Worker(pool, settings)
        try:
            logger.info("delivery worker started")
            await worker.run(stop)
        finally:
            await worker.aclose()
    finally:
        await pool.close()


def run_worker(database_url: str, settings: DeliverySettings) -> int:
    """Run a worker in this process until SIGINT/SIGTERM; the exit code."""
    logs.configure("delivery", settings.log_format)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await serve(database_url, settings, stop)
        except SchemaMissing as exc:
            print(f"machiai deliver: {exc}", file=sys.stderr)
            return 1
        logger.info("delivery worker stopped")
        return 0

    return asyncio.run(main())
