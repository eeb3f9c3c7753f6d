"""The web layer's small tools: typed input checks, auth, and the endpoint table.

Input is validated by hand: every getter names the field in its error, and
anything malformed is a 4xx before any service runs. The patterns are the ones the
OpenAPI document publishes (``booking/openapi.py``), so both refuse the same input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from booking import errors
from booking.services.context import Ctx
from machiai import inputs
from machiai.openapi import Param, Reply, Schema
from machiai.staff_generation import StaffGenerations, reader
from machiai.tokens import StaffClaims, TokenError, Tokens

JST = timezone(timedelta(hours=9))
VOUCHER_PATTERN = "^[0-9]{10}$"
HOLD_ID_PATTERN = "^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\\.[0-9a-f]{32}$"
CLOCK_PATTERN = "^([01][0-9]|2[0-3]):[0-5][0-9]$"
VOUCHER = inputs.exact(VOUCHER_PATTERN)
UUID_STR = inputs.exact(inputs.UUID_PATTERN)
HOLD_ID = inputs.exact(HOLD_ID_PATTERN)
EVENT_ID = inputs.EVENT_ID
VACCINE_CODE = inputs.exact(inputs.VACCINE_CODE_PATTERN)
CLOCK = inputs.exact(CLOCK_PATTERN)
Handler = Callable[[Request], Awaitable[Response]]


def invalid(field_name: str, reason_en: str, reason_ja: str) -> errors.Invalid:
    return errors.Invalid(
        f"{field_name}: {reason_en}",
        f"{field_name}: {reason_ja}",
        detail={"field": field_name},
    )


class Fields:
    """Typed, named access to a JSON object or query parameters.

    In a JSON object a number must be a JSON number and a flag a JSON boolean; query
    parameters (``from_query``) are strings, read as numbers and flags."""

    def __init__(self, data: Mapping[str, Any], *, from_query: bool = False) -> None:
        self.data = data
        self.from_query = from_query

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
        if not inputs.usable_text(value):
            raise errors.Invalid(
                f"{name}: contains a character that cannot be stored (NUL or a lone surrogate)",
                f"{name}: 使えない文字（NUL など）が含まれています",
                code="invalid_character",
                detail={"field": name},
            )
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
        if self.from_query and isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,9}", value):
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
        if self.from_query and isinstance(value, str) and value in {"true", "false", "1", "0"}:
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
        if not CLOCK.match(raw):
            raise invalid(name, "must be HH:MM", "HH:MM 形式で入力してください")
        return time.fromisoformat(raw)

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
    """ISO 8601 date-time, in UTC; without an offset it is Japan time. One that lies
    outside what can be held once in UTC (year 1 or 9999 at the edge) is refused too."""
    value = inputs.parse_instant(raw, JST)
    if value is None:
        raise invalid(
            name,
            "must be an ISO 8601 date-time between the years 1 and 9999",
            "日時の形式が正しくありません",
        )
    return value


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
    return Fields(dict(request.query_params), from_query=True)


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
    """The staff member behind the request, if their role is one of ``roles``. Their
    token and standing were checked before the endpoint ran (``signed_in_staff``); a request
    whose route did not check them (an endpoint not declared ``auth="staff"``) gets nothing."""
    claims = getattr(request.state, "staff", None)
    if not isinstance(claims, StaffClaims):
        raise errors.Unauthorized()
    if claims.role not in roles:
        raise errors.Forbidden()
    return claims


async def signed_in_staff(request: Request, roles: Iterable[str]) -> StaffClaims:
    """The staff member behind the request: a valid token of one of ``roles``, whose staff
    row still stands behind it (active, same role and clinic, same generation)."""
    ctx = ctx_of(request)
    try:
        claims = tokens_of(request).load_staff(bearer(request), ctx.settings.core.staff_token_ttl_s)
    except TokenError:
        raise errors.Unauthorized() from None
    if claims.role not in roles:
        raise errors.Forbidden()  # whatever the row says: no read for a token refused anyway
    # Promise (machiai/staff_generation.py): deactivating, a role change, a new password or
    # signing out stops this person's tokens within CHECK_TTL_S, one read per CHECK_TTL_S.
    if not await staff_generations(request).admits(claims):
        raise errors.Unauthorized()
    return claims


def staff_generations(request: Request) -> StaffGenerations:
    """This app's memory of staff standing, made at its first staff request (one per
    process and app, on the app's pool)."""
    state = request.app.state
    found: StaffGenerations | None = getattr(state, "staff_generations", None)
    if found is None:
        ctx = ctx_of(request)
        found = StaffGenerations(reader(ctx.pool, ctx.settings.db_timeout_s))
        state.staff_generations = found
    return found


def staff_checked(ep: Endpoint) -> Handler:
    """``ep``'s handler, run only for a signed-in staff member of one of its roles."""

    async def endpoint(request: Request) -> Response:
        request.state.staff = await signed_in_staff(request, ep.roles)
        return await ep.handler(request)

    return endpoint


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
    """Whom the per-client throttles count: the peer, or behind a trusted proxy the address
    the first trusted proxy saw (a made-up X-Forwarded-For entry buys no fresh budget)."""
    return ctx_of(request).settings.trusted_proxies.client_of(request.scope)


def path_param(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if len(value) > 100 or not value.isprintable():
        raise errors.NotFound()
    return value


def ok(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=dict(headers or {}))


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One API operation: its handler, and what the OpenAPI document says about it
    (``booking/openapi.py`` adds the errors every operation of its kind can answer)."""

    method: str
    path: str
    handler: Handler
    summary: str
    auth: str = "none"  # none | session | staff
    roles: tuple[str, ...] = ()  # the staff roles admitted (auth == "staff")
    request: Schema | None = None  # the JSON body (body_kind == "json")
    params: tuple[Param, ...] = ()  # path and query parameters
    response: Schema | None = None  # the body of the success answer
    status: int = 200  # of the success answer
    replies: Mapping[int, Reply] = field(default_factory=dict)  # other answers, or with headers
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)  # beyond the usual
    body_kind: str = "json"  # json | csv | none
    tags: tuple[str, ...] = ()


def routes_of(endpoints: Iterable[Endpoint]) -> list[Route]:
    """One route per path, whatever its methods: a method the path does not have is a 405
    whose ``Allow`` lists the ones it has (a route per method would list only its own)."""
    by_path: dict[str, dict[str, Handler]] = {}
    for ep in endpoints:
        handler = staff_checked(ep) if ep.auth == "staff" else ep.handler
        by_path.setdefault(ep.path, {})[ep.method] = handler
    return [
        Route(path, _dispatch(handlers), methods=list(handlers))
        for path, handlers in by_path.items()
    ]


def _dispatch(handlers: Mapping[str, Handler]) -> Handler:
    if len(handlers) == 1:
        return next(iter(handlers.values()))
    table = {**handlers}
    if "GET" in table:
        table.setdefault("HEAD", table["GET"])

    async def endpoint(request: Request) -> Response:
        return await table[request.method](request)

    return endpoint
