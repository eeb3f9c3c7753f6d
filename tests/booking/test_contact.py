"""Issue 15: a resident's e-mail address for messages, given with the confirm (pages and
JSON API) or afterwards on the done page; stored with the booking in the confirm's own
statement, kept by a change unless a new one is given, and gone with the purge."""

from __future__ import annotations

import asyncpg
import httpx

from booking import errors
from booking.services.confirm import Contact, confirm_booking
from booking.services.context import Ctx
from booking.services.hold import hold_slot
from booking.services.inventory import rebuild_inventory
from booking.settings import BookingSettings
from tests.booking.client import code, open_session, running
from tests.booking.factory import BIRTH, World, make_slot, voucher
from tests.booking.helpers import pg_slot, resident, web
from tests.booking.test_pages import follow, forms, sign_in


async def contact_row(db: asyncpg.Pool, booking_id: str) -> tuple[str | None, str, str]:
    row = await db.fetchrow(
        "SELECT contact_email, contact_locale, status::text FROM bookings WHERE id = $1::uuid",
        booking_id,
    )
    assert row is not None
    return row["contact_email"], row["contact_locale"], row["status"]


async def review_page(client: httpx.AsyncClient, settings: BookingSettings, world: World, n: int
                      ) -> httpx.Response:  # fmt: skip
    slots = await sign_in(client, settings, world.event_id, n)
    assert slots.status_code == 200, slots.text
    hold_form = forms(slots.text, "/book/hold")[0]
    slot_id = slots.text.split('name="slot_id" value="', 1)[1].split('"', 1)[0]
    return await follow(
        client, await client.post("/book/hold", data={**hold_form, "slot_id": slot_id})
    )


