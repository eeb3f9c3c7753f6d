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
