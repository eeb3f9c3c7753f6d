"""Error bodies and their language: Japanese by default, English when the client prefers it."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from machiai.errors import EXCEPTION_HANDLERS, AppError, Busy


async def fail(request: Request) -> Response:
    if request.query_params.get("busy"):
        raise Busy(retry_after_s=3)
    raise AppError(
        "Voucher or birth date not recognised.",
        "接種券番号または生年月日が違います。",
        code="not_eligible",
        status=403,
    )


APP = Starlette(routes=[Route("/fail", fail)], exception_handlers=EXCEPTION_HANDLERS)


@pytest.mark.parametrize(
    ("accept", "english"),
    [
        (None, False),
        ("ja", False),
        ("en", True),
        ("en-US,en;q=0.9", True),
        ("ja,en;q=0.5", False),
        ("fr, en;q=0.8, ja;q=0.7", True),
        ("en;q=bogus, ja;q=0.1", False),
    ],
)
async def test_language_negotiation(accept: str | None, english: bool) -> None:
    headers = {"accept-language": accept} if accept else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://t") as c:
        response = await c.get("/fail", headers=headers)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "not_eligible"
    assert error["message"] == (
        "Voucher or birth date not recognised."
        if english
        else "接種券番号または生年月日が違います。"
    )


async def test_busy_and_unknown_routes() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://t") as c:
        busy = await c.get("/fail?busy=1")
        missing = await c.get("/nowhere", headers={"accept-language": "en"})
        wrong_method = await c.post("/fail")
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "3"
    assert busy.json()["error"]["code"] == "busy"
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Not found."}}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
