"""The registry import page: a file uploaded, previewed (nothing written), applied; a replace
needs the number of removals the preview showed; bad rows are listed and nothing changes;
a file larger than the other pages' limit goes through."""

from __future__ import annotations

import re

import asyncpg
import httpx

from booking.settings import BookingSettings
from tests.booking.client import running
from tests.booking.factory import BIRTH, World, make_staff, voucher
from tests.booking.test_console_signin import csrf_of, sign_in

HEAD = "voucher_number,birth_date,municipality_code,groups\n"
FIGURE = r"<dt>{}</dt><dd>([\d,]+)</dd>"


def figure(html: str, label: str) -> int:
    found = re.search(FIGURE.format(re.escape(label)), html)
    assert found, (label, html[:3000])
    return int(found.group(1).replace(",", ""))


async def test_the_registry_import_page(
    settings: BookingSettings, db: asyncpg.Pool, world: World
) -> None:
    async with db.acquire() as conn:
        _, admin = await make_staff(conn, world.municipality, "admin")
    count = "SELECT count(*) FROM registry WHERE municipality_code = $1"
    before = await db.fetchval(count, world.municipality)
    code = world.municipality
    two_new = (
        HEAD
        + f"{voucher(0)},1940/1/2,{code},65+\n"  # known: birth date changed
        + f"{voucher(5000)},{BIRTH.isoformat()},{code},65+\n"
        + f"{voucher(5001)},{BIRTH.isoformat()},{code},65+|medical\n"
    )
    async with running(settings) as (_, client):
        assert (await sign_in(client, admin)).status_code == 303
        page = await client.get("/staff/admin/registry")
        assert page.status_code == 200
        csrf = csrf_of(page.text)

        async def send(
            body: str | bytes, *, apply: bool = False, mode: str = "merge", **extra: str
        ) -> httpx.Response:
            data = {"csrf": csrf, "mode": mode, **extra, **({"apply": "1"} if apply else {})}
            return await client.post(
                "/staff/admin/registry/import",
                data=data,
                files={"file": ("registry.csv", body, "text/csv")},
            )

        forged = await client.post(
            "/staff/admin/registry/import",
            files={"file": ("registry.csv", two_new, "text/csv")},
        )
        assert forged.status_code == 403
        empty = await client.post("/staff/admin/registry/import", data={"csrf": csrf})
        assert empty.status_code == 422 and 'href="#file"' in empty.text

        preview = await send(two_new)
        assert preview.status_code == 200, preview.text
        assert (figure(preview.text, "新しく追加"), figure(preview.text, "内容を更新")) == (2, 1)
        assert figure(preview.text, "名簿から削除") == 0
        assert await db.fetchval(count, code) == before  # a preview writes nothing
        applied = await send(two_new, apply=True)
        assert applied.status_code == 200 and "名簿に反映しました" in applied.text
        assert await db.fetchval(count, code) == before + 2

        # Replace: the preview says how many go; the apply must carry that number.
        one = HEAD + f"{voucher(1)},{BIRTH.isoformat()},{code},65+\n"
        replace = await send(one, mode="replace")
        removed = figure(replace.text, "名簿から削除")
        assert removed == before + 2 - 1
        assert f'name="expect_removed" value="{removed}"' in replace.text
        wrong = await send(
            one,
            apply=True,
            mode="replace",
            expect_removed=str(removed - 1),
        )
        assert wrong.status_code == 409 and f"{removed} 人が削除されます" in wrong.text
        assert await db.fetchval(count, code) == before + 2
        done = await send(
            one,
            apply=True,
            mode="replace",
            expect_removed=str(removed),
        )
        assert done.status_code == 200 and await db.fetchval(count, code) == 1

        # Bad rows: every one listed with its column; nothing written.
        bad = HEAD + f"12,{BIRTH.isoformat()},{code},65+\n{voucher(7)},2099-01-01,{code},65+\n"
        refused = await send(bad, apply=True)
        assert refused.status_code == 422
        assert "<code>voucher_number</code>" in refused.text
        assert "<code>birth_date</code>" in refused.text
        assert await db.fetchval(count, code) == 1

        # A file past the 1 MiB of other requests (40,000 residents, Shift_JIS as Excel
        # saves it) is read as it arrives.
        lines = [
            f"{voucher(100_000 + i)},{BIRTH.isoformat()},{code},65歳以上" for i in range(40_000)
        ]
        big = (HEAD + "\n".join(lines) + "\n").encode("cp932")
        assert len(big) > 1_048_576
        large = await send(big, apply=True)
        assert large.status_code == 200, large.text[:2000]
        assert figure(large.text, "新しく追加") == 40_000
        assert await db.fetchval(count, code) == 40_001
