"""The log channel: a line per message on the ``machiai.delivery`` logger (development's
default channel; a municipality without channels gets it)."""

from __future__ import annotations

import logging

from booking.delivery.messages import Message
from booking.store.pg_delivery import Claimed

logger = logging.getLogger("machiai.delivery")


class LogChannel:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, delivery: Claimed, message: Message) -> None:
        # The subject only: bodies carry codes and links that logs should not keep.
        logger.info(
            "delivery %s %s [%s] %s",
            delivery.idempotency_key,
            delivery.topic,
            message.locale,
            message.subject,
        )
        self.sent += 1

    async def aclose(self) -> None:
        return None
