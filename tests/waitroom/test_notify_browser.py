""" "Your turn is near" in headless Chromium: from the waiting page to the form and back,
by keyboard only, without JavaScript, ja and en; axe-core on every state of the form (0
serious or critical) and screenshots at 412 and 1280 px (reports/screenshots/waitroom)."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from tests.servers import serving
from tests.waitroom.conftest import AppFactory, add_event
from tests.waitroom.test_browser import (
    ARGS,
    CHROMIUM,
    DESK_SIZE,
    JSON,
    PHONE_SIZE,
    SHOTS,
    axe_source,
    csp_reports,
    listen,
    pytestmark,
)

__all__ = ["pytestmark"]  # skipped with the other browser tests where Chromium is missing


async def axe_and_shots(page: Any, name: str, replay: Any) -> None:
    """axe-core on the state ``replay`` brings a fresh page to (a twin context that may
    inject axe despite the pages' CSP; a POST's answer cannot be fetched again by URL),
    then screenshots of ``page`` at 412 and 1280 px."""
    twin_context = await page.context.browser.new_context(bypass_csp=True, locale="ja-JP")
    try:
        twin = await twin_context.new_page()
        await replay(twin)
        await twin.add_script_tag(content=axe_source())
        found = await twin.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))"
        )
    finally:
        await twin_context.close()
    assert [v for v in found if v["impact"] in ("serious", "critical")] == [], (name, found)
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("412", PHONE_SIZE), ("1280", DESK_SIZE)):
        await page.set_viewport_size(size)
        await page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    await page.set_viewport_size(PHONE_SIZE)


async def test_the_notify_form_by_keyboard_without_javascript_in_both_languages(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    from playwright.async_api import async_playwright

    event_id = await add_event(db, rate=1, cap=1000)
    console: list[str] = []
    async with serving(make_app()) as base, async_playwright() as pw:
        async with httpx.AsyncClient(base_url=base) as api:
            await api.post(f"/events/{event_id}/join", headers=JSON)  # straight through
            ticket = (await api.post(f"/events/{event_id}/join", headers=JSON)).json()["ticket"]
        wait_url = f"{base}/events/{event_id}/wait?t={ticket}"
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(
                locale="ja-JP", viewport=PHONE_SIZE, java_script_enabled=False
            )
            page = await context.new_page()
            listen(page, console)
            await page.goto(wait_url)
            # Keyboard only: Tab to the link, Enter.
            link = page.get_by_role("link", name="順番が近づいたらお知らせを受け取る")
            for _ in range(12):
                await page.keyboard.press("Tab")
                if await link.evaluate("e => e === document.activeElement"):
                    break
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/notify?t=*")
            form_url = page.url
            assert await page.locator("h1").inner_text() == "順番が近づいたらお知らせを受け取る"
            await axe_and_shots(page, "notify-form", lambda twin: twin.goto(form_url))

            async def wrong(target: Any) -> None:
                await target.goto(form_url)
                await target.fill("#email", "taro@example")
                await target.click("button[type=submit]")

            await wrong(page)
            assert await page.locator("#email").get_attribute("aria-invalid") == "true"
            assert await page.locator("#email").input_value() == "taro@example"
            summary = page.locator(".error-summary a")
            assert await summary.get_attribute("href") == "#email"
            await axe_and_shots(page, "notify-error", wrong)
            # Corrected by keyboard: focus the field, type, Enter submits.
            await page.focus("#email")
            await page.keyboard.press("Control+A")
            await page.keyboard.type("taro@example.jp")
            await page.keyboard.press("Enter")
            await page.wait_for_url("**/wait?t=*notify=saved*")
            assert "順番が近づいたらお知らせを送ります" in await page.content()
            saved_url = page.url
            await axe_and_shots(page, "notify-saved", lambda twin: twin.goto(saved_url))
            # English, through the page's own language switch.
            await page.goto(form_url)
            await page.click("p.lang a")
            assert await page.get_attribute("html", "lang") == "en"
            assert await page.locator("h1").inner_text() == "Get a message when your turn is near"
            english_url = page.url
            await axe_and_shots(page, "notify-form-en", lambda twin: twin.goto(english_url))
            assert csp_reports(console) == [], console
        finally:
            await browser.close()
