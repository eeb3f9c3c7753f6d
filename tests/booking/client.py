"""An in-process booking app with its lifespan running, and an httpx client onto it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette

from booking.app import create_app
from booking.settings import BookingSettings
from machiai.tokens import AdmissionPass, StaffClaims, Tokens


@asynccontextmanager
async def running(settings: BookingSettings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://booking") as client:
            yield app, client


def mint_pass(settings: BookingSettings, event_id: str) -> str:
    tokens = Tokens(settings.core.secret_keys)
    return tokens.dump_pass(AdmissionPass(event_id, uuid.uuid4().hex, uuid.uuid4().hex))


def staff_token(
    settings: BookingSettings, staff_id: str, municipality: str, role: str, clinic: str | None
) -> dict[str, str]:
    token = Tokens(settings.core.secret_keys).dump_staff(
        StaffClaims(staff_id, municipality, role, clinic)
    )
    return {"Authorization": f"Bearer {token}"}


async def open_session(
    client: httpx.AsyncClient, settings: BookingSettings, event_id: str, voucher: str, birth: str
) -> dict[str, str]:
    r = await client.post(
        "/api/sessions",
        json={"pass": mint_pass(settings, event_id), "voucher": voucher, "birth_date": birth},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['session']}"}


def code(response: httpx.Response) -> str:
    body: Any = response.json()
    return str(body["error"]["code"])
