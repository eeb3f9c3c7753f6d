"""Whom the per-client limits count (machiai/client_address.py): the walk itself, the
settings that configure it, and the booking service as `machiai run` starts it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from booking.settings import BookingSettings
from machiai.client_address import TrustedProxies, parse_trusted_proxies
from machiai.config import SettingsError
from machiai.embedded import free_port
from machiai.runner import ServiceSpec, spawn_service, stop_process, wait_healthy
from machiai.tokens import AdmissionPass, Tokens
from waitroom.settings import WaitroomSettings

TRUSTED_NETS = ("10.0.0.0/8", "192.0.2.1/32", "2001:db8:1::/48")
PROXIES = parse_trusted_proxies("TEST_PROXIES", ", ".join(TRUSTED_NETS))
LB = "10.0.0.1"  # the load balancer in front of the service: the peer the service sees


def test_forged_leading_entries_are_ignored() -> None:
    """The client writes whatever it likes first; the proxy appends the address it saw."""
    assert PROXIES.client(LB, "203.0.113.7") == "203.0.113.7"
    assert PROXIES.client(LB, "1.1.1.1, 8.8.8.8, 203.0.113.7") == "203.0.113.7"
    # A forged entry that names a trusted proxy does not move the client either.
    assert PROXIES.client(LB, "10.9.9.9, 203.0.113.7") == "203.0.113.7"


def test_every_trusted_hop_is_skipped_and_all_trusted_gives_the_left_most() -> None:
    assert PROXIES.client(LB, "1.1.1.1, 203.0.113.7, 192.0.2.1, 10.2.0.1") == "203.0.113.7"
    assert PROXIES.client("192.0.2.1", "203.0.113.7,10.1.1.1") == "203.0.113.7"
    # A client inside the trusted networks (an office behind the same proxies) is itself.
    assert PROXIES.client(LB, "10.7.0.1, 10.2.0.1") == "10.7.0.1"


def test_ipv6_proxies_and_clients() -> None:
    v6_proxy = "2001:db8:1::5"
    assert PROXIES.client(v6_proxy, "::1, 2001:DB8:2:0::7") == "2001:db8:2::7"
    assert PROXIES.client(LB, "1.1.1.1, [2001:db8:2::7]:4431, 2001:db8:1::9") == "2001:db8:2::7"
    # An IPv4 proxy seen through a dual-stack socket is still that IPv4 proxy.
    assert PROXIES.client("::ffff:10.0.0.1", "203.0.113.7") == "203.0.113.7"
    assert PROXIES.trusts("2001:db8:1:ffff::1") and not PROXIES.trusts("2001:db8:2::1")


def test_header_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    assert PROXIES.client("198.51.100.4", "203.0.113.7") == "198.51.100.4"
    assert PROXIES.client("2001:db8:2::1", "203.0.113.7") == "2001:db8:2::1"
    assert PROXIES.client(LB, None) == LB
    assert TrustedProxies().client(LB, "203.0.113.7") == LB  # nothing trusted
    assert parse_trusted_proxies("TEST_PROXIES", " ").client(LB, "203.0.113.7") == LB


@pytest.mark.parametrize(
    "forwarded",
    ["unknown", "", " ", "203.0.113.7,", "_hidden", "203.0.113.7:port", "[2001:db8::1", "1" * 80],
)
def test_a_hop_that_is_not_an_address_gives_the_peer(forwarded: str) -> None:
    """Garbage between the client and us is never a throttle key: the peer stands in."""
    assert PROXIES.client(LB, f"1.1.1.1, {forwarded}, 10.2.0.1") == LB
    assert PROXIES.client(LB, forwarded) == LB


def test_a_port_after_the_address_does_not_make_a_new_client() -> None:
    assert PROXIES.client(LB, "203.0.113.7:5100") == "203.0.113.7"
    assert PROXIES.client(LB, "203.0.113.7:5101") == "203.0.113.7"
    assert PROXIES.client(LB, "[2001:db8:2::7]") == "2001:db8:2::7"


def scope(*forwarded: bytes, client: Any = (LB, 5000)) -> dict[str, Any]:
    headers = [(b"host", b"x")] + [(b"x-forwarded-for", value) for value in forwarded]
    return {"type": "http", "headers": headers, "client": client}


def test_the_scope_reads_every_forwarded_for_header_in_order() -> None:
    """A proxy that adds its own header line after the client's is still read from the
    right: the client's line alone would be the forged one."""
    assert PROXIES.client_of(scope(b"1.1.1.1", b"203.0.113.7")) == "203.0.113.7"
    assert PROXIES.client_of(scope(b"1.1.1.1", b"203.0.113.7, 10.3.3.3")) == "203.0.113.7"
    assert PROXIES.client_of(scope()) == LB
    assert PROXIES.client_of(scope(b"203.0.113.7", client=("198.51.100.4", 1))) == "198.51.100.4"
    assert PROXIES.client_of(scope(b"203.0.113.7", client=None)) == "unknown"


