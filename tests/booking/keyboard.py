"""Keyboard-only steps for the browser tests: what a person without a mouse can reach."""

from __future__ import annotations

from typing import Any

# More Tab presses than any console page has focusable elements before its last field.
MAX_TABS = 80


async def tab_to(page: Any, selector: str) -> None:
    """Press Tab until the element ``selector`` names has the focus (the keyboard reaches
    it, in the page's order)."""
    for _ in range(MAX_TABS):
        await page.keyboard.press("Tab")
        if await page.evaluate(
            "s => document.activeElement === document.querySelector(s)", selector
        ):
            return
    raise AssertionError(f"Tab never reached {selector}")


async def type_into(page: Any, selector: str, text: str) -> None:
    """Tab to a field, replace what it holds, type."""
    await tab_to(page, selector)
    await page.keyboard.press("Control+A")
    await page.keyboard.type(text)


async def focus_lands(page: Any, name: str, timeout_ms: float = 5000) -> None:
    """Wait until the focus is on the element whose id, or else whose text, is ``name``.

    A page's ``autofocus`` is applied when the browser next renders, which may come after
    the load event a test waited for: a key pressed in between goes to the body and is
    lost, so a step that relies on the page's focus waits for it here first."""
    script = """n => { const e = document.activeElement;
        return !!e && e !== document.body && (e.id || e.textContent.trim()) === n; }"""
    try:
        await page.wait_for_function(script, arg=name, timeout=timeout_ms)
    except Exception as error:  # playwright's TimeoutError: say where the focus is instead
        where = await page.evaluate(
            "() => { const e = document.activeElement; return e ? (e.id || e.tagName) : ''; }"
        )
        raise AssertionError(f"the focus never landed on {name!r}; it is on {where!r}") from error
