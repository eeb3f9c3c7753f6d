"""Resident pages against the JSON API — one command, bounded in time, loopback only:

    .venv/bin/python -m benchmarks.booking.bench_pages [--users 32] [--rounds 3]

The same real booking service (uvicorn, 1 worker, uvloop + httptools, pinned to core 0;
the load generator on core 1; embedded Redis and Postgres unpinned), the same seeded
registry, slots published through the clinic CSV import before the clock. Each round,
on fresh slots, N virtual residents each arrive with an admission pass and book one
place, until every place is sold, two ways:

  (a) json   POST /api/sessions → GET /api/slots → POST /api/holds → POST /api/bookings
  (b) pages  POST /enter (303) → GET /book/slots → POST /book/hold (303) → GET /book/review
             → POST /book/confirm (303) → GET /book/done: what a browser without
             JavaScript sends, every redirect followed, every page rendered in Japanese

A resident picks a random open slot (as residents spread over the list); a refused hold
or confirm picks another. It prints confirmed bookings per second for both (best of the
rounds), the ratio pages/json (aim ≥ 80 %), per-round ratios, the latency of one whole
booking, and the service's CPU per booking on each path. The two paths alternate which
goes first from round to round.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urlencode

import asyncpg

from benchmarks.booking.bench_confirm import (
    BIRTH,
    EVENT,
    SECRET,
    CpuMeter,
    Http,
    booking_service,
    bounded,
    clinic_of,
    pct,
    publish_slots,
    seed,
)
from machiai.tokens import AdmissionPass, Tokens

LIST_CACHE_S = 5.0


@dataclass
class Stats:
    confirmed: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    booking_ms: list[float] = field(default_factory=list)
    requests: int = 0
    listed: int = 0  # slots shown to residents (JSON search results)
    elapsed_s: float = 0.0

    @property
    def per_s(self) -> float:
        return self.confirmed / self.elapsed_s if self.elapsed_s else 0.0

    def refuse(self, code: str) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1


class Browser:
    """A keep-alive HTTP/1.1 client that posts forms and reads pages, as a browser without
    JavaScript does (no cookies: the session rides in the URL and the forms)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """(status, Location, body)"""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        payload = b"" if form is None else urlencode(form).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: booking\r\nAccept-Language: ja\r\n"
            f"Content-Length: {len(payload)}\r\n"
        )
        if form is not None:
            head += "Content-Type: application/x-www-form-urlencoded\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        status = int((await self.reader.readline()).split()[1])
        length, location = 0, ""
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "location":
                location = value.strip()
        body = await self.reader.readexactly(length) if length else b""
        return status, location, body.decode("utf-8", "replace")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


def fields_of(html: str, action: str) -> dict[str, str]:
    """The hidden fields of the first form posting to ``action``."""
    form = re.search(rf'<form method="post" action="{action}"[^>]*>(.*?)</form>', html, re.S)
    if form is None:
        raise RuntimeError(f"no form {action} in page")
    return {
        unescape(n): unescape(v)
        for n, v in re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(1))
    }


def new_pass(tokens: Tokens) -> str:
    return tokens.dump_pass(AdmissionPass(EVENT, uuid.uuid4().hex, uuid.uuid4().hex))


async def book_json(client: Http, stats: Stats, tokens: Tokens, voucher: str, slots: list[str]
                    ) -> None:  # fmt: skip
    status, body = await client.request(
        "POST",
        "/api/sessions",
        {"pass": new_pass(tokens), "voucher": voucher, "birth_date": BIRTH.isoformat()},
    )
    stats.requests += 1
    if status != 201:
        raise RuntimeError(f"session refused: {status} {body}")
    session = str(body["session"])
    status, body = await client.request("GET", "/api/slots", None, session)
    stats.requests += 1
    if status != 200:
        raise RuntimeError(f"search refused: {status} {body}")
    stats.listed += len(body["slots"])  # type: ignore[arg-type]
    while slots:
        slot = random.choice(slots)
        status, body = await client.request("POST", "/api/holds", {"slot_id": slot}, session)
        stats.requests += 1
        if status != 201:
            code = str(body.get("error", {}).get("code"))  # type: ignore[attr-defined]
            stats.refuse(code)
            if code == "slot_full" and slot in slots:
                slots.remove(slot)
            continue
        status, body = await client.request(
            "POST", "/api/bookings", {"hold_id": body["hold_id"]}, session
        )
        stats.requests += 1
        if status == 201:
            stats.confirmed += 1
            return
        stats.refuse(str(body.get("error", {}).get("code")))  # type: ignore[attr-defined]


async def book_pages(
    client: Browser, stats: Stats, tokens: Tokens, voucher: str, slots: list[str]
) -> None:
    async def follow(status: int, location: str) -> str:
        if status != 303:
            raise RuntimeError(f"expected a redirect, got {status}")
        code, _, body = await client.send("GET", location)
        stats.requests += 1
        if code != 200:
            raise RuntimeError(f"{location}: {code}")
        return body

    status, location, body = await client.send(
        "POST",
        "/enter",
        {
            "pass": new_pass(tokens),
            "voucher": voucher,
            "year": str(BIRTH.year),
            "month": str(BIRTH.month),
            "day": str(BIRTH.day),
        },
    )
    stats.requests += 1
    if status != 303:
        raise RuntimeError(f"sign-in refused: {status} {body[:300]}")
    page = await follow(status, location)
    session = fields_of(page, "/book/hold")["s"] if "/book/hold" in page else ""
    if not session:
        session = re.search(r"s=([^&\"]+)", location).group(1)  # type: ignore[union-attr]
    while slots:
        slot = random.choice(slots)
        status, location, _ = await client.send(
            "POST", "/book/hold", {"s": session, "slot_id": slot, "lang": "ja"}
        )
        stats.requests += 1
        if "/book/slots" in location:
            code = re.search(r"notice=([a-z_]+)", location)
            stats.refuse(code.group(1) if code else "?")
            if code and code.group(1) == "slot_full" and slot in slots:
                slots.remove(slot)
            await follow(status, location)
            continue
        review = await follow(status, location)
        status, location, _ = await client.send(
            "POST", "/book/confirm", fields_of(review, "/book/confirm")
        )
        stats.requests += 1
        done = await follow(status, location)
        if "/book/done" in location and "panel-success" in done:
            stats.confirmed += 1
            return
        code = re.search(r"notice=([a-z_]+)", location)
        stats.refuse(code.group(1) if code else "?")


