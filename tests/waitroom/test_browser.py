"""The waiting page in headless Chromium: JS on and off, cookies off, ja/en, small, live region."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest
import uvicorn

from machiai.embedded import free_port
from tests.waitroom.conftest import AppFactory, FakeClock, add_event, line_of

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (apt-get install chromium); "
    "./machiai.sh test installs it where it can",
)
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
MAX_PAGE_BYTES = 15 * 1024


async def test_waiting_page_in_chromium_with_and_without_javascript(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock
) -> None:
    from playwright.async_api import async_playwright

    event_id = await add_event(db, rate=6)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = make_app(poll_min_s=1, booking_url=f"{base}/booking")
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                # -- JavaScript on, Japanese: join with the button, wait, get forwarded.
                js = await browser.new_context(locale="ja-JP")
                page = await js.new_page()
                response = await page.goto(f"{base}/events/{event_id}/wait")
                assert response is not None and response.status == 200
                await page.click("button")  # 列に並ぶ: the first one goes straight through
                await page.wait_for_url("**/booking/enter?pass=*")
                # The next resident waits: the bucket's second is spent.
                page2 = await (await browser.new_context(locale="ja-JP")).new_page()
                await page2.goto(f"{base}/events/{event_id}/wait")
                await page2.click("button")
                await page2.wait_for_url("**/wait?t=*")
                live = page2.locator("#live")
                assert await live.get_attribute("aria-live") == "polite"
                assert "次があなたの番です" in await live.inner_text()
                body = await (await page2.request.get(page2.url)).body()
                assert len(body) < MAX_PAGE_BYTES
                # Its turn comes: the script notices and forwards to booking.
                clock.advance(11)
                await line_of(app).refresh(event_id)
                await page2.wait_for_url("**/booking/enter?pass=*", timeout=15_000)

                # -- JavaScript off, cookies off (ticket in the URL), English.
                nojs = await browser.new_context(java_script_enabled=False)
                page3 = await nojs.new_page()
                await page3.goto(f"{base}/events/{event_id}/wait?lang=en")
                await page3.click("button")
                await page3.wait_for_url("**/wait?t=*lang=en")
                await nojs.clear_cookies()
                text = await page3.locator("#live").inner_text()
                assert "You are next." in text and await page3.get_attribute("html", "lang") == "en"
                waiting_url = page3.url
                clock.advance(11)
                await line_of(app).refresh(event_id)
                # The meta refresh (inside <noscript>) brings the page back, then to booking.
                await page3.wait_for_url("**/booking/enter?pass=*", timeout=20_000)
                assert "t=" in waiting_url
            finally:
                await browser.close()
    finally:
        server.should_exit = True
        await task
