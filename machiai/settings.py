"""Settings of the ``machiai`` runner (supervisor and CLI), read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from machiai.config import POSTGRES_SCHEMES, REDIS_SCHEMES, Env, Mode, SettingsError


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    mode: Mode
    data_dir: Path
    host: str
    waitroom_port: int
    booking_port: int
    # None means: start an embedded server for this run.
    redis_url: str | None
    database_url: str | None
    # uvicorn worker processes per service (MACHIAI_WORKERS, or `machiai run --workers`).
    workers: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RunnerSettings:
        env = Env(os.environ if environ is None else environ)
        mode = env.mode()
        redis_url = env.url("REDIS_URL", REDIS_SCHEMES)
        database_url = env.url("DATABASE_URL", POSTGRES_SCHEMES)
        if mode is Mode.PRODUCTION and (redis_url is None or database_url is None):
            missing = "REDIS_URL" if redis_url is None else "DATABASE_URL"
            raise SettingsError(
                f"{missing} is required when MACHIAI_ENV=production "
                "(embedded servers are for one-machine development and trials)"
            )
        waitroom_port = env.integer("WAITROOM_PORT", 8000, minimum=1, maximum=65535)
        booking_port = env.integer("BOOKING_PORT", 8001, minimum=1, maximum=65535)
        if waitroom_port == booking_port:
            raise SettingsError("WAITROOM_PORT and BOOKING_PORT must differ")
        return cls(
            mode=mode,
            data_dir=env.data_dir(),
            host=env.text("MACHIAI_HOST", "127.0.0.1"),
            waitroom_port=waitroom_port,
            booking_port=booking_port,
            redis_url=redis_url,
            database_url=database_url,
            workers=env.integer("MACHIAI_WORKERS", 1, minimum=1, maximum=64),
        )

    @property
    def waitroom_url(self) -> str:
        return f"http://{self.host}:{self.waitroom_port}"

    @property
    def booking_url(self) -> str:
        return f"http://{self.host}:{self.booking_port}"
