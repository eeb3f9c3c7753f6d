"""The waiting page in headless Chromium: JS on and off, cookies off, ja/en, small, live region."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from starlette.applications import Starlette

from machiai.embedded import free_port
from tests.servers import serving
from tests.waitroom.conftest import T0_MS, AppFactory, FakeClock, add_event, line_of
from waitroom.settings import WaitroomSettings

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
    console: list[str] = []
    async with serving(app, port=port), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            # -- JavaScript on, Japanese: join with the button, wait, get forwarded.
            js = await browser.new_context(locale="ja-JP")
            page = await js.new_page()
            listen(page, console)
            response = await page.goto(f"{base}/events/{event_id}/wait")
            assert response is not None and response.status == 200
            await page.click("button")  # 列に並ぶ: the first one goes straight through
            await page.wait_for_url("**/booking/enter?pass=*")
            # The next resident waits: the bucket's second is spent.
            page2 = await (await browser.new_context(locale="ja-JP")).new_page()
            listen(page2, console)
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
            listen(page3, console)
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
            # The pages' CSP (no inline script or style) blocked nothing they need.
            assert csp_reports(console) == [], console
        finally:
            await browser.close()


SHOTS = Path(__file__).resolve().parents[2] / "reports" / "screenshots" / "waitroom"
PHONE_SIZE: Any = {"width": 412, "height": 915}
DESK_SIZE: Any = {"width": 1280, "height": 900}
JSON = {"accept": "application/json", "cookie": "x=1"}


def axe_source() -> str:
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text("utf-8")


def listen(page: Any, into: list[str]) -> None:
    """Collect what the page writes to the console (a CSP violation is reported there)."""
    page.on("console", lambda message: into.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: into.append(f"pageerror: {error}"))


def csp_reports(messages: list[str]) -> list[str]:
    return [m for m in messages if "content security policy" in m.lower()]


async def look(page: Any, name: str) -> None:
    """axe-core on the page as shown (0 serious or critical), screenshots at 412 and 1280 px.

    The pages forbid inline scripts (CSP): axe runs in a twin context that bypasses it, on
    the same URL (a GET: it changes nothing), with the same stylesheet."""
    twin_context = await page.context.browser.new_context(bypass_csp=True, locale="ja-JP")
    try:
        twin = await twin_context.new_page()
        await twin.goto(page.url)
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


async def test_script_says_what_to_do_when_the_ticket_is_refused(
    db: asyncpg.Pool,
    make_app: AppFactory,
    redis: aioredis.Redis,
    settings: WaitroomSettings,
) -> None:
    """A Redis loss makes the ticket unknown (409): the page says to join again, as it does
    without JavaScript, instead of showing the old place for ever."""
    from playwright.async_api import async_playwright

    event_id = await add_event(db, rate=6)
    app = make_app(poll_min_s=1, refresher=True)
    async with serving(app) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            async with httpx.AsyncClient(base_url=base) as api:
                await api.post(f"/events/{event_id}/join", headers=JSON)  # goes straight in
            page = await (await browser.new_context(locale="ja-JP")).new_page()
            await page.goto(f"{base}/events/{event_id}/wait")
            await page.click("button")
            await page.wait_for_url("**/wait?t=*")
            assert "次があなたの番です" in await page.locator("#live").inner_text()
            # Redis loses the line: the event reloads from Postgres with its counters at 0.
            prefix = settings.core.redis_prefix
            doomed = [k async for k in redis.scan_iter(f"{prefix}*{event_id}*")]
            assert doomed
            await redis.delete(*doomed)
            # (A locator, not wait_for_function: the page's CSP forbids evaluating strings.)
            await page.get_by_text("整理券が確認できませんでした").wait_for(timeout=20_000)
            assert await page.locator("form button").inner_text() == "列に並ぶ"
            await page.click("form button")  # and joining again works
            await page.wait_for_url("**/wait?t=*")
        finally:
            await browser.close()


async def test_big_line_keeps_the_number_with_its_counter_word_at_412_px(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock
) -> None:
    from playwright.async_api import async_playwright

    event_id = await add_event(db, rate=1, cap=1000)
    app = make_app(phone="0120-000-333")
    async with serving(app) as base, async_playwright() as pw:
        async with httpx.AsyncClient(base_url=base) as api:
            first = [
                (await api.post(f"/events/{event_id}/join", headers=JSON)).json() for _ in range(4)
            ]
            near = next(a for a in first if a["ahead"] == 2)  # the issue's 「あなたの前に 2 ／ 人」
            for _ in range(12):  # 1,200 more: a four-digit number ahead
                await asyncio.gather(
                    *(api.post(f"/events/{event_id}/join", headers=JSON) for _ in range(100))
                )
            last = (await api.post(f"/events/{event_id}/join", headers=JSON)).json()
        assert last["ahead"] >= 1000, last
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(locale="ja-JP", viewport=PHONE_SIZE)
            page = await context.new_page()
            for ticket, ahead in ((near["ticket"], 2), (last["ticket"], last["ahead"])):
                await page.goto(f"{base}/events/{event_id}/wait?t={ticket}")
                big = page.locator("#live p.big")
                number = f"{ahead:,}"
                assert await big.inner_text() == f"あなたの前に {number}\u00a0人"
                style = await big.evaluate(
                    "e => [getComputedStyle(e).wordBreak, getComputedStyle(e).lineBreak]"
                )
                assert style == ["keep-all", "strict"]
                # The number's last digit and 人 are on one line box; nothing overflows.
                tops = await big.evaluate(
                    """e => { const t = e.firstChild, s = t.data, r = document.createRange();
                    const top = i => { r.setStart(t, i); r.setEnd(t, i + 1);
                                       return r.getClientRects()[0].top; };
                    return [top(s.indexOf('人') - 2), top(s.indexOf('人')),
                            e.scrollWidth <= e.clientWidth]; }"""
                )
                assert tops[0] == tops[1] and tops[2], (ahead, tops)
            await look(page, "wait-far-back")
            await page.goto(f"{base}/?lang=ja")
            await look(page, "home")
            await page.goto(f"{base}/events/{event_id}/wait?t={near['ticket']}&lang=en")
            await look(page, "wait-en")
            # The public draw page, with a resident's number checked.
            drawn = await add_event(
                db, state="prequeue", prequeue_at_ms=T0_MS, opens_at_ms=T0_MS + 60_000
            )
            async with httpx.AsyncClient(base_url=base) as api:
                for _ in range(5):
                    await api.post(f"/events/{drawn}/join", headers=JSON)
            clock.now = T0_MS + 61_000
            await line_of(app).refresh(drawn)
            await page.goto(f"{base}/events/{drawn}/shuffle?p=2")
            assert await page.locator("#answer").get_attribute("data-index") is not None
            await look(page, "shuffle")
        finally:
            await browser.close()


def other_site(action: str) -> Starlette:
    """Another site (another origin, another site for cookies): a page whose form posts to
    the waitroom's join by itself, with the ticket given (``?t=``) or none."""
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def form_page(request: Request) -> HTMLResponse:
        ticket = request.query_params.get("t", "")
        field = f'<input type="hidden" name="t" value="{ticket}">' if ticket else ""
        return HTMLResponse(
            '<!doctype html><html lang="en"><title>A prize!</title>'
            f'<form id="f" method="post" action="{action}">{field}</form>'
            '<script>document.getElementById("f").submit()</script></html>'
        )

    return Starlette(routes=[Route("/", form_page)])


