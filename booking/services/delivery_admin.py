"""Messages as an administrator sees them: deliveries by state, the dead ones (each may be
tried again, audited), and the municipality's channels (log, e-mail, webhook).

Only the administrator's own municipality, always."""

from __future__ import annotations

import re
from dataclasses import dataclass

from booking.services.context import Ctx
from booking.store import pg, pg_delivery
from booking.store.pg_delivery import ChannelConfig, DeadDelivery
from machiai.tokens import StaffClaims

__all__ = ["ChannelChoice", "DeadDelivery", "Overview", "overview", "retry", "set_channels"]

DEAD_SHOWN = 100
WEBHOOK_URL = re.compile(r"https?://[^\s/?#]+[^\s]*")


@dataclass(frozen=True, slots=True)
class ChannelChoice:
    """What the console's form sets: each channel on or off, the webhook's receiver."""

    log: bool
    email: bool
    webhook: bool
    webhook_url: str | None

    @classmethod
    def of(cls, configs: list[ChannelConfig]) -> ChannelChoice:
        """The choice ``configs`` make; none configured is the log alone (the default)."""
        if not configs:
            return cls(log=True, email=False, webhook=False, webhook_url=None)
        on = {c.channel for c in configs if c.enabled}
        url = next((c.webhook_url for c in configs if c.channel == "webhook"), None)
        return cls("log" in on, "email" in on, "webhook" in on, url)

    def configs(self) -> list[ChannelConfig]:
        out = [ChannelConfig("log", self.log), ChannelConfig("email", self.email)]
        if self.webhook_url or self.webhook:
            out.append(ChannelConfig("webhook", self.webhook, self.webhook_url))
        return out


class ChannelRefused(ValueError):
    """The choice cannot be saved; ``field`` names the form field at fault."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True, slots=True)
class Overview:
    counts: dict[str, int]
    dead: list[DeadDelivery]
    channels: ChannelChoice


async def overview(ctx: Ctx, admin: StaffClaims) -> Overview:
    municipality = admin.municipality_code
    async with pg.acquire(ctx.pool) as conn:
        counts = await pg_delivery.state_counts(conn, municipality)
        dead = await pg_delivery.dead_deliveries(conn, municipality, DEAD_SHOWN)
        configs = await pg_delivery.channels_of(conn, [municipality])
    return Overview(counts, dead, ChannelChoice.of(configs.get(municipality, [])))


async def retry(ctx: Ctx, admin: StaffClaims, delivery_id: int) -> bool:
    """Make a dead delivery of the administrator's municipality due again (audited as
    booking.delivery.retried); False when it is not (or no longer) dead."""
    async with pg.acquire(ctx.pool) as conn:
        return await pg_delivery.retry_dead(
            conn, admin.municipality_code, delivery_id, "staff", admin.staff_id
        )


async def set_channels(ctx: Ctx, admin: StaffClaims, choice: ChannelChoice) -> bool:
    """Save the municipality's channels (audited as booking.delivery.channels_changed when
    anything changed). A webhook needs its receiver's address, https:// in production (a
    resident's message travels in it)."""
    url = choice.webhook_url
    if url is not None:
        https_only = ctx.settings.core.production
        if len(url) > 2000 or not WEBHOOK_URL.fullmatch(url):
            raise ChannelRefused("webhook_url")
        if https_only and not url.startswith("https://"):
            raise ChannelRefused("webhook_url")
    elif choice.webhook:
        raise ChannelRefused("webhook_url")
    async with pg.acquire(ctx.pool) as conn:
        return await pg_delivery.set_channels(
            conn, admin.municipality_code, choice.configs(), "staff", admin.staff_id
        )
