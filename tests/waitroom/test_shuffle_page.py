"""A shuffle residents can check: the status tells each pre-queue resident their number and
line index, and the public page (and the README's offline script) recompute the same place."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

from tests.waitroom.conftest import T0_MS, AppFactory, FakeClock, add_event, line_of, running

JSON = {"accept": "application/json", "cookie": "x=1"}
README = Path(__file__).resolve().parents[2] / "waitroom" / "README.md"
TICKETS = 1000


def readme_script() -> str:
    """The offline check script, exactly as the waitroom README prints it."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text("utf-8"), re.S)
    found = [b for b in blocks if b.startswith("# check_place.py")]
    assert len(found) == 1, "the README's check_place.py block"
    return str(found[0])


async def test_page_and_offline_script_agree_with_the_server_for_every_ticket(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock, tmp_path: Path
) -> None:
    opens = T0_MS + 60_000
    event_id = await add_event(
        db, state="prequeue", prequeue_at_ms=T0_MS - 60_000, opens_at_ms=opens, rate=6
    )
    app = make_app()
    async with running(app) as client:
        before = await client.get(f"/events/{event_id}/shuffle")
        assert before.status_code == 200 and "開始後にもう一度ご覧ください" in before.text

        async def one() -> str:
            r = await client.post(f"/events/{event_id}/join", headers=JSON)
            assert r.json()["state"] == "prequeue"
            return str(r.json()["ticket"])

        tickets = list(await asyncio.gather(*(one() for _ in range(TICKETS))))
        clock.now = opens + 500
        await line_of(app).refresh(event_id)

        async def told(ticket: str) -> tuple[int, int]:
            body = (await client.get(f"/events/{event_id}/status", params={"t": ticket})).json()
            return int(body["prequeue_no"]), int(body["line_index"])

        server = dict(await asyncio.gather(*(told(t) for t in tickets)))
        assert sorted(server) == list(range(TICKETS))
        assert sorted(server.values()) == list(range(TICKETS))  # a permutation of the places

        page = await client.get(f"/events/{event_id}/shuffle")
        seed = re.search(r'<code id="seed">([0-9a-f]+)</code>', page.text)
        count = re.search(r'<dd id="count">(\d+)</dd>', page.text)
        assert seed is not None and count is not None and int(count.group(1)) == TICKETS

        async def checked(p: int) -> int:
            r = await client.get(f"/events/{event_id}/shuffle", params={"p": str(p)})
            found = re.search(r'data-index="(\d+)"', r.text)
            assert r.status_code == 200 and found is not None, r.text
            return int(found.group(1))

        answers = await asyncio.gather(*(checked(p) for p in range(TICKETS)))
        assert dict(enumerate(answers)) == server

        # The same, offline, with the README's script and only the published values.
        script = tmp_path / "check_place.py"
        script.write_text(readme_script(), "utf-8")
        out = subprocess.run(
            [sys.executable, str(script), seed.group(1), count.group(1), *map(str, server)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        offline = {
            int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"number (\d+): place \d+ \(line index (\d+)\)", out)
        }
        assert offline == server

        # The waiting page tells the number and links to the check.
        ticket = tickets[0]
        p, index = await told(ticket)
        wait = await client.get(f"/events/{event_id}/wait", params={"t": ticket})
        assert f"事前待機の番号 {p:,} は、くじで列の {index + 1:,} 番目になりました" in wait.text
        assert f"/events/{event_id}/shuffle?p={p}&amp;lang=ja" in wait.text


async def test_check_form_refuses_what_is_not_a_ticket_number(
    db: asyncpg.Pool, make_app: AppFactory, clock: FakeClock
) -> None:
    opens = T0_MS + 60_000
    event_id = await add_event(db, state="prequeue", prequeue_at_ms=T0_MS, opens_at_ms=opens)
    app = make_app()
    async with running(app) as client:
        for _ in range(3):
            await client.post(f"/events/{event_id}/join", headers=JSON)
        clock.now = opens + 1
        await line_of(app).refresh(event_id)
        for bad in ("3", "-1", "abc", "9" * 40):
            r = await client.get(f"/events/{event_id}/shuffle", params={"p": bad, "lang": "en"})
            assert r.status_code == 422 and "from 0 to 2" in r.text, bad
        wide = await client.get(f"/events/{event_id}/shuffle", params={"p": "２"})  # full width
        assert wide.status_code == 200 and "data-index" in wide.text
        missing = await client.get("/events/no-such-event/shuffle")
        assert missing.status_code == 404
