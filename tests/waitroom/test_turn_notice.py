"""Issue 15, "your turn is near": opt-ins on the waiting page's own form, one outbox row per
opt-in before its turn (1,000 opt-ins, admission at a fixed rate on an injected clock, two
notifiers at once), none lost when a notifier dies between claim and write or its write
fails, and a longer grace for those who asked."""

from __future__ import annotations

import asyncio
import json
import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from machiai.tokens import Tokens
from tests.waitroom.conftest import (
    T0_MS,
    AppFactory,
    FakeClock,
    add_event,
    line_of,
    running,
    store_of,
)
from waitroom.services.turn_notice import LEASE_MS, TurnNotifier, notify_event
from waitroom.settings import WaitroomSettings
from waitroom.store import pg_turn_notices
from waitroom.store.pg_turn_notices import TOPIC
from waitroom.store.redis_store import RedisStore

JSON = {"accept": "application/json", "cookie": "x=1"}


async def join(client: httpx.AsyncClient, event_id: str) -> dict[str, object]:
    r = await client.post(f"/events/{event_id}/join", headers=JSON)
    assert r.status_code == 201, r.text
    body: dict[str, object] = r.json()
    return body


async def opt_in(
    client: httpx.AsyncClient, event_id: str, ticket: str, **fields: str
) -> httpx.Response:
    return await client.post(
        f"/events/{event_id}/notify", data={"t": ticket, "lang": "ja", **fields}
    )


async def notices(db: asyncpg.Pool) -> list[dict[str, object]]:
    rows = await db.fetch("SELECT payload::text FROM outbox WHERE topic = $1 ORDER BY id", TOPIC)
    return [json.loads(r["payload"]) for r in rows]


def token_of(payload: dict[str, object]) -> str:
    return parse_qs(urlsplit(str(payload["link"])).query)["t"][0]


async def test_a_thousand_opt_ins_each_get_one_message_before_their_turn(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock, settings: WaitroomSettings
) -> None:
    event_id = await add_event(db, rate=600, cap=100_000)  # 10 admitted per second
    app = make_app(notify_lead_s=10)  # the message 10 s (100 places) before the turn
    tokens = Tokens(settings.core.secret_keys)
    async with running(app) as client:
        joined = [await join(client, event_id) for _ in range(1010)]
        index = {
            str(j["ticket"]): tokens.load_ticket(str(j["ticket"]), 3600).arrival_no for j in joined
        }
        # The first ones went straight through (the safety net): no message for them.
        early = [j for j in joined if j["state"] == "admitted"]
        assert early
        refused = await opt_in(client, event_id, str(early[0]["ticket"]), email="a@example.jp")
        assert refused.status_code == 409 and "もう順番が来ている" in refused.text
        waiting = [str(j["ticket"]) for j in joined if j["state"] == "waiting"][:1000]
        assert len(waiting) == 1000
        for i, ticket in enumerate(waiting):
            kind = {"webhook_id": f"line-{i}"} if i % 10 == 0 else {"email": f"r{i}@example.jp"}
            r = await opt_in(client, event_id, ticket, **kind)
            assert r.status_code == 303, r.text
        # Two notifiers at once (two processes), each with its own Redis connection.
        line, store = line_of(app), store_of(app)
        other_store = RedisStore(store.client, store.prefix)
        writer = app.state.notifier.write
        notifiers = [
            app.state.notifier,
            TurnNotifier(line, other_store, writer, app.state.notifier.settings),
        ]
        # When each ticket's row was written: the admitted counter at that moment.
        written_at: dict[str, int] = {}
        try:
            snap = await line.refresh(event_id)
            for _ in range(200):
                # A notifier round, then a second of admission (each process runs both).
                admitted = snap.live.admitted
                await asyncio.gather(*(n.run_once(clock()) for n in notifiers))
                for p in await notices(db):
                    written_at.setdefault(token_of(p), admitted)
                if admitted > max(index.values()):
                    break
                clock.advance(1)
                snap = await line.refresh(event_id)
        finally:
            await other_store.aclose()
        rows = await notices(db)
        assert sorted(token_of(p) for p in rows) == sorted(waiting)  # each once, none lost
        for ticket, admitted in written_at.items():
            assert index[ticket] >= admitted, (index[ticket], admitted)  # before the turn
        assert {p["municipality_code"] for p in rows} == {"131001"}
        first = next(p for p in rows if "email" in p)
        assert set(first) == {"event_id", "municipality_code", "locale", "email", "link", "ahead"}
        assert str(first["link"]).startswith(f"{settings.public_url}/events/{event_id}/wait?t=")
        assert isinstance(first["ahead"], int) and 0 <= first["ahead"] <= 110
        assert sum("webhook_id" in p for p in rows) == 100
        # The addresses are gone from Redis once written.
        # SCAN, not KEYS: on a cluster KEYS asks one node.
        assert [k async for k in store.client.scan_iter(f"{store.prefix}*optin*")] == []


