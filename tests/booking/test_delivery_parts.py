"""The delivery's parts on their own: the messages (ja/en, who cancelled), the webhook
signature a receiver checks, the settings and what they refuse, the fan-out plan."""

from __future__ import annotations

import time

import pytest

from booking.delivery import fanout, messages, ratelimit
from booking.delivery.settings import DeliverySettings
from booking.delivery.signature import sign, verify_signature
from booking.store.pg_delivery import ChannelConfig, Contact, OutboxMessage
from machiai.config import SettingsError
from tests.booking.delivery_kit import reminder_payload

KEY = "k" * 40
OLD_KEY = "o" * 40


def test_every_message_in_both_languages() -> None:
    payload = reminder_payload("131001", 7)
    for topic in sorted(messages.TOPICS - {messages.TURN_NEAR}):
        ja = messages.render(topic, payload, "ja")
        en = messages.render(topic, payload, "en")
        assert ja is not None and en is not None
        # 05:30 UTC is 14:30 in Japan, a Thursday.
        assert "2026年12月3日（木）14:30" in ja.body and "中央診療所" in ja.body
        assert "Thu 3 Dec 2026, 14:30" in en.body and "Central Clinic" in en.body
        assert "CODE0007" in ja.body and "1回目" in ja.body and "Dose 1" in en.body
        assert ja.subject != en.subject and ja.locale == "ja"
    link = "https://wait.example/events/ev/wait?t=x"
    turn = {"event_id": "ev", "municipality_code": "131001", "locale": "en", "ahead": 42,
            "email": "a@b.jp", "link": link}  # fmt: skip
    near = messages.render(messages.TURN_NEAR, turn, "en")
    assert near is not None and "42 people" in near.body and link in near.body
    near_ja = messages.render(messages.TURN_NEAR, turn, "ja")
    assert near_ja is not None and near_ja.subject == "まもなく順番です"
    assert messages.render("booking.slot.closed", payload, "ja") is None
    # An unknown language falls back to Japanese.
    assert messages.render(messages.CONFIRMED, payload, "fr") == messages.render(
        messages.CONFIRMED, payload, "ja"
    )
    with pytest.raises(messages.Unrenderable):
        messages.render(messages.CONFIRMED, {**payload, "starts_at": "soon"}, "ja")


@pytest.mark.parametrize(
    ("who", "ja", "en"),
    [
        ("resident", "ご本人の操作で", "You cancelled"),
        ("staff", "コールセンター", "call centre"),
        ("clinic", "接種会場が", "The clinic cancelled"),
        ("slot_closed", "受付が中止", "its time was closed"),
        (None, "取り消されました", "This booking is cancelled."),
    ],
)
def test_a_cancellation_says_who_cancelled(who: str | None, ja: str, en: str) -> None:
    payload = {**reminder_payload("131001", 1), "cancelled_by": who}
    in_ja = messages.render(messages.CANCELLED, payload, "ja")
    in_en = messages.render(messages.CANCELLED, payload, "en")
    assert in_ja is not None and ja in in_ja.body
    assert in_en is not None and en in in_en.body


def test_the_receiver_check_of_a_signature() -> None:
    body = b'{"id": "1-webhook-abc", "topic": "booking.booking.confirmed"}'
    now = int(time.time())
    header = sign([KEY], now, body)
    assert header.startswith("v1=") and verify_signature(KEY, str(now), header, body)
    # Another body, another key, a tampered or missing header: refused.
    assert not verify_signature(KEY, str(now), header, body + b" ")
    assert not verify_signature("x" * 40, str(now), header, body)
    assert not verify_signature(KEY, str(now), header.replace("v1=", "v1=0"), body)
    assert not verify_signature(KEY, str(now), None, body)
    assert not verify_signature(KEY, None, header, body)
    assert not verify_signature(KEY, "12abc", header, body)
    # An old request replayed (or a clock far off) is refused, a signed one included.
    old = now - 301
    assert not verify_signature(KEY, str(old), sign([KEY], old, body), body)
    assert verify_signature(KEY, str(old), sign([KEY], old, body), body, tolerance_s=400)
    assert not verify_signature(KEY, str(now + 301), sign([KEY], now + 301, body), body)
    # While keys rotate, each is signed with: a receiver holding either accepts.
    both = sign([KEY, OLD_KEY], now, body)
    assert verify_signature(OLD_KEY, str(now), both, body)
    assert verify_signature([KEY], str(now), both, body)


