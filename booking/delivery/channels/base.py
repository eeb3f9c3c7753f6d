"""What every channel shares: the failure it raises and the shape of ``send``."""

from __future__ import annotations

from typing import Protocol

from booking.delivery.messages import Message
from booking.store.pg_delivery import Claimed


class SendFailed(Exception):
    """The receiver did not take the message. ``permanent``: trying again cannot help (a
    refused address, a receiver that rejects the request as such); the delivery is dead
    at once instead of after every attempt."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Channel(Protocol):
    async def send(self, delivery: Claimed, message: Message) -> None:
        """Hand the message over, or raise :class:`SendFailed`."""

    async def aclose(self) -> None:
        """Release connections."""