async def test_a_notifier_that_dies_or_fails_loses_none_and_writes_none_twice(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock, settings: WaitroomSettings
) -> None:
    event_id = await add_event(db, rate=60, cap=100_000)
    app = make_app(notify_lead_s=600)  # every waiting opt-in is near
    async with running(app) as client:
        joined = [await join(client, event_id) for _ in range(12)]
        waiting = [str(j["ticket"]) for j in joined if j["state"] == "waiting"]
        for i, ticket in enumerate(waiting):
            assert (
                await opt_in(client, event_id, ticket, email=f"x{i}@example.jp")
            ).status_code == 303
        line, store = line_of(app), store_of(app)
        snap = await line.refresh(event_id)
        settings = app.state.notifier.settings
        # A notifier claims and dies before writing: the claims stay leased...
        _, taken = await store.claim_optins(
            event_id, lead=100, most=5, lease_ms=LEASE_MS, now_ms=clock()
        )
        assert len(taken) == 5
        # ...another one's write fails (Postgres down): its claims go back at once.

        async def broken(event: str, rows: object) -> int:
            raise ConnectionResetError("postgres went away")

        with pytest.raises(ConnectionResetError):
            await notify_event(store, broken, snap, settings, clock())
        # A third one dies after writing, before settling: written, still leased.
        _, again = await store.claim_optins(
            event_id, lead=100, most=100, lease_ms=LEASE_MS, now_ms=clock()
        )
        assert {t for t, _ in again}.isdisjoint({t for t, _ in taken})
        assert len(taken) + len(again) == len(waiting)
        from waitroom.services.turn_notice import payload

        await pg_turn_notices.write_turn_notices(
            db, event_id, [(t, payload(snap, settings, d, 0)) for t, d in again]
        )
        assert len(await notices(db)) == len(again)
        # Within the lease nothing is handed out again; after it, everything is, once.
        assert await app.state.notifier.run_once(clock()) == 0
        clock.advance(LEASE_MS / 1000 + 1)
        await line.refresh(event_id)
        assert await app.state.notifier.run_once(clock()) == len(waiting)
        rows = await notices(db)
        assert sorted(token_of(p) for p in rows) == sorted(waiting)
        assert await app.state.notifier.run_once(clock()) == 0