proxy_addresses = st.one_of(*(st.ip_addresses(network=net) for net in TRUSTED_NETS)).map(str)
client_addresses = st.ip_addresses().filter(lambda a: not PROXIES.trusts(str(a)))
forged_entries = st.lists(
    st.one_of(st.ip_addresses().map(str), proxy_addresses, st.text(max_size=30)), max_size=6
)


@given(forged_entries, client_addresses, st.lists(proxy_addresses, min_size=1, max_size=4))
def test_whatever_a_client_prepends_the_client_is_what_the_first_proxy_saw(
    forged: list[str], client: IPv4Address | IPv6Address, chain: list[str]
) -> None:
    """Proxies chain[0] .. chain[-1] each append the address they saw; chain[-1] is our
    peer. Whatever the client wrote first (addresses, trusted ones, garbage, commas), the
    answer is the client's real address."""
    header = ", ".join([*forged, str(client), *chain[:-1]])
    # An IPv4-mapped IPv6 client counts as the IPv4 address it maps.
    mapped = client.ipv4_mapped if isinstance(client, IPv6Address) else None
    assert PROXIES.client(chain[-1], header) == str(mapped or client)


@pytest.mark.parametrize(
    ("value", "networks"),
    [
        ("", ()),
        ("10.0.0.1", ("10.0.0.1/32",)),
        (" 10.1.2.3/8 , ,2001:DB8::/32,::1", ("10.0.0.0/8", "2001:db8::/32", "::1/128")),
    ],
)
def test_trusted_proxies_are_ips_and_cidrs(value: str, networks: tuple[str, ...]) -> None:
    parsed = parse_trusted_proxies("X", value)
    assert tuple(str(n) for n in parsed.networks) == networks


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MACHIAI_DATA_DIR": str(tmp_path),
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "MACHIAI_SECRET_KEYS": "k" * 40,
        **extra,
    }


SERVICES = [(WaitroomSettings, "WAITROOM"), (BookingSettings, "BOOKING")]


@pytest.mark.parametrize(("service", "prefix"), SERVICES)
@pytest.mark.parametrize("bad", ["10.0.0.0/33", "proxy.internal", "10.0.0.1;10.0.0.2", "::/0"])
def test_a_bad_proxy_entry_stops_the_start_naming_variable_and_entry(
    service: Any, prefix: str, bad: str, tmp_path: Path
) -> None:
    variable = f"{prefix}_TRUSTED_PROXIES"
    with pytest.raises(SettingsError) as refused:
        service.from_env(service_env(tmp_path, **{variable: f"10.0.0.1, {bad}"}))
    assert variable in str(refused.value) and repr(bad) in str(refused.value)


@pytest.mark.parametrize(("service", "prefix"), SERVICES)
@pytest.mark.parametrize("value", ["true", "false"])
def test_the_retired_trust_forwarded_switch_stops_the_start(
    service: Any, prefix: str, value: str, tmp_path: Path
) -> None:
    old, new = f"{prefix}_TRUST_FORWARDED", f"{prefix}_TRUSTED_PROXIES"
    with pytest.raises(SettingsError) as refused:
        service.from_env(service_env(tmp_path, **{old: value}))
    assert old in str(refused.value) and new in str(refused.value)


@pytest.mark.parametrize(("service", "prefix"), SERVICES)
def test_services_read_their_trusted_proxies(service: Any, prefix: str, tmp_path: Path) -> None:
    env = service_env(tmp_path, **{f"{prefix}_TRUSTED_PROXIES": "10.0.0.0/8"})
    assert service.from_env(env).trusted_proxies.trusts("10.1.2.3")
    assert service.from_env(service_env(tmp_path)).trusted_proxies == TrustedProxies()


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
    client to the throttle (BOOKING_TRUSTED_PROXIES is empty): the third gets 429."""
    tokens = Tokens([env_vars["MACHIAI_SECRET_KEYS"]])
    pass_token = tokens.dump_pass(
        AdmissionPass("no-such-event", uuid.uuid4().hex, uuid.uuid4().hex)
    )
    statuses = [attempt(booking_url, pass_token, f"203.0.113.{i}") for i in range(3)]
    assert 429 not in statuses[:2] and statuses[2] == 429, statuses
