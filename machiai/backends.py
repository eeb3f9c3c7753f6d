"""Finding Redis and Postgres for a command: given URLs, a running `machiai run`, or embedded.

A data dir has one owner at a time: ``machiai run`` records its URLs in
``<data dir>/run.json`` so that ``migrate`` or ``seed-demo`` run beside it
reuse its servers instead of fighting over the same files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from machiai.embedded import EmbeddedPostgres, EmbeddedRedis
from machiai.settings import RunnerSettings

RUN_FILE = "run.json"


class DataDirBusy(RuntimeError):
    """Another `machiai run` owns this data dir."""


@dataclass(frozen=True, slots=True)
class Backends:
    redis_url: str
    database_url: str
    embedded: bool


def running_owner(data_dir: Path) -> dict[str, str | int] | None:
    """The run.json of a live `machiai run` on this data dir, or None."""
    path = data_dir / RUN_FILE
    try:
        info: dict[str, str | int] = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or not psutil.pid_exists(pid) or pid == os.getpid():
        return None
    return info


def write_run_file(data_dir: Path, backends: Backends, settings: RunnerSettings) -> None:
    info = {
        "pid": os.getpid(),
        "redis_url": backends.redis_url,
        "database_url": backends.database_url,
        "waitroom_url": settings.waitroom_url,
        "booking_url": settings.booking_url,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(info), "utf-8")
    tmp.replace(data_dir / RUN_FILE)


def remove_run_file(data_dir: Path) -> None:
    (data_dir / RUN_FILE).unlink(missing_ok=True)


@contextmanager
def open_backends(settings: RunnerSettings, *, owner: bool = False) -> Iterator[Backends]:
    """Yield URLs for Redis and Postgres, starting embedded servers only where none is given.

    ``owner`` is set by `machiai run`: it refuses to share a data dir with another run.
    """
    if settings.redis_url and settings.database_url:
        yield Backends(settings.redis_url, settings.database_url, embedded=False)
        return
    running = running_owner(settings.data_dir)
    if running is not None:
        if owner:
            raise DataDirBusy(
                f"machiai is already running with data dir {settings.data_dir} "
                f"(pid {running['pid']}); stop it first or set MACHIAI_DATA_DIR"
            )
        yield Backends(
            settings.redis_url or str(running["redis_url"]),
            settings.database_url or str(running["database_url"]),
            embedded=True,
        )
        return
    with ExitStack() as stack:
        redis_url = settings.redis_url
        if redis_url is None:
            redis = EmbeddedRedis(settings.data_dir / "redis").start()
            stack.callback(redis.stop)
            redis_url = redis.url
        database_url = settings.database_url
        if database_url is None:
            postgres = EmbeddedPostgres(settings.data_dir / "postgres").start()
            stack.callback(postgres.stop)
            database_url = postgres.url
        yield Backends(redis_url, database_url, embedded=True)
