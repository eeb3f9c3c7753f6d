"""The call an operator is on: who is on the phone, kept on the server for the call.

Why a server-side record: booking for a caller needs their birth date at every hold
(``services.operator.hold_for_caller`` checks the registry again, as the JSON API does),
and every step is POST → 303 → GET, so something must carry the identity from one page
to the next. A URL must not (it stays in the browser's history, proxies' logs and the
screen), and a signed value is only signed, not secret: its birth date would be one
base64 decode away. So the identity stays in Redis and only an opaque call id travels
(``c=`` in links, a hidden field in forms).

Promises:

* **Bound to this console.** The record's name is the console session's own id plus the
  call id (``<session id>:call:<call id>``, under the console's key), so a call id works
  only in the browser that opened the call: another operator, or this one after signing
  out, holds a different session id and finds nothing. The name is longer than any
  console session id, so it can never pass for one (``console.resume`` refuses it).
* **Short-lived.** It lives as long as the console may stay idle and every page of the
  call starts that clock again; "End the call" deletes it at once.
* **Checked before kept.** Only a voucher and birth date the registry accepted are kept
  (``sessions.verify_resident``, the API's check and its one refusal for every failure).

It is stored through the console session store's wrappers (booking.store.redis_console:
one key per name, JSON, an idle expiry), so its key is built where every key is built.
Redis losing it ends the call; the operator finds the caller again (nothing booked is
lost: bookings live in Postgres). No Starlette here.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import date

from booking.services.console import MAX_SESSION_ID, Console
from booking.services.context import Ctx
from booking.services.sessions import MAX_MEMBERS
from booking.store import redis_console

# The caller and up to MAX_MEMBERS others of their household, as the web allows.
MAX_PEOPLE = 1 + MAX_MEMBERS
_CALL_ID = re.compile(r"[A-Za-z0-9_-]{22}")


@dataclass(frozen=True, slots=True)
class Person:
    """Someone of the call whose identity the registry accepted."""

    voucher: str
    born: date


@dataclass(frozen=True, slots=True)
class Call:
    """The call: its event (names kept for the pages) and the people it may book for,
    the caller first."""

    call_id: str
    event_id: str
    event_name_ja: str
    event_name_en: str
    people: tuple[Person, ...]

    def event_name(self, lang: str) -> str:
        return self.event_name_ja if lang == "ja" else self.event_name_en

    def person(self, raw: str | None) -> tuple[int, Person]:
        """The person ``who`` names (an index; the caller when absent or not one)."""
        index = int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) < 3 else 0
        if index >= len(self.people):
            index = 0
        return index, self.people[index]

    def index_of(self, voucher: str) -> int | None:
        return next((i for i, p in enumerate(self.people) if p.voucher == voucher), None)


def _name(console: Console, call_id: str) -> str:
    name = f"{console.session_id}:call:{call_id}"
    # Promise "never passes for a console session": resume() refuses names this long.
    assert len(name) > MAX_SESSION_ID
    return name


def _record(call: Call) -> dict[str, str]:
    return {
        "event": call.event_id,
        "event_ja": call.event_name_ja,
        "event_en": call.event_name_en,
        "people": json.dumps([[p.voucher, p.born.isoformat()] for p in call.people]),
    }


async def _save(ctx: Ctx, console: Console, call: Call) -> None:
    await redis_console.open_console(
        ctx.redis, _name(console, call.call_id), _record(call), ctx.settings.staff_idle_s * 1000
    )


async def open_call(
    ctx: Ctx, console: Console, event_id: str, names: tuple[str, str], caller: Person
) -> Call:
    """A new call for a caller the registry accepted; its id is 128 random bits."""
    call = Call(secrets.token_urlsafe(16), event_id, names[0], names[1], (caller,))
    await _save(ctx, console, call)
    return call


async def find_call(ctx: Ctx, console: Console, call_id: str) -> Call | None:
    """This console's call ``call_id``, its idle clock started again; None when it ended,
    idled out, or belongs to another console (it is not under this one's name)."""
    if not _CALL_ID.fullmatch(call_id):
        return None
    record = await redis_console.touch_console(
        ctx.redis, _name(console, call_id), ctx.settings.staff_idle_s * 1000
    )
    if record is None:
        return None
    people = tuple(
        Person(str(v), date.fromisoformat(str(b))) for v, b in json.loads(record["people"])
    )
    return Call(
        call_id,
        str(record["event"]),
        str(record.get("event_ja", "")),
        str(record.get("event_en", "")),
        people,
    )


async def add_person(ctx: Ctx, console: Console, call: Call, person: Person) -> tuple[Call, int]:
    """The call with one more person of the household (at most MAX_PEOPLE; the caller
    checks) and that person's index. Someone already on the call keeps their place."""
    known = call.index_of(person.voucher)
    if known is not None:
        return call, known
    grown = Call(
        call.call_id,
        call.event_id,
        call.event_name_ja,
        call.event_name_en,
        (*call.people, person),
    )
    # Read, then write: two tabs of one console adding two people at the same instant
    # could keep one of them; that operator looks the other up again.
    await _save(ctx, console, grown)
    return grown, len(grown.people) - 1


async def end_call(ctx: Ctx, console: Console, call_id: str) -> None:
    """The call's record is gone at once (its birth dates with it)."""
    if _CALL_ID.fullmatch(call_id):
        await redis_console.end_console(ctx.redis, _name(console, call_id))
