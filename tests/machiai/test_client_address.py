"""Whom the per-client throttle counts, through the service as `machiai run` starts it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from machiai.embedded import free_port
from machiai.runner import ServiceSpec, spawn_service, stop_process, wait_healthy
from machiai.tokens import AdmissionPass, Tokens


def attempt(url: str, token: str, forwarded_for: str) -> int:
    body = json.dumps({"pass": token, "voucher": "1000000001", "birth_date": "1950-01-01"})
    request = urllib.request.Request(
        url + "/api/sessions",
        data=body.encode(),
        headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


@pytest.fixture
def booking_url(env_vars: dict[str, str]) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **env_vars, "BOOKING_THROTTLE_CLIENT_LIMIT": "2"}
    process = spawn_service(
        ServiceSpec("booking", "booking.app:app_from_env", port), "127.0.0.1", env
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, 60)
        yield url
    finally:
        stop_process(process, 15)


def test_forwarded_for_is_not_trusted_unless_configured(
    booking_url: str, env_vars: dict[str, str]
) -> None:
    """Three attempts from one peer with three made-up X-Forwarded-For values are one
    client to the throttle (BOOKING_TRUST_FORWARDED is off): the third gets 429."""
    tokens = Tokens([env_vars["MACHIAI_SECRET_KEYS"]])
    pass_token = tokens.dump_pass(
        AdmissionPass("no-such-event", uuid.uuid4().hex, uuid.uuid4().hex)
    )
    statuses = [attempt(booking_url, pass_token, f"203.0.113.{i}") for i in range(3)]
    assert 429 not in statuses[:2] and statuses[2] == 429, statuses
