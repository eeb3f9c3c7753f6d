"""Issue 15's address for messages in headless Chromium: typed by keyboard on the review
page (refused, kept, corrected), shown on the done page and added there without
JavaScript; axe-core on each state (0 serious or critical), screenshots at 412 and 1280 px
in reports/screenshots/booking/."""

from __future__ import annotations

import asyncpg

from booking.app import create_app
from booking.settings import BookingSettings
from tests.booking.client import mint_pass
from tests.booking.factory import World, make_slot, voucher
from tests.booking.test_pages_browser import (
    ARGS,
    CHROMIUM,
    PHONE,
    Checker,
    pytestmark,
    sign_in,
    tab_to,
)
from tests.servers import serving

__all__ = ["pytestmark"]  # skipped (and marked slow) with the other browser tests


async def test_the_address_on_the_review_and_done_pages(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    from playwright.async_api import async_playwright

    async with db.acquire() as conn:
        for d in (2, 3):
            await make_slot(conn, world.clinic_id, world.event_id, 4, days=d)
    async with serving(create_app(settings)) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        check = Checker(browser)
        try:
            # -- keyboard only, JavaScript on: a wrong address, kept, corrected.
            keys = await browser.new_context(locale="ja-JP", viewport=PHONE)
            page = await keys.new_page()
            await page.goto(f"{base}/enter?pass={mint_pass(settings, world.event_id)}")
            await sign_in(page, voucher(21))
            await page.wait_for_url("**/book/slots?*")
            await page.locator("form[action='/book/hold'] button").first.click()
            await page.wait_for_url("**/book/review?*")
            assert await page.locator("#email").get_attribute("autocomplete") == "email"
            await check.look(page, "review-email")
            await tab_to(page, "email")
            await page.keyboard.type("taro@example")
            # The refusal is the same page again: wait for that navigation itself (the
            # page's load state is already "load" before it starts).
            async with page.expect_navigation():
                await page.keyboard.press("Enter")
            assert await page.locator("#email").input_value() == "taro@example"
            assert await page.locator("#email").get_attribute("aria-invalid") == "true"
            assert "メールアドレスを入力するか" in await page.locator(".error-summary").inner_text()
            await check.look(page, "review-email-error")
            await page.focus("#email")
            await page.keyboard.press("End")
            await page.keyboard.type(".jp")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/book/done?*")
            assert "taro@example.jp に送ります" in await page.locator("#contact").inner_text()
            await check.look(page, "done-email")
            await keys.close()

            # -- no address at first, added on the done page without JavaScript, English.
            nojs = await browser.new_context(
                java_script_enabled=False, locale="ja-JP", viewport=PHONE
            )
            page = await nojs.new_page()
            await page.goto(f"{base}/enter?pass={mint_pass(settings, world.event_id)}&lang=en")
            await sign_in(page, voucher(22))
            await page.wait_for_url("**/book/slots?*")
            await page.locator("form[action='/book/hold'] button").first.click()
            await page.wait_for_url("**/book/review?*")
            await page.click("form[action='/book/confirm'] button")
            await page.wait_for_url("**/book/done?*")
            assert "No e-mail address was given" in await page.locator("#contact").inner_text()
            await check.look(page, "done-no-email")
            await page.click("form[action='/book/contact'] button")
            assert await page.locator("#email").get_attribute("aria-invalid") == "true"
            await check.look(page, "done-email-error")
            await page.fill("#email", "hanako@example.jp")
            await page.click("form[action='/book/contact'] button")
            await page.wait_for_url("**/book/done?*saved=1*")
            assert "The address was saved." in await page.content()
            await check.look(page, "done-email-saved")
            await nojs.close()
        finally:
            await browser.close()
