"""The administrator's console in Chromium: sign-in, events, the confirmation step, live
figures, the audit log, English; axe-core on every page, screenshots console-admin-*.png.
And another site's page that posts a form to a console action changes nothing."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from booking.app import create_app
from booking.settings import BookingSettings
from tests.booking.factory import PASSWORD, World, make_staff
from tests.booking.test_pages_browser import ARGS, CHROMIUM, PHONE, Checker, pytestmark
from tests.servers import serving
from waitroom.app import create_app as waitroom_app
from waitroom.settings import WaitroomSettings

if TYPE_CHECKING:
    from playwright.async_api import FilePayload

__all__ = ["pytestmark"]


def other_site(action: str) -> Starlette:
    """A page of another site whose form posts itself to a console action."""

    async def lure(request: Request) -> HTMLResponse:
        return HTMLResponse(
            '<!doctype html><html lang="en"><title>A prize!</title>'
            f'<form id="f" method="post" action="{action}">'
            '<input type="hidden" name="action" value="close"></form>'
            '<script>document.getElementById("f").submit()</script></html>'
        )

    return Starlette(routes=[Route("/", lure)])


async def test_the_admin_console_in_chromium(
    settings: BookingSettings, env_vars: dict[str, str], db: asyncpg.Pool, world: World
) -> None:
    from playwright.async_api import async_playwright

    async with db.acquire() as conn:
        _, admin = await make_staff(conn, world.municipality, "admin")
    async with (
        serving(waitroom_app(WaitroomSettings.from_env(env_vars))) as waitroom,
        serving(create_app(dataclasses.replace(settings, waitroom_url=waitroom))) as base,
        serving(
            other_site(f"{base}/staff/admin/events/{world.event_id}/state"), host="127.0.0.2"
        ) as elsewhere,
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        check = Checker(browser)
        try:
            context = await browser.new_context(locale="ja-JP", viewport=PHONE)
            page = await context.new_page()
            await page.goto(f"{base}/staff/admin/events")
            await page.wait_for_url("**/staff/signin?*")
            await check.look(page, "console-signin")
            await page.click("button.primary")
            assert await page.locator(".error-summary a").count() == 2
            await check.look(page, "console-signin-error")
            await page.fill("#login", admin)
            await page.fill("#password", PASSWORD)
            await page.press("#password", "Enter")
            # Back where the administrator was going.
            await page.wait_for_url("**/staff/admin/events?lang=ja")
            cookie = [c for c in await context.cookies() if c["name"] == "machiai_staff"]
            assert cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Strict"
            await check.look(page, "console-admin-events")

            await page.click(f"a[href^='/staff/admin/events/{world.event_id}']")
            await check.look(page, "console-admin-event")
            await page.click("a[href*='confirm?action=pause']")
            await check.look(page, "console-admin-confirm-pause")
            await page.click("button.primary")
            await page.wait_for_url("**done=paused*")
            assert await page.locator(".notice-success").count() == 1
            await page.click("a[href*='/live']")
            assert await page.locator("svg.chart").count() == 1
            await check.look(page, "console-admin-live")

            await page.goto(f"{base}/staff/admin/events/new")
            await page.fill("#id", "-bad")
            await page.click("button.primary")
            await check.look(page, "console-admin-new-error")

            await page.goto(f"{base}/staff/admin/staff")
            await page.fill("#login", "uketsuke-2")
            await page.fill("#display_name", "受付 二郎")
            await page.select_option("#role", "operator")
            await page.click("form[action='/staff/admin/staff'] button.primary")
            assert await page.locator(".secret code").count() == 1
            await check.look(page, "console-admin-staff-created")
            await page.click("a[href^='/staff/admin/staff/uketsuke-2']")
            await check.look(page, "console-admin-account")

            await page.goto(f"{base}/staff/admin/registry")
            await check.look(page, "console-admin-registry")
            upload: FilePayload = {
                "name": "名簿.csv",
                "mimeType": "text/csv",
                "buffer": (
                    "voucher_number,birth_date,municipality_code,groups\n"
                    f"1000000001,1950/4/1,{world.municipality},65+\n"
                    f"1000009999,1950/4/1,{world.municipality},65+\n"
                ).encode(),
            }
            await page.set_input_files("#file", files=[upload])
            await page.click("button.primary")
            assert await page.locator("dl.figures").count() == 1
            await check.look(page, "console-admin-registry-preview")

            await page.goto(f"{base}/staff/admin/audit")
            assert "waitroom.event.paused" in await page.content()
            await check.look(page, "console-admin-audit")
            await page.click("a[hreflang=en]")
            assert await page.locator("h1").inner_text() == "Audit log"
            await check.look(page, "console-admin-audit-en")

            # The ledger: reached from the navigation; a range the wrong way round comes
            # back with the problem beside the field (a GET form, no script needed).
            await page.goto(f"{base}/staff/admin/export")
            await check.look(page, "console-admin-export")
            await page.fill("#from", "2031-04-05")
            await page.fill("#to", "2031-04-01")
            await page.click("form[action='/staff/admin/export/ledger.csv'] button.primary")
            assert await page.locator(".error-summary a[href='#to']").count() == 1
            await check.look(page, "console-admin-export-error")

            # Another site's page posts "close" to the console in this signed-in browser:
            # the strict cookie stays home and the form carries no secret; nothing happens.
            await page.goto(f"{elsewhere}/")
            await page.wait_for_url(f"{base}/staff/**")
            assert (
                await db.fetchval("SELECT state::text FROM events WHERE id = $1", world.event_id)
                == "paused"
            )
            # ... and the administrator is still signed in.
            await page.goto(f"{base}/staff")
            assert "/staff/signin" not in page.url
        finally:
            await browser.close()