async def test_the_turn_of_a_resident_who_asked_waits_longer(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock
) -> None:
    event_id = await add_event(db, rate=60, cap=100_000)
    app = make_app(grace_s=60, notify_extra_grace_s=120)
    async with running(app) as client:
        first = await join(client, event_id)
        assert first["state"] == "admitted"
        asked, late, not_asked = [str((await join(client, event_id))["ticket"]) for _ in "abc"]
        for ticket in (asked, late):
            assert (await opt_in(client, event_id, ticket, email="k@example.jp")).status_code == 303
        for _ in range(4):
            clock.advance(1)
            await line_of(app).refresh(event_id)

        async def enter(ticket: str) -> int:
            r = await client.post(
                f"/events/{event_id}/enter", headers={**JSON, "x-machiai-ticket": ticket}
            )
            return r.status_code

        clock.advance(90)  # past the grace (60 s), inside grace + extra (180 s)
        await line_of(app).refresh(event_id)
        assert await enter(not_asked) == 410
        assert await enter(asked) == 200
        # The status poll and the waiting page, for a turn that looks expired only, ask
        # once and tell the longer grace: the way in, with the time left.
        status = await client.get(f"/events/{event_id}/status", params={"t": late})
        assert status.json()["state"] == "admitted", status.json()
        plain = await client.get(f"/events/{event_id}/status", params={"t": not_asked})
        assert plain.json()["state"] == "expired"
        page = await client.get(f"/events/{event_id}/wait", params={"t": late})
        # The page keeps polling: its poll (above) says the same as the page now.
        assert f'href="/events/{event_id}/enter?t=' in page.text and "wait-data" in page.text
        gone = await client.get(f"/events/{event_id}/wait", params={"t": not_asked})
        assert f"/events/{event_id}/enter?t=" not in gone.text
        clock.advance(120)  # past grace + extra too
        await line_of(app).refresh(event_id)
        assert await enter(late) == 410
        page = await client.get(f"/events/{event_id}/wait", params={"t": late})
        assert f"/events/{event_id}/enter?t=" not in page.text


async def test_the_waiting_page_links_to_the_form_which_explains_and_refuses_in_words(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock
) -> None:
    event_id = await add_event(db, rate=60, cap=100_000)
    async with running(make_app()) as client:
        await join(client, event_id)
        ticket = str((await join(client, event_id))["ticket"])
        page = await client.get(f"/events/{event_id}/wait", params={"t": ticket})
        link = re.search(r'href="(/events/[^"]+/notify\?[^"]+)"', page.text)
        assert link and "順番が近づいたらお知らせを受け取る" in page.text
        form = await client.get(unescape(link.group(1)))
        assert form.status_code == 200 and 'autocomplete="email"' in form.text
        assert "約 5 分前" in form.text and "10 分長く" in form.text
        english = await client.get(unescape(link.group(1)).replace("lang=ja", "lang=en"))
        assert "Get a message when your turn is near" in english.text
        # Nothing given, both given, a bad address: the form again with the words (422).
        for fields, words in (
            ({}, "メールアドレスを入力してください"),
            ({"email": "a@example.jp", "webhook_id": "x"}, "どちらか一方"),
            ({"email": "taro@example"}, "メールアドレスを入力してください"),
            ({"webhook_id": "bad id!"}, "64 文字まで"),
        ):
            r = await opt_in(client, event_id, ticket, **fields)
            assert r.status_code == 422 and words in r.text and "error-summary" in r.text
            assert 'aria-invalid="true"' in r.text
        assert (
            'value="taro@example"'
            in (await opt_in(client, event_id, ticket, email="taro@example")).text
        )
        ok = await opt_in(client, event_id, ticket, email="ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ")
        assert ok.status_code == 303 and "notify=saved" in ok.headers["location"]
        back = await client.get(ok.headers["location"])
        assert "順番が近づいたらお知らせを送ります" in back.text
        # A ticket that is not one: refused in words, no form.
        bad = await opt_in(client, event_id, "nonsense", email="a@example.jp")
        assert bad.status_code == 403 and "<form" not in bad.text
        # The status poll is untouched: no opt-in field, no Redis call for it.
        status = await client.get(f"/events/{event_id}/status", params={"t": ticket})
        assert "notify" not in status.text


async def test_an_opt_in_waits_for_the_draw_before_opening(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock
) -> None:
    event_id = await add_event(db, state="prequeue", opens_at_ms=T0_MS + 3600_000)
    async with running(make_app()) as client:
        ticket = str((await join(client, event_id))["ticket"])
        r = await opt_in(client, event_id, ticket, email="a@example.jp")
        assert r.status_code == 409 and "受付開始後に申し込めます" in r.text
