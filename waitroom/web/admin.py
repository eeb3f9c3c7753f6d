"""The municipal admin API (staff token, role admin, own municipality), and the public shuffle seed.

POST  /admin/events                     create (state scheduled)
PATCH /admin/events/{event_id}          change rate, cap, times, names, phone share live
POST  /admin/events/{event_id}/pause | /resume | /close
GET   /admin/events/{event_id}/stats    live numbers of the line
GET   /events/{event_id}/prequeue-seed  public, after opening: audit the shuffle
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from machiai.staff_generation import StaffGenerations, reader
from machiai.tokens import TokenError
from waitroom.errors import Forbidden, InvalidInput, NotAdmittedYet, Unauthorized
from waitroom.services import manage_event
from waitroom.services.manage_event import Actor
from waitroom.services.prequeue_shuffle import ALGORITHM
from waitroom.web.common import event_id_of, waitroom
from waitroom.web.join import bounded_body

MAX_BODY_BYTES = 16_384


async def actor_of(request: Request) -> Actor:
    """The municipal admin behind the request: a valid admin token whose staff row still
    stands behind it (active, still admin, same generation)."""
    wr = waitroom(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or len(token) > 1024:
        raise Unauthorized()
    try:
        claims = wr.tokens.load_staff(token.strip(), wr.settings.core.staff_token_ttl_s)
    except TokenError as exc:
        code = "unauthorized" if exc.code == "token_invalid" else exc.code
        raise Unauthorized(code=code) from None
    if claims.role != "admin":
        raise Forbidden()  # whatever the row says: no read for a token refused anyway
    # Promise (machiai/staff_generation.py): deactivating, a role change, a new password or
    # signing out in booking stops this admin's tokens here within CHECK_TTL_S too.
    if not await staff_generations(request).admits(claims):
        raise Unauthorized()
    return Actor(claims, request.headers.get("x-request-id"))


def staff_generations(request: Request) -> StaffGenerations:
    """This app's memory of staff standing, made at its first admin request (one per
    process and app, on the app's pool)."""
    state = request.app.state
    found: StaffGenerations | None = getattr(state, "staff_generations", None)
    if found is None:
        found = StaffGenerations(reader(state.db, waitroom(request).settings.db_timeout_s))
        state.staff_generations = found
    return found


async def json_body(request: Request) -> Any:
    raw = await bounded_body(request, MAX_BODY_BYTES)
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        raise InvalidInput("Malformed JSON body.", "送信データの形式が正しくありません。") from None


async def create(request: Request) -> Response:
    actor = await actor_of(request)
    event = await manage_event.create_event(request.app.state.db, actor, await json_body(request))
    return JSONResponse({"event": event}, status_code=201)


async def update(request: Request) -> Response:
    actor = await actor_of(request)
    wr = waitroom(request)
    event = await manage_event.change_event(
        request.app.state.db, wr.store, wr.line, actor, event_id_of(request),
        data=await json_body(request),
    )  # fmt: skip
    return JSONResponse({"event": event})


def state_action(action: str) -> Any:
    async def endpoint(request: Request) -> Response:
        actor = await actor_of(request)
        wr = waitroom(request)
        event = await manage_event.change_event(
            request.app.state.db, wr.store, wr.line, actor, event_id_of(request), action=action
        )
        return JSONResponse({"event": event})

    return endpoint


async def stats(request: Request) -> Response:
    actor = await actor_of(request)
    wr = waitroom(request)
    event_id = event_id_of(request)
    body = await manage_event.event_stats(request.app.state.db, wr.line, actor, event_id)
    return JSONResponse(body)


async def prequeue_seed(request: Request) -> Response:
    """The shuffle's inputs, once frozen at opening: anyone can recompute every place."""
    wr = waitroom(request)
    event_id = event_id_of(request)
    snap = await wr.line.fresh_snapshot(event_id)
    live = snap.live
    if live.n_pre is None or live.seed is None:
        raise NotAdmittedYet(
            "The pre-queue is shuffled at opening; the seed is published then.",
            "事前待機の順番は受付開始時に決まります。シードはその後に公開します。",
            code="not_opened_yet",
        )
    return JSONResponse(
        {
            "event_id": event_id,
            "prequeue_count": live.n_pre,
            "seed": live.seed,
            "opened_at_ms": live.opened_ms,
            "algorithm": ALGORITHM,
        }
    )


def routes() -> list[Route]:
    return [
        Route("/admin/events", create, methods=["POST"]),
        Route("/admin/events/{event_id}", update, methods=["PATCH"]),
        Route("/admin/events/{event_id}/stats", stats, methods=["GET"]),
        *[
            Route(f"/admin/events/{{event_id}}/{action}", state_action(action), methods=["POST"])
            for action in ("pause", "resume", "close")
        ],
        Route("/events/{event_id}/prequeue-seed", prequeue_seed, methods=["GET"]),
    ]