async def run(users: int, vouchers: list[str], slots: list[str], path: str, port: int) -> Stats:
    """``users`` virtual residents, each on its own keep-alive connection, book one place
    after another until every place is sold."""
    stats = Stats()
    queue = list(vouchers)
    open_slots = list(slots)
    tokens = Tokens([SECRET])

    async def resident() -> None:
        client: Http | Browser = (Http if path == "json" else Browser)("127.0.0.1", port)
        try:
            while queue and open_slots:
                voucher = queue.pop()
                t0 = time.perf_counter()
                before = stats.confirmed
                if isinstance(client, Http):
                    await book_json(client, stats, tokens, voucher, open_slots)
                else:
                    await book_pages(client, stats, tokens, voucher, open_slots)
                if stats.confirmed > before:
                    stats.booking_ms.append((time.perf_counter() - t0) * 1000)
        finally:
            await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(resident() for _ in range(users)))
    stats.elapsed_s = time.perf_counter() - started
    return stats


def _summary(path: str, stats: Stats, cpu_us: float) -> str:
    per = max(1, stats.confirmed)
    return (
        f"{path} {stats.per_s:,.0f}/s ({stats.requests / per:.1f} requests and "
        f"{stats.listed / per:.0f} slots listed per booking, service CPU {cpu_us:,.0f} µs per "
        f"booking, refusals {stats.refused})"
    )


async def main_async(args: argparse.Namespace, dsn: str, port: int, server_pid: int) -> None:
    meter = CpuMeter({"service": server_pid})
    per_round = args.slots * args.capacity
    stride = 2 * per_round + 200
    residents = stride * (args.rounds + 1)
    await seed(dsn, residents)
    clinic = await clinic_of(dsn)
    vouchers = [f"{i:010d}" for i in range(residents)]
    best: dict[str, Stats] = {}
    ratios: list[float] = []
    times: dict[str, list[float]] = {"json": [], "pages": []}
    for n in range(args.rounds + 1):
        json_slots = await publish_slots(port, clinic, args.slots, args.capacity, 2 + 8 * n)
        page_slots = await publish_slots(port, clinic, args.slots, args.capacity, 6 + 8 * n)
        # Residents' searches see a slot list at most ``public_cache_s`` (5 s) old: start the
        # clock once the new slots are in it, as they are long before a real opening.
        await asyncio.sleep(LIST_CACHE_S + 0.5)
        base = n * stride
        json_vouchers = vouchers[base : base + per_round + 100]
        page_vouchers = vouchers[base + per_round + 100 : base + 2 * per_round + 200]
        results: dict[str, Stats] = {}
        cpu: dict[str, float] = {}
        order = ["json", "pages"] if n % 2 == 0 else ["pages", "json"]
        for path in order:
            meter.start()
            stats = await run(
                args.users,
                json_vouchers if path == "json" else page_vouchers,
                json_slots if path == "json" else page_slots,
                path,
                port,
            )
            cpu[path] = meter.per_booking_us(stats.confirmed)["service"]
            results[path] = stats
            assert stats.confirmed == per_round, (path, stats.confirmed, stats.refused)
        ratio = results["pages"].per_s / results["json"].per_s
        label = "warm-up" if n == 0 else f"round {n}"
        print(
            f"{label}: pages/json {ratio:.0%}; "
            + "; ".join(_summary(p, results[p], cpu[p]) for p in ("json", "pages")),
            flush=True,
        )
        if n == 0:
            continue
        ratios.append(ratio)
        for p in ("json", "pages"):
            times[p].extend(results[p].booking_ms)
            if p not in best or results[p].per_s > best[p].per_s:
                best[p] = results[p]
    conn = await asyncpg.connect(dsn)
    try:
        oversold = await conn.fetchval("SELECT count(*) FROM slots WHERE booked > capacity")
    finally:
        await conn.close()
    print()
    print(f"slots per round per path: {args.slots} x capacity {args.capacity}; users {args.users}")
    print(f"JSON API  : {best['json'].per_s:8,.0f} confirmed/s (best)")
    print(f"pages     : {best['pages'].per_s:8,.0f} confirmed/s (best)")
    print(
        f"ratio pages/json (best / best): {best['pages'].per_s / best['json'].per_s:.1%}; "
        f"median per round {sorted(ratios)[len(ratios) // 2]:.1%}   (aim >= 80 %)"
    )
    for p in ("json", "pages"):
        print(
            f"one booking, {p:5}: p50 {pct(times[p], 0.5):.0f} ms, p99 {pct(times[p], 0.99):.0f} ms"
        )
    print(f"oversold slots: {oversold}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--slots", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-s", type=float, default=300.0, help="stop after this long")
    args = parser.parse_args()
    with booking_service() as service:
        asyncio.run(bounded(main_async(args, service.dsn, service.port, service.pid), args.max_s))


if __name__ == "__main__":
    main()
