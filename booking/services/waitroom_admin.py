"""The waitroom's event API, called for an administrator from the console.

The waitroom owns an event's live state (its line lives in the waitroom's Redis): the
console does not change events itself, it asks the waitroom with the administrator's own
staff token, so the waitroom's checks, audit entries and tenant rules apply exactly as to
any API client. A refusal comes back as :class:`WaitroomRefused` with the waitroom's code
and message (in the console's language); the waitroom unreachable is ``busy``.
"""

from __future__ import annotations

from typing import Any

import httpx

from booking import errors

TIMEOUT_S = 10.0


class WaitroomRefused(errors.AppError):
    """The waitroom said no; ``field`` names the input at fault when it said which."""

    def __init__(self, status: int, code: str, message: str, field: str | None) -> None:
        super().__init__(message, message, code=code, status=status)
        self.field = field


async def call(
    base_url: str,
    token: str,
    lang: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json",
        "accept-language": lang,
    }
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT_S) as client:
            response = await client.request(method, path, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise errors.Busy() from exc
    try:
        payload: Any = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 500 or not isinstance(payload, dict):
        raise errors.Busy()
    if response.status_code >= 400:
        error = payload.get("error") or {}
        detail = error.get("detail") or {}
        raise WaitroomRefused(
            response.status_code,
            str(error.get("code", "error")),
            str(error.get("message", "")),
            detail.get("field") if isinstance(detail, dict) else None,
        )
    return payload


async def event_stats(base_url: str, token: str, lang: str, event_id: str) -> dict[str, Any]:
    return await call(base_url, token, lang, "GET", f"/admin/events/{event_id}/stats")


async def create_event(
    base_url: str, token: str, lang: str, fields: dict[str, Any]
) -> dict[str, Any]:
    found = await call(base_url, token, lang, "POST", "/admin/events", fields)
    event: dict[str, Any] = found["event"]
    return event


async def change_event(
    base_url: str, token: str, lang: str, event_id: str, fields: dict[str, Any]
) -> dict[str, Any]:
    found = await call(base_url, token, lang, "PATCH", f"/admin/events/{event_id}", fields)
    event: dict[str, Any] = found["event"]
    return event


async def event_action(
    base_url: str, token: str, lang: str, event_id: str, action: str
) -> dict[str, Any]:
    found = await call(base_url, token, lang, "POST", f"/admin/events/{event_id}/{action}")
    event: dict[str, Any] = found["event"]
    return event
