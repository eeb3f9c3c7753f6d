"""Which deliveries an outbox message makes: the plan the fan-out transaction inserts.

Per message with a text (``messages.TOPICS``), for each channel its municipality enabled
(none configured: the log): the log once; e-mail to the booking's ``contact_email`` (in
its ``contact_locale``) or the payload's ``email``; the webhook to the municipality's
receiver. A message with nobody to reach makes no delivery and is published all the same.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

from booking.delivery.messages import LOCALES, TOPICS
from booking.store.pg_delivery import ChannelConfig, Contact, NewDelivery, OutboxMessage

DEFAULT_CHANNELS = (ChannelConfig("log", True),)
# The schema's shape of an address (migration 0009): anything else is nobody's inbox.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def idempotency_key(outbox_id: int, channel: str, recipient: str) -> str:
    """Stable per message, channel and recipient: every attempt carries the same key."""
    digest = hashlib.sha256(f"{outbox_id}\n{channel}\n{recipient}".encode()).hexdigest()
    return f"{outbox_id}-{channel}-{digest[:16]}"


def _address(contact: Contact | None, payload: Mapping[str, object]) -> str | None:
    for candidate in (contact.email if contact else None, payload.get("email")):
        if isinstance(candidate, str) and len(candidate) <= 254 and EMAIL.fullmatch(candidate):
            return candidate
    return None


def plan(
    messages: Sequence[OutboxMessage],
    contacts: Mapping[str, Contact],
    channels: Mapping[str, Sequence[ChannelConfig]],
) -> list[NewDelivery]:
    out: list[NewDelivery] = []
    for message in messages:
        if message.topic not in TOPICS:
            continue
        payload = message.payload
        contact = contacts.get(str(payload.get("booking_id", "")))
        municipality = str(payload.get("municipality_code") or "") or (
            contact.municipality if contact else None
        )
        locale = payload.get("locale") or (contact.locale if contact else "ja")
        locale = locale if locale in LOCALES else "ja"
        configs = channels.get(municipality or "") or DEFAULT_CHANNELS
        for config in configs:
            if not config.enabled:
                continue
            recipient: str | None = None
            if config.channel == "log":
                recipient = "log"
            elif config.channel == "email":
                recipient = _address(contact, payload)
            elif config.channel == "webhook":
                recipient = config.webhook_url
            if recipient is None:
                continue
            out.append(
                NewDelivery(
                    outbox_id=message.outbox_id,
                    municipality=municipality,
                    channel=config.channel,
                    recipient=recipient,
                    locale=str(locale),
                    idempotency_key=idempotency_key(message.outbox_id, config.channel, recipient),
                )
            )
    return out