def test_settings_refuse_bad_values_naming_the_variable(tmp_path: object) -> None:
    base = {"MACHIAI_DATA_DIR": str(tmp_path)}
    cases = {
        "MACHIAI_DELIVERY_MAX_ATTEMPTS": "0",
        "MACHIAI_DELIVERY_BACKOFF_CAP_S": "0.5",  # below the base (2 s)
        "MACHIAI_DELIVERY_LEASE_S": "5",  # shorter than a batch could take
        "MACHIAI_SMTP_URL": "http://mail.example",
        "MACHIAI_SMTP_FROM": "nobody",
        "MACHIAI_WEBHOOK_SECRET": "short",
        "MACHIAI_DELIVERY_RATE_EMAIL": "-1",
    }
    for name, value in cases.items():
        with pytest.raises(SettingsError, match=name):
            DeliverySettings.from_env({**base, name: value})


def test_settings_from_an_smtp_url_and_secrets_kept_out_of_sight(tmp_path: object) -> None:
    settings = DeliverySettings.from_env(
        {
            "MACHIAI_ENV": "production",
            "MACHIAI_DATA_DIR": str(tmp_path),
            "MACHIAI_SMTP_URL": "smtps://mailer:s%40cret-pw@smtp.city.example",
            "MACHIAI_SMTP_FROM": "yoyaku@city.example",
            "MACHIAI_WEBHOOK_SECRET": f"{KEY},{OLD_KEY}",
        }
    )
    smtp = settings.smtp
    assert (smtp.host, smtp.port, smtp.implicit_tls) == ("smtp.city.example", 465, True)
    assert (smtp.username, smtp.password) == ("mailer", "s@cret-pw")
    assert settings.webhook_secrets == (KEY, OLD_KEY)
    shown = repr(settings)
    assert "s@cret-pw" not in shown and KEY not in shown
    # Production: STARTTLS required unless said otherwise; no generated signing key.
    plain = DeliverySettings.from_env(
        {"MACHIAI_ENV": "production", "MACHIAI_SMTP_HOST": "smtp.city.example"}
    )
    assert plain.smtp.starttls is True and plain.webhook_secrets == ()
    dev = DeliverySettings.from_env({"MACHIAI_DATA_DIR": str(tmp_path)})
    assert dev.smtp.starttls is None and len(dev.webhook_secrets[0]) >= 32


def test_the_fan_out_plan() -> None:
    booking_id = "8f1c1f5e-0000-4000-8000-000000000001"
    confirmed = OutboxMessage(1, messages.CONFIRMED, {"booking_id": booking_id})
    slot = OutboxMessage(2, "booking.slot.closed", {"municipality_code": "131001"})
    turn = OutboxMessage(
        3, messages.TURN_NEAR, {"municipality_code": "271004", "email": "x@y.jp", "locale": "en"}
    )
    silent = OutboxMessage(4, messages.CONFIRMED, {"booking_id": "nobody's"})
    contacts = {booking_id: Contact("131001", "hanako@example.jp", "en")}
    channels = {
        "131001": [
            ChannelConfig("email", True),
            ChannelConfig("log", False),
            ChannelConfig("webhook", True, "https://bridge.example/hook"),
        ],
    }
    planned = fanout.plan([confirmed, slot, turn, silent], contacts, channels)
    got = {(d.outbox_id, d.channel, d.recipient, d.locale) for d in planned}
    assert got == {
        (1, "email", "hanako@example.jp", "en"),
        (1, "webhook", "https://bridge.example/hook", "en"),
        # A municipality with no channels configured: the log.
        (3, "log", "log", "en"),
        (4, "log", "log", "ja"),
    }
    keys = [d.idempotency_key for d in planned]
    assert len(set(keys)) == len(keys)
    assert fanout.plan([confirmed], contacts, channels)[0].idempotency_key in keys


async def test_the_rate_limit_spaces_sends_once_its_second_is_spent() -> None:
    """Its own clock, moved by the waits it asks for: no real time in the test."""
    now = [1000.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limit = ratelimit.RateLimit(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(15):
        await limit.take()
    # A second's worth (10) at once, then one every 0.1 s.
    assert len(waits) == 5 and all(w == pytest.approx(0.1) for w in waits)
    assert now[0] == pytest.approx(1000.5)
    unlimited = ratelimit.RateLimit(0, clock=lambda: now[0], sleep=sleep)
    for _ in range(1000):
        await unlimited.take()
    assert len(waits) == 5
