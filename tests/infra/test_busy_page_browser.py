"""The proxy's busy page as a resident sees it while the services are down: through the
real nginx, in Chromium without JavaScript, axe-core (0 serious or critical), screenshots
at 412 px and 1280 px in reports/screenshots/infra/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.infra.nginx_kit import NGINX, NO_NGINX, running_nginx, write_config
from tests.servers import serving
from tests.waitroom.test_browser import ARGS, CHROMIUM, axe_source

SHOTS = Path(__file__).resolve().parents[2] / "reports" / "screenshots" / "infra"
SIZES: dict[str, Any] = {
    "412": {"width": 412, "height": 915},
    "1280": {"width": 1280, "height": 900},
}

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Debian's chromium is not installed; ./machiai.sh test installs it where it can",
    ),
    pytest.mark.skipif(NGINX is None, reason=NO_NGINX),
]


async def test_the_busy_page_reads_well_without_javascript(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    proxy = write_config(tmp_path)
    with running_nginx(proxy):
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                context = await browser.new_context(java_script_enabled=False, locale="ja-JP")
                page = await context.new_page()
                response = await page.goto(f"{proxy.waitroom}/events/ev-1/wait?t=ticket")
                assert response is not None and response.status == 503
                assert await page.get_attribute("html", "lang") == "ja"
                assert await page.get_attribute("section", "lang") == "en"
                heading = await page.locator("h1").inner_text()
                assert heading.replace("\u200b", "") == "ただいま混み合っています"
                assert await page.locator('[role="status"]').count() == 1
                # The "refresh now" button: a real target, 44 px at least.
                box = await page.locator("a.btn").bounding_box()
                assert box is not None and box["height"] >= 44
                # axe needs a script: a twin page with JavaScript, same address, same answer.
                twin_context = await browser.new_context(locale="ja-JP")
                twin = await twin_context.new_page()
                await twin.goto(page.url)
                await twin.add_script_tag(content=axe_source())
                found = await twin.evaluate(
                    "async () => (await axe.run(document, {resultTypes: ['violations']}))"
                    ".violations.map(v => ({id: v.id, impact: v.impact}))"
                )
                await twin_context.close()
                assert [v for v in found if v["impact"] in ("serious", "critical")] == [], found
                SHOTS.mkdir(parents=True, exist_ok=True)
                for label, size in SIZES.items():
                    await page.set_viewport_size(size)
                    await page.screenshot(path=str(SHOTS / f"busy-{label}.png"), full_page=True)
            finally:
                await browser.close()


async def test_with_javascript_it_moves_on_only_once_the_service_answers(tmp_path: Path) -> None:
    """The page stays put (no reload under a screen reader) while the service is down, and
    goes to the address asked for once it answers. The browser's clock is driven by hand."""
    from playwright.async_api import async_playwright

    async def wait_page(request: Request) -> Response:
        return PlainTextResponse("the waiting page")

    proxy = write_config(tmp_path)
    target = f"{proxy.waitroom}/events/ev-1/wait?t=ticket"
    with running_nginx(proxy):
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await (await browser.new_context(locale="ja-JP")).new_page()
                await page.clock.install()
                response = await page.goto(target)
                assert response is not None and response.status == 503
                # Down: the background question is asked and answered 503; the page stays.
                async with page.expect_response(lambda r: r.request.method == "HEAD") as asked:
                    await page.clock.run_for(30_000)
                assert (await asked.value).status == 503
                assert "このページを" in await page.locator("p.big").inner_text()
                # Up: the next question gets 200 and the page goes to the address asked for.
                app = Starlette(routes=[Route("/events/ev-1/wait", wait_page)])
                async with serving(app, port=proxy.upstream_ports[0]):
                    async with page.expect_navigation():
                        await page.clock.run_for(30_000)
                    assert page.url == target
                    assert await page.locator("body").inner_text() == "the waiting page"
            finally:
                await browser.close()
