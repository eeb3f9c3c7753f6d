"""The web layer's small tools: typed input checks, auth, and the endpoint table.

Input is validated by hand: every getter names the field in its error, and
anything malformed is a 4xx before any service runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from booking import errors
from booking.services.context import Ctx
from machiai.tokens import StaffClaims, TokenError, Tokens

JST = timezone(timedelta(hours=9))
VOUCHER = re.compile(r"^[0-9]{10}$")
UUIDISH = re.compile(r"^[0-9a-fA-F-]{32,36}$")
HOLD_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\.[0-9a-f]{32}$")
Handler = Callable[[Request], Awaitable[Response]]


def invalid(field_name: str, reason_en: str, reason_ja: str) -> errors.Invalid:
    return errors.Invalid(
        f"{field_name}: {reason_en}",
        f"{field_name}: {reason_ja}",
        detail={"field": field_name},
    )


class Fields:
    """Typed, named access to a JSON object or query parameters."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def _get(self, name: str, required: bool) -> Any:
        value = self.data.get(name)
        if value is None and required:
            raise invalid(name, "is required", "必須項目です")
        return value

    def text(self, name: str, *, max_len: int = 200, pattern: re.Pattern[str] | None = None) -> str:
        value = self.opt_text(name, max_len=max_len, pattern=pattern)
        if value is None:
            raise invalid(name, "is required", "必須項目です")
        return value

    def opt_text(
        self, name: str, *, max_len: int = 200, pattern: re.Pattern[str] | None = None
    ) -> str | None:
        value = self._get(name, False)
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > max_len:
            raise invalid(
                name, f"must be a string of at most {max_len} characters", "文字列が不正です"
            )
        if "\x00" in value:
            raise invalid(name, "contains a NUL character", "使えない文字が含まれています")
        if pattern is not None and not pattern.match(value):
            raise invalid(name, "has the wrong format", "形式が正しくありません")
        return value

    def integer(self, name: str, *, minimum: int, maximum: int) -> int:
        value = self.opt_integer(name, minimum=minimum, maximum=maximum)
        if value is None:
            raise invalid(name, "is required", "必須項目です")
        return value

    def opt_integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,9}", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(name, "must be an integer", "整数で入力してください")
        if not minimum <= value <= maximum:
            raise invalid(name, f"must be between {minimum} and {maximum}", "範囲外の値です")
        return value

    def boolean(self, name: str) -> bool | None:
        value = self._get(name, False)
        if value is None:
            return None
        if isinstance(value, str) and value in {"true", "false", "1", "0"}:
            return value in {"true", "1"}
        if not isinstance(value, bool):
            raise invalid(name, "must be true or false", "true か false で指定してください")
        return value

    def day(self, name: str) -> date:
        value = self.opt_day(name)
        if value is None:
            raise invalid(name, "is required", "必須項目です")
        return value

    def opt_day(self, name: str) -> date | None:
        raw = self.opt_text(name, max_len=10)
        return None if raw is None else parse_day(raw, name)

    def instant(self, name: str) -> datetime:
        value = self.opt_instant(name)
        if value is None:
            raise invalid(name, "is required", "必須項目です")
        return value

    def opt_instant(self, name: str) -> datetime | None:
        raw = self.opt_text(name, max_len=40)
        return None if raw is None else parse_instant(raw, name)

    def clock(self, name: str) -> time:
        raw = self.text(name, max_len=5)
        try:
            return time.fromisoformat(raw)
        except ValueError:
            raise invalid(name, "must be HH:MM", "HH:MM 形式で入力してください") from None

    def array(self, name: str, *, max_len: int = 1000) -> list[Any]:
        value = self._get(name, False)
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > max_len:
            raise invalid(name, f"must be a list of at most {max_len} items", "配列が不正です")
        return value


def parse_day(raw: str, name: str) -> date:
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise invalid(
            name, "must be a date YYYY-MM-DD", "YYYY-MM-DD 形式の日付で入力してください"
        ) from None


def parse_instant(raw: str, name: str) -> datetime:
    """ISO 8601 date-time; without an offset it is Japan time."""
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid(
            name, "must be an ISO 8601 date-time", "日時の形式が正しくありません"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=JST)
    return value.astimezone(UTC)


async def body(request: Request) -> Fields:
    """The JSON object in the request body; anything else is a 400."""
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise errors.BadRequest(
            "The body is not valid JSON.",
            "送信データが JSON ではありません。",
            code="malformed_json",
        ) from None
    if not isinstance(data, dict):
        raise errors.BadRequest(
            "The body must be a JSON object.",
            "送信データの形式が正しくありません。",
            code="malformed_json",
        )
    return Fields(data)


def query(request: Request) -> Fields:
    return Fields(dict(request.query_params))


def ctx_of(request: Request) -> Ctx:
    ctx: Ctx = request.app.state.ctx
    return ctx


def tokens_of(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 2000:
        raise errors.Unauthorized()
    return token.strip()


def staff(request: Request, *roles: str) -> StaffClaims:
    """The staff member behind the request, if their role is one of ``roles``."""
    ctx = ctx_of(request)
    try:
        claims = tokens_of(request).load_staff(bearer(request), ctx.settings.core.staff_token_ttl_s)
    except TokenError:
        raise errors.Unauthorized() from None
    if claims.role not in roles:
        raise errors.Forbidden()
    return claims


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 200:
        raise invalid(
            "Idempotency-Key", "must be 1 to 200 characters", "1〜200 文字で指定してください"
        )
    return key


def client_address(request: Request) -> str:
    """Whom the per-client throttles count: the first X-Forwarded-For hop only if trusted."""
    if ctx_of(request).settings.trust_forwarded:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:100]
    return request.client.host if request.client else "unknown"


def path_param(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if len(value) > 100 or not value.isprintable():
        raise errors.NotFound()
    return value


def ok(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=dict(headers or {}))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One API operation: its route and what the OpenAPI document says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    auth: str = "none"  # none | session | staff
    request: Mapping[str, str] = field(default_factory=dict)  # field -> "type: note"
    params: Mapping[str, str] = field(default_factory=dict)  # query parameter -> note
    response: Mapping[str, str] = field(default_factory=dict)
    body_kind: str = "json"  # json | csv | none
    tags: tuple[str, ...] = ()

    def route(self) -> Route:
        return Route(self.path, self.handler, methods=[self.method])
