"""The Compose front proxy, run: Debian's nginx with infra/proxy/ as it is, only its
addresses moved to this machine's loopback. While a service does not answer, residents get
the calm page (JSON clients the `busy` error), 503 with Retry-After, whatever the method;
while it answers, everything passes unchanged, the services' own 503s included."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from machiai.errors import Busy, error_body
from tests.infra import deploy_files as files
from tests.infra.nginx_kit import (
    NGINX,
    NO_NGINX,
    Proxy,
    nginx_test,
    running_nginx,
    write_config,
)
from tests.servers import serving

pytestmark = pytest.mark.skipif(NGINX is None, reason=NO_NGINX)


@pytest.fixture
def proxy(tmp_path: Path) -> Proxy:
    return write_config(tmp_path)


def test_nginx_accepts_the_config_and_refuses_a_broken_copy(proxy: Proxy) -> None:
    checked = nginx_test(proxy.conf)
    assert checked.returncode == 0, checked.stderr
    common = proxy.conf.parent / "common.conf"
    common.write_text(common.read_text().replace("proxy_pass $machiai_upstream;", "proxy_pas $x;"))
    assert nginx_test(proxy.conf).returncode != 0


def assert_busy_page(r: httpx.Response) -> None:
    assert r.status_code == 503
    assert r.headers["retry-after"] == "30"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.content == files.BUSY_PAGE.read_bytes()


async def test_services_down_get_the_busy_page_with_503_and_retry_after(proxy: Proxy) -> None:
    with running_nginx(proxy):  # nothing listens on the upstream ports
        async with httpx.AsyncClient(timeout=30) as client:
            for base in (proxy.waitroom, proxy.booking):
                assert_busy_page(await client.get(f"{base}/e/ev-1/t/some-ticket"))
                # A form posted while it is down: the same page, not 405 or nginx's own.
                assert_busy_page(await client.post(f"{base}/book/confirm", data={"a": "b"}))
                api = await client.get(f"{base}/api/events/ev-1/status")
                assert api.status_code == 503 and api.headers["retry-after"] == "30"
                assert api.json() == error_body("busy", Busy.message_ja)
                english = await client.post(
                    f"{base}/api/holds", json={}, headers={"Accept-Language": "en-GB,en;q=0.9"}
                )
                assert english.status_code == 503
                assert english.json() == error_body("busy", Busy.message_en)
            # The page is reachable only as an error page, never by its own address.
            hidden = await client.get(f"{proxy.waitroom}/_proxy/busy.html")
            assert hidden.status_code == 404


def upstream_app(name: str) -> Starlette:
    async def page(request: Request) -> Response:
        return PlainTextResponse(f"{name} {request.method} {request.url.path}")

    async def own_busy(request: Request) -> Response:
        return JSONResponse(
            error_body("busy", "from the service"), status_code=503, headers={"Retry-After": "2"}
        )

    async def client(request: Request) -> Response:
        return JSONResponse(
            {
                "forwarded_for": request.headers.get("x-forwarded-for"),
                "body_bytes": len(await request.body()),
            }
        )

    return Starlette(
        routes=[
            Route("/api/own-busy", own_busy),
            Route("/api/client", client, methods=["GET", "POST"]),
            Route("/{path:path}", page, methods=["GET", "POST"]),
        ]
    )


@contextlib.asynccontextmanager
async def both_upstreams(proxy: Proxy) -> AsyncIterator[None]:
    async with (
        serving(upstream_app("waitroom"), port=proxy.upstream_ports[0]),
        serving(upstream_app("booking"), port=proxy.upstream_ports[1]),
    ):
        yield


async def test_services_up_pass_through_unchanged_and_down_again_is_busy(proxy: Proxy) -> None:
    with running_nginx(proxy):
        async with httpx.AsyncClient(timeout=30) as client:
            async with both_upstreams(proxy):
                for name, base in (("waitroom", proxy.waitroom), ("booking", proxy.booking)):
                    r = await client.post(f"{base}/e/ev-1/join")
                    assert (r.status_code, r.text) == (200, f"{name} POST /e/ev-1/join")
                    # The service's own 503 is the service's answer, not the proxy's page.
                    own = await client.get(f"{base}/api/own-busy")
                    assert own.status_code == 503 and own.headers["retry-after"] == "2"
                    assert own.json() == error_body("busy", "from the service")
                    # The client's address reaches the service as the right-most entry.
                    who = await client.get(
                        f"{base}/api/client", headers={"X-Forwarded-For": "203.0.113.9"}
                    )
                    assert who.json()["forwarded_for"] == "203.0.113.9, 127.0.0.1"
                    # Metrics are not served through the residents' door.
                    assert (await client.get(f"{base}/metrics")).status_code == 404
                # Booking takes a body larger than the waitroom's 1 MiB, streamed.
                big = b"x" * (3 * 1_048_576)

                async def chunks() -> AsyncIterator[bytes]:
                    for start in range(0, len(big), 65_536):
                        yield big[start : start + 65_536]
                        await asyncio.sleep(0)

                upload = await client.post(f"{proxy.booking}/api/client", content=chunks())
                assert upload.status_code == 200 and upload.json()["body_bytes"] == len(big)
                too_big = await client.post(f"{proxy.waitroom}/api/client", content=big)
                assert too_big.status_code == 413
            # The services stopped: the next request gets the page.
            assert_busy_page(await client.get(f"{proxy.waitroom}/e/ev-1"))
