"""The clinic console in headless Chromium with JavaScript off, the main actions by keyboard
(Tab, typing, Enter): sign in, the day's list, mark vaccinated, the print layout, the times,
a capacity below the bookings refused, closing with its confirmation, a weekly plan's
preview, a CSV with bad rows previewed, English. axe-core checks every page (0 serious or
critical, the residents' journey's Checker); screenshots at 412 px and 1280 px go to
reports/screenshots/booking/console-clinic-*.png."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from booking.app import create_app
from booking.http import JST
from booking.services.context import Ctx
from booking.settings import BookingSettings
from tests.booking.factory import PASSWORD, World, make_slot, voucher
from tests.booking.helpers import book, operator, resident
from tests.booking.keyboard import tab_to, type_into
from tests.booking.test_console_clinic import booked, clinic_login, status_of, today
from tests.booking.test_pages_browser import ARGS, CHROMIUM, PHONE, SHOTS, Checker, pytestmark
from tests.servers import serving

__all__ = ["pytestmark"]  # Chromium installed, marked slow: as the residents' journey


async def test_the_clinic_console_in_chromium(
    settings: BookingSettings, db: asyncpg.Pool, world: World, ctx: Ctx
) -> None:
    from playwright.async_api import async_playwright

    login = await clinic_login(db, world)
    day = today()
    first = await booked(ctx, db, world, 1, day, 9)
    await booked(ctx, db, world, 2, day, 10)
    await booked(ctx, db, world, 3, day, 14)
    async with db.acquire() as conn:
        slot = await make_slot(conn, world.clinic_id, world.event_id, 2, days=3)
        await make_slot(conn, world.clinic_id, world.event_id, 6, days=3.1)
    await book(ctx, operator(world.municipality), resident(world.municipality, 4), slot)
    starts = await db.fetchval("SELECT starts_at FROM slots WHERE id = $1::uuid", slot)
    slot_day = starts.astimezone(JST).date().isoformat()

    async with serving(create_app(settings)) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        check = Checker(browser)
        try:
            context = await browser.new_context(
                locale="ja-JP", viewport=PHONE, java_script_enabled=False
            )
            page = await context.new_page()
            # -- sign in by keyboard, straight to the day's list.
            await page.goto(f"{base}/staff/signin?next=/staff/clinic/day")
            await type_into(page, "#login", login)
            await type_into(page, "#password", PASSWORD)
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/clinic/day?*")
            assert "診療所" in await page.locator("h1").inner_text()
            assert voucher(1) not in await page.content()
            await check.look(page, "console-clinic-day")

            # -- mark the first booking vaccinated, by keyboard.
            await tab_to(page, f"#b-{first} button[value=attended]")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**notice=attended*")
            assert "接種済みにしました" in await page.locator("#notice").inner_text()
            assert await status_of(db, first) == "attended"
            assert "接種済み" in await page.locator(f"#b-{first} .status").inner_text()
            await check.look(page, "console-clinic-day-marked")
            # The printout: heading and table, no navigation, forms or notices.
            await page.set_viewport_size({"width": 1280, "height": 900})
            await page.emulate_media(media="print")
            await page.screenshot(path=str(SHOTS / "console-clinic-day-print.png"), full_page=True)
            assert not await page.locator("nav.sections").is_visible()
            assert not await page.locator("td.actions").first.is_visible()
            assert await page.locator("table.clinic-bookings").is_visible()
            await page.emulate_media(media="screen")
            await page.set_viewport_size(PHONE)

            # -- the times of a day; a capacity below the bookings is refused in words.
            await page.goto(f"{base}/staff/clinic/slots?date={slot_day}")
            await check.look(page, "console-clinic-slots")
            await type_into(page, f"#cap-{slot}", "0")
            await page.keyboard.press("Enter")
            await page.wait_for_load_state()
            summary = await page.locator("#error-summary").inner_text()
            assert "すでに 1 人が予約しているため" in summary
            assert await page.get_attribute(f"#cap-{slot}", "aria-invalid") == "true"
            await check.look(page, "console-clinic-capacity-refused")
            assert await db.fetchval("SELECT capacity FROM slots WHERE id = $1::uuid", slot) == 2

            # -- closing asks first.
            await tab_to(page, f"#s-{slot} a.button")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/clinic/slots/close?*")
            await check.look(page, "console-clinic-close-confirm")
            await tab_to(page, "button.danger")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**notice=closed*")
            assert "受付を停止しました" in await page.locator("#notice").inner_text()
            assert await db.fetchval("SELECT closed FROM slots WHERE id = $1::uuid", slot)
            await check.look(page, "console-clinic-slots-closed")
            await page.goto(f"{base}/staff/clinic/slots?date={slot_day}&span=week")
            await check.look(page, "console-clinic-slots-week")

            # -- a weekly plan, checked before publishing.
            await page.goto(f"{base}/staff/clinic/plan")
            await check.look(page, "console-clinic-plan")
            await type_into(page, "#capacity", "4")
            await type_into(page, "#vaccine", "comirnaty")
            await page.locator("form[action$='/plan/preview'] button.primary").press("Enter")
            await page.wait_for_url("**/staff/clinic/plan/preview")
            assert "件の枠を公開する" in await page.content()
            await check.look(page, "console-clinic-plan-preview")

            # -- a CSV with bad rows: every row and column, with the reason; nothing written.
            ahead = (day + timedelta(days=12)).strftime("%Y/%m/%d")
            bad = (
                "event_id,starts_at,duration_min,capacity,vaccine_code,dose_number\n"
                f"{world.event_id},{ahead} 9:00,30,10,comirnaty,1\n"
                f"{world.event_id},{ahead} 9:30,30,ten,comirnaty,1\n"
                f"{world.event_id},2001/1/1 9:00,30,10,comirnaty,1\n"
                f"{world.event_id},{ahead} 10:00,30,10,comirnaty\n"
            )
            await page.goto(f"{base}/staff/clinic/import")
            await check.look(page, "console-clinic-import")
            await tab_to(page, "#csv")
            await page.fill("#csv", bad)
            await tab_to(page, "form[action$='/import/preview'] button")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/clinic/import/preview")
            rows = await page.locator("table.problems tbody tr").count()
            assert rows == 3
            assert "3 件の問題があります" in await page.locator("#error-summary").inner_text()
            await check.look(page, "console-clinic-import-errors")
            published = await db.fetchval(
                "SELECT count(*) FROM slots WHERE clinic_id = $1::uuid", world.clinic_id
            )
            assert published == 5  # the three bookings' slots and the two above

            # -- English keeps the page.
            await page.goto(f"{base}/staff/clinic/day")
            await page.click("header.bar .lang")
            await page.wait_for_url("**lang=en*")
            assert "Bookings on" in await page.locator("h1").inner_text()
            await check.look(page, "console-clinic-day-en")
            await context.close()
        finally:
            await browser.close()
    assert {
        "console-clinic-day",
        "console-clinic-day-marked",
        "console-clinic-slots",
        "console-clinic-capacity-refused",
        "console-clinic-close-confirm",
        "console-clinic-import-errors",
    } <= set(check.seen)
