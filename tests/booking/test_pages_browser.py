"""The resident journey in headless Chromium (Debian's package, driven by playwright):
Japanese with JavaScript, without JavaScript, by keyboard only, in English, for a family
member, and my bookings (change, cancel). axe-core checks every page (0 serious or
critical violations); screenshots at 412 px and 1280 px go to reports/screenshots/booking/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from booking.app import create_app
from booking.settings import BookingSettings
from tests.booking.client import mint_pass
from tests.booking.factory import World, make_slot, voucher
from tests.booking.helpers import pg_slot
from tests.booking.keyboard import focus_lands
from tests.servers import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Debian's chromium is not installed (apt-get install chromium); "
        "./machiai.sh test installs it where it can",
    ),
    pytest.mark.slow,
]
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SHOTS = Path(__file__).resolve().parents[2] / "reports" / "screenshots" / "booking"
if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

PHONE: ViewportSize = {"width": 412, "height": 915}
DESK: ViewportSize = {"width": 1280, "height": 900}


def axe_source() -> str:
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text("utf-8")


class Checker:
    """Looks at every page it is shown: axe-core, screenshots at two widths, size."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.axe = axe_source()
        self.seen: list[str] = []

    async def look(self, page: Any, name: str) -> None:
        # The pages forbid inline scripts (CSP): axe runs in a twin context that bypasses
        # it, on the same URL, so the check sees exactly what the resident got.
        context = await self.browser.new_context(bypass_csp=True, locale="ja-JP")
        twin = await context.new_page()
        try:
            await twin.set_content(await page.content(), wait_until="domcontentloaded")
            await twin.add_script_tag(content=self.axe)
            result = await twin.evaluate(
                "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))"
            )
        finally:
            await context.close()
        bad = [v for v in result if v["impact"] in ("serious", "critical")]
        assert bad == [], (name, bad)
        SHOTS.mkdir(parents=True, exist_ok=True)
        for label, size in (("412", PHONE), ("1280", DESK)):
            await page.set_viewport_size(size)
            await page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
        await page.set_viewport_size(PHONE)
        self.seen.append(name)


async def sign_in(page: Any, voucher_number: str, year: str = "1950") -> None:
    await page.fill("#voucher", voucher_number)
    await page.fill("#year", year)
    await page.fill("#month", "4")
    await page.fill("#day", "1")
    await page.click("button.primary")


