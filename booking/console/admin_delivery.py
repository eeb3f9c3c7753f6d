"""Messages to residents (administrators): deliveries by state, dead ones with a retry
button each, and the municipality's channels.

GET  /staff/admin/delivery                 counts, the channels' form, the dead deliveries
POST /staff/admin/delivery/channels        save the channels (→ 303; 422 with the problem)
POST /staff/admin/delivery/{id}/retry      try a dead delivery again (→ 303), audited

Neither action destroys anything (a retry sends a message once more, under the same
idempotency key), so neither asks for a confirmation step; both are audited.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import errors
from booking.console.common import console_page, render, see_other
from booking.http import JST, ctx_of
from booking.pages.common import Form, link
from booking.services import delivery_admin
from booking.services.console import Console
from booking.services.delivery_admin import ChannelChoice, ChannelRefused, DeadDelivery
from machiai.i18n import N_, tr

BASE = "/staff/admin/delivery"
STATE_LABELS = {
    "pending": N_("Waiting to be sent"),
    "sent": N_("Sent"),
    "dead": N_("Given up"),
}
TOPIC_LABELS = {
    "booking.booking.confirmed": N_("Booking confirmed"),
    "booking.booking.changed": N_("Booking changed"),
    "booking.booking.cancelled": N_("Booking cancelled"),
    "booking.reminder.due": N_("Day-before reminder"),
    "waitroom.turn.near": N_("Your turn is near"),
}
CHANNEL_LABELS = {"log": N_("Log"), "email": N_("E-mail"), "webhook": N_("Webhook")}
DONE = {
    "retried": N_("The message will be sent again within seconds."),
    "gone": N_("That message is no longer among those given up (already tried again?)."),
    "channels": N_("The channels are saved. New messages use them."),
    "unchanged": N_("Nothing was changed."),
}
PROBLEMS = {
    "webhook_url": N_(
        "Enter the receiver's address, starting with https:// (http:// only in development)."
    ),
}


def shown_recipient(dead: DeadDelivery) -> str:
    """An address half hidden (the administrator needs the domain, not the person)."""
    if dead.channel != "email":
        return dead.recipient
    local, _, domain = dead.recipient.partition("@")
    return f"{local[:2]}***@{domain}"


async def _page(
    request: Request,
    lang: str,
    console: Console,
    *,
    notice: str = "",
    choice: ChannelChoice | None = None,
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    seen = await delivery_admin.overview(ctx_of(request), console.claims)
    done = DONE.get(notice)
    return render(
        request,
        "staff_admin_delivery.html",
        lang,
        {
            "title": tr(lang, N_("Messages to residents")),
            "notice": tr(lang, done) if done else "",
            "counts": [(tr(lang, STATE_LABELS[s]), n) for s, n in seen.counts.items()],
            "choice": choice or seen.channels,
            "problems": problems or {},
            "dead": [
                {
                    "d": d,
                    "channel": tr(lang, CHANNEL_LABELS.get(d.channel, d.channel)),
                    "message": tr(lang, TOPIC_LABELS[d.topic]) if d.topic in TOPIC_LABELS else "",
                    "recipient": shown_recipient(d),
                    "at": d.created_at.astimezone(JST).strftime("%Y-%m-%d %H:%M"),
                }
                for d in seen.dead
            ],
        },
        console,
        status=status,
    )


@console_page("admin")
async def delivery_page(request: Request, q: Form, lang: str, console: Console) -> Response:
    return await _page(request, lang, console, notice=q.get("done"))


@console_page("admin")
async def save_channels(request: Request, f: Form, lang: str, console: Console) -> Response:
    url = f.get("webhook_url").strip() or None
    choice = ChannelChoice(
        log=f.get("log") == "on",
        email=f.get("email") == "on",
        webhook=f.get("webhook") == "on",
        webhook_url=url,
    )
    try:
        changed = await delivery_admin.set_channels(ctx_of(request), console.claims, choice)
    except ChannelRefused as refused:
        problems = {refused.field: PROBLEMS[refused.field]}
        return await _page(request, lang, console, choice=choice, problems=problems, status=422)
    return see_other(link(BASE, done="channels" if changed else "unchanged", lang=lang))


@console_page("admin")
async def retry(request: Request, f: Form, lang: str, console: Console) -> Response:
    raw = str(request.path_params["delivery_id"])
    if not raw.isdigit() or len(raw) > 18:
        raise errors.NotFound()
    done = await delivery_admin.retry(ctx_of(request), console.claims, int(raw))
    return see_other(link(BASE, done="retried" if done else "gone", lang=lang))


def routes() -> list[Route]:
    return [
        Route(BASE, delivery_page, methods=["GET"]),
        Route(f"{BASE}/channels", save_channels, methods=["POST"]),
        Route(f"{BASE}/{{delivery_id}}/retry", retry, methods=["POST"]),
    ]
