"""The Compose front proxy's nginx configuration, run on this machine: infra/proxy/ as it
is, only its listen and upstream addresses moved to loopback and nginx's own paths to a
temporary directory."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from machiai.embedded import free_port
from tests.infra import deploy_files as files

NGINX = files.nginx_binary()
NO_NGINX = "Debian's nginx is not installed (./machiai.sh test unpacks it into the venv)"


def _replace_once(text: str, old: str, new: str) -> str:
    # Exactly once: a proxy file that drifted from what this test moves fails loudly here.
    assert text.count(old) == 1, f"expected one {old!r} in the proxy config"
    return text.replace(old, new)


@dataclass(frozen=True, slots=True)
class Proxy:
    conf: Path
    waitroom: str  # the proxy's base URLs, as residents reach them
    booking: str
    upstream_ports: tuple[int, int]  # where it expects the waitroom and booking


def write_config(tmp: Path) -> Proxy:
    """infra/proxy/ for this machine: listen and upstream addresses on loopback, the busy
    page from infra/static, nginx's own paths under ``tmp``; every other line as it is."""
    listen = (free_port(), free_port())
    upstream = (free_port(), free_port())
    common = _replace_once(
        files.PROXY_COMMON.read_text("utf-8"),
        "/usr/share/nginx/machiai/busy.html",
        str(files.BUSY_PAGE),
    )
    (tmp / "common.conf").write_text(common)
    site = files.PROXY_SITE.read_text("utf-8")
    site = _replace_once(site, "listen 8000;", f"listen 127.0.0.1:{listen[0]};")
    site = _replace_once(site, "listen 8001;", f"listen 127.0.0.1:{listen[1]};")
    site = _replace_once(site, "http://waitroom:8000;", f"http://127.0.0.1:{upstream[0]};")
    site = _replace_once(site, "http://booking:8001;", f"http://127.0.0.1:{upstream[1]};")
    site = site.replace("/etc/nginx/machiai/common.conf", str(tmp / "common.conf"))
    (tmp / "site.conf").write_text(site)
    temp = " ".join(
        f"{kind}_temp_path {tmp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # What the nginx image's own nginx.conf provides around conf.d/*.conf.
    (tmp / "nginx.conf").write_text(
        f"worker_processes 1;\npid {tmp / 'nginx.pid'};\n"
        "events { worker_connections 64; }\n"
        f"http {{ access_log off; {temp} include {tmp / 'site.conf'}; }}\n"
    )
    return Proxy(
        tmp / "nginx.conf",
        f"http://127.0.0.1:{listen[0]}",
        f"http://127.0.0.1:{listen[1]}",
        upstream,
    )


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    assert NGINX is not None
    return subprocess.run(
        [str(NGINX), "-t", "-e", "stderr", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )


@contextlib.contextmanager
def running_nginx(proxy: Proxy) -> Iterator[None]:
    assert NGINX is not None
    process = subprocess.Popen(
        [str(NGINX), "-e", "stderr", "-p", str(proxy.conf.parent), "-c", str(proxy.conf)]
        + ["-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        port = int(proxy.booking.rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "nginx did not start listening"
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.communicate(timeout=30)