async def test_the_resident_journey_in_chromium(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    from playwright.async_api import async_playwright

    async with db.acquire() as conn:
        slots = [
            await make_slot(conn, world.clinic_id, world.event_id, 4, days=d) for d in (2, 3, 4)
        ]
    async with serving(create_app(settings)) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        check = Checker(browser)
        try:
            # -- JavaScript on, Japanese, a phone.
            js = await browser.new_context(locale="ja-JP", viewport=PHONE)
            page = await js.new_page()
            await page.goto(f"{base}/?lang=ja")
            await check.look(page, "home")
            await page.goto(f"{base}/enter?pass={mint_pass(settings, world.event_id)}")
            await check.look(page, "signin")
            # A wrong voucher format: the summary takes the focus and names the field.
            await page.fill("#voucher", "12")
            await page.click("button.primary")
            await focus_lands(page, "error-summary")
            await check.look(page, "signin-error")
            await page.fill("#year", "1950")
            assert "昭和25" in await page.locator("#era").inner_text()
            await sign_in(page, voucher(11))
            await page.wait_for_url("**/book/slots?*")
            assert await page.locator("form[action='/book/hold'] button").count() == 3
            await check.look(page, "slots")
            await page.locator("form[action='/book/hold'] button").first.click()
            await page.wait_for_url("**/book/review?*")
            assert re.search(r"\d+ 分", await page.locator("#countdown").inner_text())
            await check.look(page, "review")
            await page.click("form[action='/book/confirm'] button")
            await page.wait_for_url("**/book/done?*")
            assert await page.locator(".panel-success .code").inner_text()
            await check.look(page, "done")

            # -- a family member, from the confirmation page.
            await page.click("text=ご家族の予約をする")
            await page.wait_for_url("**/book/household?*")
            await check.look(page, "household")
            await sign_in(page, voucher(12))
            await page.wait_for_url("**/book/slots?*who=*")
            await page.locator("form[action='/book/hold'] button").first.click()
            await page.click("form[action='/book/confirm'] button")
            await page.wait_for_url("**/book/done?*")

            # -- my bookings: change the first, then cancel it.
            await page.click("nav.steps >> text=予約の確認")
            await page.wait_for_url("**/book/mine?*")
            await check.look(page, "mine")
            await page.locator("text=日時を変更する").first.click()
            await page.wait_for_url("**/book/slots?*replaces=*")
            await page.locator("form[action='/book/hold'] button").last.click()
            assert (
                "この日時に変更する"
                in await page.locator("form[action='/book/confirm'] button").inner_text()
            )
            await page.click("form[action='/book/confirm'] button")
            await page.wait_for_url("**/book/done?*changed=1*")
            await page.click("nav.steps >> text=予約の確認")
            await page.locator("text=キャンセルする").first.click()
            await page.wait_for_url("**/book/cancel?*")
            await check.look(page, "cancel")
            await page.click("button.danger")
            await page.wait_for_url("**/book/mine?*notice=cancelled*")
            assert "キャンセルしました" in await page.locator(".notice-success").inner_text()
            await js.close()
            booked = [(await pg_slot(db, s))[1] for s in slots]
            assert sum(booked) == 1  # the member's; the resident's moved, then cancelled

            # -- JavaScript off, English (the switch keeps the resident where they are).
            nojs = await browser.new_context(
                java_script_enabled=False, locale="ja-JP", viewport=PHONE
            )
            page = await nojs.new_page()
            await page.goto(f"{base}/enter?pass={mint_pass(settings, world.event_id)}")
            assert await page.get_attribute("html", "lang") == "ja"
            await page.click("header.site .lang")
            await page.wait_for_url("**lang=en*")
            assert await page.get_attribute("html", "lang") == "en"
            assert "pass=" in page.url and "lang=en" in page.url
            await sign_in(page, voucher(13))
            await page.wait_for_url("**/book/slots?*")
            assert "places left" in await page.content() or "place left" in await page.content()
            await page.locator("form[action='/book/hold'] button").first.click()
            await page.wait_for_url("**/book/review?*")
            assert "Kept for you until" in await page.locator("#countdown").inner_text()
            await page.click("form[action='/book/extend'] button")
            await page.wait_for_url("**/book/review?*x=1*")
            await page.click("form[action='/book/confirm'] button")
            await page.wait_for_url("**/book/done?*")
            assert "Your booking is confirmed" in await page.content()
            await nojs.close()

            # -- keyboard only.
            keys = await browser.new_context(locale="ja-JP", viewport=PHONE)
            page = await keys.new_page()
            await page.goto(f"{base}/enter?pass={mint_pass(settings, world.event_id)}")
            await tab_to(page, "voucher")
            await page.keyboard.type(voucher(14))
            for field, value in (("year", "1950"), ("month", "4"), ("day", "1")):
                await tab_to(page, field)
                await page.keyboard.type(value)
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/book/slots?*")
            await tab_to(page, None, selector="form[action='/book/hold'] button")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/book/review?*")
            await tab_to(page, None, selector="form[action='/book/confirm'] button")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/book/done?*")
            await keys.close()
        finally:
            await browser.close()
    assert {"home", "signin", "slots", "review", "done", "mine", "cancel"} <= set(check.seen)


async def tab_to(page: Any, element_id: str | None, *, selector: str = "") -> None:
    """Press Tab until the element has the focus (at most 40 times)."""
    for _ in range(40):
        await page.keyboard.press("Tab")
        if element_id is not None:
            if await page.evaluate("document.activeElement.id") == element_id:
                return
        elif await page.evaluate(
            "s => document.activeElement === document.querySelector(s)", selector
        ):
            return
    raise AssertionError(f"Tab never reached {element_id or selector}")