async def test_a_form_from_another_site_does_not_cost_the_resident_their_place(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    """After the resident joined, another site's page posts a form to the join (with no
    ticket, then with a ticket of its own): the resident keeps their ticket, cookie and
    place. The waiting page works under its CSP with nothing reported to the console."""
    from playwright.async_api import async_playwright

    event_id = await add_event(db, rate=6)
    app = make_app(poll_min_s=1)
    console: list[str] = []
    async with serving(app) as base, async_playwright() as pw:
        join_url = f"{base}/events/{event_id}/join"
        async with serving(other_site(join_url), host="127.0.0.2") as elsewhere:
            async with httpx.AsyncClient(base_url=base) as api:
                for _ in range(2):  # one goes straight in, one waits ahead of the resident
                    await api.post(f"/events/{event_id}/join", headers=JSON)
                theirs = (await api.post(f"/events/{event_id}/join", headers=JSON)).json()
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                context = await browser.new_context(locale="ja-JP", viewport=PHONE_SIZE)
                page = await context.new_page()
                listen(page, console)
                await page.goto(f"{base}/events/{event_id}/wait")
                await page.click("button")
                await page.wait_for_url("**/wait?t=*")
                ticket = page.url.split("t=")[1].split("&")[0]
                told = await page.locator("#live p.big").inner_text()
                assert told == "あなたの前に 2\u00a0人", told
                cookie = [c for c in await context.cookies() if c["name"].endswith(event_id)]
                assert [c["value"] for c in cookie] == [ticket]
                assert cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Lax"

                for lure in (f"{elsewhere}/", f"{elsewhere}/?t={theirs['ticket']}"):
                    await page.goto(lure)
                    # The form posts itself; the browser lands on the waiting page.
                    await page.wait_for_url(f"{base}/events/{event_id}/wait*")
                    await page.wait_for_selector("#live")
                    assert await page.locator("#live p.big").inner_text() == told, lure
                    polls_with = await page.eval_on_selector(
                        "#wait-data", "e => JSON.parse(e.textContent).ticket"
                    )
                    assert polls_with == ticket, lure
                    after = [c for c in await context.cookies() if c["name"].endswith(event_id)]
                    assert [c["value"] for c in after] == [ticket], lure
                await look(page, "wait-after-other-site")
                # The page the resident kept open is still theirs, and still live.
                await page.goto(f"{base}/events/{event_id}/wait?t={ticket}")
                assert await page.locator("#live p.big").inner_text() == told
                assert csp_reports(console) == [], console
            finally:
                await browser.close()
