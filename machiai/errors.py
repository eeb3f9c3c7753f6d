"""The one error shape both services speak: ``{"error": {"code", "message"}}``.

Every domain failure is an :class:`AppError` with a stable machine-readable
``code``, an HTTP status and a message in Japanese and English; the message
language follows ``Accept-Language`` with Japanese as the default, because
most residents read Japanese first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from machiai import i18n


class AppError(Exception):
    """A failure the client can act on; rendered as a 4xx (or 503 when busy)."""

    code: str = "error"
    status: int = 400
    message_ja: str = "リクエストを処理できませんでした。"
    message_en: str = "The request could not be processed."

    def __init__(
        self,
        message_en: str | None = None,
        message_ja: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if message_en is not None:
            self.message_en = message_en
        if message_ja is not None:
            self.message_ja = message_ja
        self.headers = dict(headers or {})
        self.detail = dict(detail or {})
        super().__init__(f"{self.code}: {self.message_en}")


class BadRequest(AppError):
    code = "bad_request"
    status = 400


class NotFound(AppError):
    code = "not_found"
    status = 404
    message_ja = "見つかりませんでした。"
    message_en = "Not found."


class BodyTooLarge(AppError):
    code = "body_too_large"
    status = 413
    message_ja = "送信データが大きすぎます。"
    message_en = "Request body too large."


class Busy(AppError):
    """Contention or a backing service is down: retry shortly, nothing was written."""

    code = "busy"
    status = 503
    message_ja = "ただいま混み合っています。少し時間をおいて、もう一度お試しください。"
    message_en = "The service is busy. Please try again in a moment."

    def __init__(self, retry_after_s: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.headers.setdefault("Retry-After", str(retry_after_s))


def prefers_english(request: Request) -> bool:
    """True when the client ranks English above Japanese in Accept-Language."""
    return i18n.choose(None, request.headers.get("accept-language", "")) == "en"


def error_body(code: str, message: str, detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail:
        error["detail"] = dict(detail)
    return {"error": error}


ERROR_CODE_KEY = "machiai.error_code"


async def app_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    # The refusal's code, for the metrics middleware (machiai/metrics.py) to count.
    request.scope[ERROR_CODE_KEY] = exc.code
    message = exc.message_en if prefers_english(request) else exc.message_ja
    return JSONResponse(
        error_body(exc.code, message, exc.detail), status_code=exc.status, headers=exc.headers
    )


_HTTP_CODES: dict[int, tuple[str, str, str]] = {
    404: ("not_found", "見つかりませんでした。", "Not found."),
    405: ("method_not_allowed", "この操作は使えません。", "Method not allowed."),
    413: ("body_too_large", "送信データが大きすぎます。", "Request body too large."),
}


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, ja, en = _HTTP_CODES.get(
        exc.status_code, ("http_error", "リクエストを処理できませんでした。", str(exc.detail))
    )
    message = en if prefers_english(request) else ja
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    AppError: app_error_handler,
    HTTPException: http_error_handler,
}
