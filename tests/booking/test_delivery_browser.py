"""The administrators' messages page in Chromium: channels with a refusal, a dead message
retried with the keyboard, English; axe-core on every state, screenshots
console-admin-delivery-*.png."""

from __future__ import annotations

import asyncpg

from booking.app import create_app
from booking.delivery.worker import Worker
from booking.settings import BookingSettings
from tests.booking.delivery_kit import Clock, Receiver, add_reminders, states, worker_settings
from tests.booking.factory import PASSWORD, World, make_staff
from tests.booking.test_pages_browser import ARGS, CHROMIUM, PHONE, Checker, pytestmark
from tests.servers import serving

__all__ = ["pytestmark"]


async def test_the_messages_page_in_chromium(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    from playwright.async_api import async_playwright

    async with db.acquire() as conn:
        _, admin = await make_staff(conn, world.municipality, "admin")
    receiver = Receiver(script=["503", "ok"])
    clock = Clock()
    async with (
        receiver.serving() as hook,
        serving(create_app(settings)) as base,
        async_playwright() as pw,
    ):
        await db.execute(
            "INSERT INTO delivery_channels (municipality_code, channel, enabled, webhook_url) "
            "VALUES ($1, 'webhook', true, $2)",
            world.municipality,
            hook,
        )
        await add_reminders(db, world.municipality, 2)
        worker = Worker(db, worker_settings(max_attempts=1), clock=clock)
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        check = Checker(browser)
        try:
            assert (await worker.run_once()).dead == 2
            context = await browser.new_context(locale="ja-JP", viewport=PHONE)
            page = await context.new_page()
            await page.goto(f"{base}/staff/admin/delivery")
            await page.wait_for_url("**/staff/signin?*")
            await page.fill("#login", admin)
            await page.fill("#password", PASSWORD)
            await page.press("#password", "Enter")
            await page.wait_for_url("**/staff/admin/delivery?lang=ja")
            assert await page.locator("table.deliveries tbody tr").count() == 2
            await check.look(page, "console-admin-delivery")

            # A webhook without its address: the summary names the field.
            await page.fill("#webhook_url", "")
            await page.click("form[action='/staff/admin/delivery/channels'] button.primary")
            assert await page.locator(".error-summary a[href='#webhook_url']").count() == 1
            await check.look(page, "console-admin-delivery-error")
            await page.fill("#webhook_url", hook)
            await page.check("#email")
            await page.click("form[action='/staff/admin/delivery/channels'] button.primary")
            await page.wait_for_url("**done=channels*")

            # Send a given-up message again with the keyboard alone.
            button = page.locator("table.deliveries button.primary").first
            await button.focus()
            await page.keyboard.press("Enter")
            await page.wait_for_url("**done=retried*")
            assert await page.locator(".notice-success").count() == 1
            assert await page.locator("table.deliveries tbody tr").count() == 1
            await check.look(page, "console-admin-delivery-retried")
            await page.click("a[hreflang=en]")
            assert await page.locator("h1").inner_text() == "Messages to residents"
            await check.look(page, "console-admin-delivery-en")
            clock.advance(60)  # the retry is due from Postgres's now(), past the start
            assert (await worker.run_once()).sent == 1
            assert await states(db) == {"sent": 1, "dead": 1}
        finally:
            await browser.close()
            await worker.aclose()
