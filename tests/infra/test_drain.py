"""SIGTERM drains: booking started exactly as the container starts it (infra/entrypoint.sh,
real uvicorn, a subprocess), a registry upload in flight when SIGTERM arrives (half its
body sent) completes with 200 and its rows committed; no new connection is served (one
process refuses them; with several workers uvicorn's parent keeps the socket, so they wait
unanswered and are reset at exit); every process shuts down cleanly within the Kubernetes
grace period."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import asyncpg
import psutil
import pytest

from booking.settings import BookingSettings
from machiai.embedded import free_port
from tests.booking.client import staff_token
from tests.booking.factory import make_staff, make_world
from tests.infra import deploy_files as files

UPLOAD_ROWS = 300
START_TIMEOUT_S = 90.0


def grace_period_s(command: str) -> int:
    (deployment,) = [
        d
        for d in files.k8s_documents()
        if d["kind"] == "Deployment" and d["metadata"]["name"] == command
    ]
    return int(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


@contextlib.contextmanager
def entrypoint(command: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``sh infra/entrypoint.sh COMMAND`` in a session of its own (killed whole if the test
    fails half-way), with the venv's uvicorn first on PATH as the image has it."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["sh", str(files.ENTRYPOINT), command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)


def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError("booking did not become ready:\n" + log.read_text(errors="replace"))


async def connection_refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_lets_the_request_in_flight_finish(
    workers: int, env_vars: dict[str, str], db: asyncpg.Pool, tmp_path: Path
) -> None:
    async with db.acquire() as conn:
        world = await make_world(conn)
        staff_id, _ = await make_staff(conn, world.municipality, "admin")
    settings = BookingSettings.from_env(env_vars)
    (auth,) = staff_token(settings, staff_id, world.municipality, "admin", None).values()
    before = await db.fetchval(
        "SELECT count(*) FROM registry WHERE municipality_code = $1", world.municipality
    )
    body = (
        "voucher_number,birth_date,municipality_code,groups\n"
        + "".join(
            f"{3_000_000_000 + n},{date(1940, 1, 1 + n % 28)},{world.municipality},65+\n"
            for n in range(UPLOAD_ROWS)
        )
    ).encode()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(env_vars)
    env.update(
        BOOKING_PORT=str(port),
        WORKERS=str(workers),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    log = tmp_path / "booking.log"
    with entrypoint("booking", env, log) as process:
        await asyncio.to_thread(wait_ready, process, port, log)
        # The shell execs uvicorn: SIGTERM reaches the server, not a shell that ignores it.
        assert "uvicorn" in " ".join(psutil.Process(process.pid).cmdline())

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                "POST /api/registry/import HTTP/1.1\r\nHost: booking\r\n"
                f"Authorization: {auth}\r\nContent-Type: text/csv\r\n"
                f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        # 100 Continue comes when the app first reads the body: the request is in flight.
        assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert await reader.readline() == b"\r\n"
        half = len(body) // 2
        writer.write(body[:half])
        await writer.drain()

        terminated = time.monotonic()
        process.send_signal(signal.SIGTERM)
        deadline = terminated + grace_period_s("booking")
        # Every uvicorn process has begun its graceful shutdown.
        while log.read_text(errors="replace").count("Shutting down") < workers:
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            await asyncio.sleep(0.05)
        if workers == 1:
            while not await connection_refused(port):
                assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
                await asyncio.sleep(0.05)
            latecomer = None
        else:
            # uvicorn's parent process keeps the listening socket open until its workers
            # have exited: the kernel still completes new connections, which nobody serves
            # and which are reset when the parent exits (infra/README.md, Draining).
            latecomer = await asyncio.open_connection("127.0.0.1", port)
            latecomer[1].write(b"GET /health HTTP/1.1\r\nHost: booking\r\n\r\n")
            await latecomer[1].drain()

        writer.write(body[half:])
        await writer.drain()
        status, headers, answer = await read_response(reader)
        writer.close()
        assert status == 200, log.read_text(errors="replace")
        assert headers["connection"] == "close"  # draining: no keep-alive
        result = json.loads(answer)
        assert (result["rows"], result["added"], result["dry_run"]) == (
            UPLOAD_ROWS,
            UPLOAD_ROWS,
            False,
        )

        code = await asyncio.to_thread(process.wait, max(0.0, deadline - time.monotonic()))
        printed = log.read_text(errors="replace")
        # A clean drain: every process ran its lifespan shutdown, nothing was cancelled.
        # uvicorn re-raises SIGTERM in a single server once it has shut down (status -15,
        # 143 to a shell); the parent of several workers returns 0.
        assert code == (-signal.SIGTERM if workers == 1 else 0), printed
        assert printed.count("Application shutdown complete.") == workers, printed
        assert "timeout graceful shutdown exceeded" not in printed
        if latecomer is not None:
            with contextlib.suppress(ConnectionResetError):
                assert await latecomer[0].read() == b""  # never an answer
            latecomer[1].close()
    after = await db.fetchval(
        "SELECT count(*) FROM registry WHERE municipality_code = $1", world.municipality
    )
    assert after == before + UPLOAD_ROWS