async def test_the_review_page_takes_an_address_refuses_a_bad_one_and_keeps_what_was_typed(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        slot = await make_slot(conn, world.clinic_id, world.event_id, 2, days=2)
    async with running(settings) as (app, client):
        await rebuild_inventory(app.state.ctx)
        review = await review_page(client, settings, world, 1)
        assert review.status_code == 200
        assert 'name="email"' in review.text and 'autocomplete="email"' in review.text
        confirm = forms(review.text, "/book/confirm")[0]
        # Not an address: the review again (422), the typed text kept, nothing booked.
        bad = await client.post("/book/confirm", data={**confirm, "email": "taro@example"})
        assert bad.status_code == 422
        assert 'value="taro@example"' in bad.text and 'aria-invalid="true"' in bad.text
        assert "メールアドレスを入力するか" in bad.text and "error-summary" in bad.text
        assert await db.fetchval("SELECT count(*) FROM bookings") == 0
        assert await pg_slot(db, slot) == (2, 0)
        # Its language switch leads back to the review, not to a 405.
        switch = bad.text.split('hreflang="en"', 1)[0].rsplit('href="', 1)[1].split('"')[0]
        back = await client.get(switch.replace("&amp;", "&"))
        assert back.status_code == 303 and back.headers["location"].startswith("/book/review?")
        # A full-width address typed on a Japanese keyboard is read as ASCII; English page.
        again = forms(bad.text, "/book/confirm")[0]
        done = await follow(
            client,
            await client.post(
                "/book/confirm",
                data={**again, "lang": "en", "email": " ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ "},
            ),
        )
        assert done.status_code == 200, done.text
        booking_id = done.text.split('name="b" value="', 1)[1].split('"', 1)[0]
        assert await contact_row(db, booking_id) == ("taro@example.jp", "en", "confirmed")
        assert "taro@example.jp" in done.text
        # Another address afterwards, from the done page (its own booking, its session).
        form = forms(done.text, "/book/contact")[0]
        bad_later = await client.post("/book/contact", data={**form, "email": "no at sign"})
        assert bad_later.status_code == 422 and 'value="no at sign"' in bad_later.text
        empty = await client.post("/book/contact", data={**form, "email": ""})
        assert empty.status_code == 422
        saved = await follow(
            client, await client.post("/book/contact", data={**form, "email": "hanako@example.jp"})
        )
        assert saved.status_code == 200 and "hanako@example.jp" in saved.text
        assert "The address was saved." in saved.text
        assert await contact_row(db, booking_id) == ("hanako@example.jp", "en", "confirmed")


async def test_no_address_sends_nothing_and_one_can_be_added_only_to_ones_own_booking(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        await make_slot(conn, world.clinic_id, world.event_id, 3, days=2)
    async with running(settings) as (app, client):
        await rebuild_inventory(app.state.ctx)
        review = await review_page(client, settings, world, 2)
        done = await follow(
            client, await client.post("/book/confirm", data=forms(review.text, "/book/confirm")[0])
        )
        assert done.status_code == 200
        assert "メールアドレスが登録されていない" in done.text
        mine = forms(done.text, "/book/contact")[0]
        assert await contact_row(db, mine["b"]) == (None, "ja", "confirmed")
        # Another resident's session cannot set an address on this booking.
        other = await review_page(client, settings, world, 3)
        other_s = forms(other.text, "/book/confirm")[0]["s"]
        refused = await client.post(
            "/book/contact", data={**mine, "s": other_s, "email": "mallory@example.jp"}
        )
        assert refused.status_code == 404
        assert await contact_row(db, mine["b"]) == (None, "ja", "confirmed")


async def test_a_change_keeps_the_address_unless_a_new_one_is_given(
    ctx: Ctx, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        slots = [
            await make_slot(conn, world.clinic_id, world.event_id, 2, days=d) for d in (2, 3, 4)
        ]
    await rebuild_inventory(ctx)
    actor, who = web(world.municipality, world.event_id), resident(world.municipality, 4)

    async def book(slot: str, contact: Contact | None, replaces: str | None = None) -> str:
        held = await hold_slot(ctx, actor, who, slot)
        done = await confirm_booking(
            ctx, actor, who, held.hold_id, replaces=replaces, contact=contact
        )
        return str(done["booking"]["booking_id"])

    first = await book(slots[0], Contact("taro@example.jp", "en"))
    kept = await book(slots[1], None, replaces=first)
    assert await contact_row(db, kept) == ("taro@example.jp", "en", "confirmed")
    assert (await contact_row(db, first))[2] == "cancelled"
    moved = await book(slots[2], Contact("jiro@example.jp", "ja"), replaces=kept)
    assert await contact_row(db, moved) == ("jiro@example.jp", "ja", "confirmed")


async def test_the_json_api_takes_an_optional_address(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        slot = await make_slot(conn, world.clinic_id, world.event_id, 2, days=2)
    async with running(settings) as (app, client):
        await rebuild_inventory(app.state.ctx)
        auth = await open_session(client, settings, world.event_id, voucher(5), BIRTH.isoformat())
        hold = (await client.post("/api/holds", json={"slot_id": slot}, headers=auth)).json()
        for bad in ("taro@", "a b@example.jp", "taro@example.jp\n", 12):
            r = await client.post(
                "/api/bookings", json={"hold_id": hold["hold_id"], "email": bad}, headers=auth
            )
            assert r.status_code == 422 and code(r) == "invalid_input", (bad, r.text)
            assert r.json()["error"]["message"]
        r = await client.post(
            "/api/bookings",
            json={"hold_id": hold["hold_id"], "email": "taro@example.jp", "locale": "en"},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        assert "contact_email" not in r.json()["booking"]  # the answer and the audit omit it
        booking_id = r.json()["booking"]["booking_id"]
        assert await contact_row(db, booking_id) == ("taro@example.jp", "en", "confirmed")
        audit = await db.fetchval("SELECT after::text FROM audit_log WHERE target = $1", booking_id)
        assert "taro@example.jp" not in audit


async def test_the_purge_clears_the_address_with_the_voucher_number(db: asyncpg.Pool) -> None:
    from machiai.purge import purge_personal_data
    from tests.machiai.test_purge import TODAY, seed

    await seed(db)
    await db.execute("UPDATE bookings SET contact_email = 'r' || voucher_number || '@example.jp'")
    async with db.acquire() as conn:
        await purge_personal_data(conn, TODAY, apply=True)
    rows = await db.fetch("SELECT voucher_number, contact_email, purged_at FROM bookings")
    purged = [r for r in rows if r["purged_at"] is not None]
    kept = [r for r in rows if r["purged_at"] is None]
    assert purged and kept
    assert all(r["contact_email"] is None for r in purged)
    assert all(r["contact_email"] == f"r{r['voucher_number']}@example.jp" for r in kept)


async def test_the_address_rule_is_the_same_for_the_page_and_the_api() -> None:
    from machiai import contact

    assert contact.email_address("ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ") == "taro@example.jp"
    for bad in (
        "",
        "taro",
        "taro@example",
        "taro@@example.jp",
        ".taro@example.jp",
        "taro@-example.jp",
        "a" * 65 + "@example.jp",
        "taro@" + "a" * 250 + ".jp",
    ):
        assert contact.email_address(bad) is None, bad
        assert not contact.EMAIL.match(bad), bad
    assert contact.EMAIL.match("a" * 64 + "@example.jp")
    assert errors.NoBooking.status == 404
