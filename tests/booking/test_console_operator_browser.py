"""A whole call in headless Chromium, by keyboard only (Tab, typing, Enter): sign in, find
the caller (a wrong birth date first), hold, check, confirm, change, cancel, a household
member, already_booked in words, the English switch, end the call. axe-core checks every
page (0 serious or critical, via the residents' journey's Checker); screenshots at 412 px
and 1280 px go to reports/screenshots/booking/console-operator-*.png."""

from __future__ import annotations

import re

import asyncpg

from booking.app import create_app
from booking.domain import Resident
from booking.services.context import Ctx
from booking.settings import BookingSettings
from tests.booking.factory import PASSWORD, World, make_slot, make_staff, voucher
from tests.booking.helpers import book, operator, pg_active_bookings
from tests.booking.keyboard import focus_lands, tab_to, type_into
from tests.booking.test_pages_browser import ARGS, CHROMIUM, DESK, Checker, pytestmark
from tests.servers import serving

__all__ = ["pytestmark"]  # Chromium installed, marked slow: as the residents' journey


async def test_a_whole_call_by_keyboard(
    settings: BookingSettings, db: asyncpg.Pool, world: World, ctx: Ctx
) -> None:
    from playwright.async_api import async_playwright

    async with db.acquire() as conn:
        staff_id, login = await make_staff(conn, world.municipality, "operator")
        slots = [
            await make_slot(conn, world.clinic_id, world.event_id, 4, days=d) for d in (2, 3, 4)
        ]
    async with serving(create_app(settings)) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        check = Checker(browser)
        try:
            context = await browser.new_context(locale="ja-JP", viewport=DESK)
            page = await context.new_page()
            await page.goto(f"{base}/staff/signin")
            await type_into(page, "#login", login)
            await type_into(page, "#password", PASSWORD)
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff?*")
            await tab_to(page, "nav.sections a[href^='/staff/operator']")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator?*")
            # The voucher field has the focus on arrival: the operator types at once.
            await focus_lands(page, "voucher")
            await check.look(page, "console-operator-find")

            # A wrong birth date: the summary takes the focus (no script) and says it plainly.
            await page.keyboard.type(voucher(11))
            for field, value in (("#year", "1951"), ("#month", "4"), ("#day", "1")):
                await type_into(page, field, value)
            async with page.expect_navigation():
                await page.keyboard.press("Enter")
            await focus_lands(page, "error-summary")
            assert "台帳と一致しません" in await page.locator("#error-summary").inner_text()
            await check.look(page, "console-operator-find-error")
            await type_into(page, "#year", "昭和25")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/call?*")
            assert "1950年4月1日（昭和25年）" in await page.locator(".caller-bar").inner_text()
            await check.look(page, "console-operator-call")

            # Hold the first time, check it, confirm it (the confirm button has the focus).
            await tab_to(page, "table.times button")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/review?*")
            assert re.search(r"残り約 \d+ 分", await page.locator(".kept").inner_text())
            await focus_lands(page, "予約を確定する")
            await check.look(page, "console-operator-review")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/done?*")
            code = (await page.locator(".code").inner_text()).replace(" ", "")
            assert len(code) == 8
            await check.look(page, "console-operator-done")

            # Change it to another time.
            await tab_to(page, "a.button[href^='/staff/operator/call']")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/call?*")
            await tab_to(page, "table.bookings a[href*='replaces=']")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/call?*replaces=*")
            await check.look(page, "console-operator-change")
            await tab_to(page, "table.times tbody tr:last-child button")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/review?*replaces=*")
            await check.look(page, "console-operator-review-change")
            # The page puts the focus on its confirm button (as the first review above): the
            # test waits for the autofocus to land (see focus_lands), then presses Enter on it.
            await focus_lands(page, "この日時への変更を確定する")
            await page.locator("form[action='/staff/operator/confirm'] button").press("Enter")
            await page.wait_for_url("**/staff/operator/done?*changed=1*")
            assert "予約を変更しました" in await page.locator("h1").inner_text()

            # Cancel it, with the confirmation step.
            await tab_to(page, "a.button[href^='/staff/operator/call']")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/call?*")
            await tab_to(
                page, "table.bookings tr.status-confirmed a[href^='/staff/operator/cancel']"
            )
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/cancel?*")
            await check.look(page, "console-operator-cancel")
            await tab_to(page, "button.danger")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/call?*notice=cancelled*")
            assert "キャンセルしました" in await page.locator(".notice-success").inner_text()
            await check.look(page, "console-operator-call-cancelled")
            assert sum([await pg_active_bookings(db, s) for s in slots]) == 0

            # Someone else of the household, looked up on their own voucher and birth date.
            await tab_to(page, "a[href^='/staff/operator/member']")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/member?*")
            await focus_lands(page, "voucher")
            await check.look(page, "console-operator-member")
            await page.keyboard.type(voucher(12))
            for field, value in (("#year", "1950"), ("#month", "4"), ("#day", "1")):
                await type_into(page, field, value)
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/call?*who=1*")

            # Meanwhile their first dose was booked elsewhere: the page says so in words,
            # with the way to change that booking instead.
            await book(
                ctx, operator(world.municipality, staff_id),
                Resident(world.municipality, voucher(12)), slots[2],
            )  # fmt: skip
            await tab_to(page, "table.times button")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/call?*notice=already_booked*")
            words = await page.locator(".notice").inner_text()
            assert "すでに予約しています" in words and "その予約の日時を変更する" in words
            await check.look(page, "console-operator-already-booked")
            await tab_to(page, ".notice button.primary")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/review?*replaces=*")
            await focus_lands(page, "この日時への変更を確定する")
            await page.locator("form[action='/staff/operator/confirm'] button").press("Enter")
            await page.wait_for_url("**/staff/operator/done?*changed=1*")
            await tab_to(page, "a.button[href^='/staff/operator/call']")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator/call?*")

            # English, on the same page.
            await tab_to(page, "header.bar .lang")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**lang=en*")
            assert await page.get_attribute("html", "lang") == "en"
            assert "Household member" in await page.locator("h1").inner_text()
            await check.look(page, "console-operator-call-en")

            # The call ends: its record goes, the find page is ready for the next caller.
            await tab_to(page, "form[action='/staff/operator/end'] button")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/staff/operator?*notice=call_ended*")
            await check.look(page, "console-operator-ended")
            await context.close()
        finally:
            await browser.close()
    assert [await pg_active_bookings(db, s) for s in slots] == [1, 0, 0]
    assert {
        "console-operator-find",
        "console-operator-call",
        "console-operator-review",
        "console-operator-done",
        "console-operator-cancel",
        "console-operator-already-booked",
    } <= set(check.seen)
