"""``machiai export``: the vaccination ledger and a clinic's day list as files, from the
command line, on DATABASE_URL (else the embedded Postgres, as ``machiai purge`` opens it).

The bytes are the ones the API and the consoles download (booking/services/exports.py,
booking/console/clinic_day.py). A file given with ``--output`` appears whole or not at all:
it is written beside itself and renamed at the end. Bad arguments are one line on stderr
and exit 2, before anything is read; a ledger export is audited (``booking.export.ledger``,
actor ``machiai export``) like a download.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import IO, NoReturn

import asyncpg

from booking import errors
from booking.services import exports
from booking.services.csv_export import CsvEncoding
from machiai import inputs
from machiai.backends import open_backends
from machiai.settings import RunnerSettings

MUNICIPALITY = re.compile(inputs.MUNICIPALITY_CODE_PATTERN)
# Pieces are written as they come; the pool needs one connection to read and one for the
# audit entry (committed before the first row leaves).
POOL_SIZE = 2


class Refused(Exception):
    """Bad arguments or nothing to export: one line on stderr, exit 2."""


class _OneLineParser(argparse.ArgumentParser):
    """A parser whose refusal is one line (``machiai export ledger: …``) and exit 2, like
    every other refusal of the command, instead of argparse's usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _day(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {raw!r}") from None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser(
        "export",
        help="write the vaccination ledger or a clinic's day list as CSV",
        description="Files a city hands on, on DATABASE_URL (else the embedded Postgres). "
        "UTF-8 with a byte-order mark by default, Shift_JIS (cp932) with --encoding "
        "shift_jis; formula-like cells are escaped. A bad argument is one line on stderr "
        "and exit 2.",
    )
    kinds = export.add_subparsers(
        dest="export_command", required=True, metavar="COMMAND", parser_class=_OneLineParser
    )
    ledger = kinds.add_parser(
        "ledger",
        help="attended vaccinations of a municipality, for its vaccination ledger",
        description="Every vaccination recorded as attended whose appointment fell on a day "
        "of [--from, --to] (Japan time), one row each: "
        + ",".join(exports.LEDGER_HEADER)
        + ". Streamed (any number of rows); audited as booking.export.ledger.",
    )
    ledger.add_argument("--municipality", required=True, metavar="CODE", help="6 digits")
    ledger.add_argument("--from", dest="first", required=True, type=_day, metavar="DATE")
    ledger.add_argument("--to", dest="last", required=True, type=_day, metavar="DATE")
    _file_arguments(ledger)
    ledger.set_defaults(func=_cmd_ledger)
    day_list = kinds.add_parser(
        "day-list",
        help="a clinic's bookings of a day (the clinic console's CSV)",
        description="The clinic's bookings of DATE (Japan time), as the clinic console's "
        "download: time, the voucher's last 4 digits, dose, vaccine, status, lot number.",
    )
    day_list.add_argument("--clinic", required=True, metavar="CLINIC_UUID")
    day_list.add_argument("--date", required=True, type=_day, metavar="DATE")
    day_list.add_argument(
        "--lang", choices=("ja", "en"), default="ja", help="column names and states (ja)"
    )
    _file_arguments(day_list)
    day_list.set_defaults(func=_cmd_day_list)


def _file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoding",
        choices=[e.value for e in CsvEncoding],
        default=CsvEncoding.UTF8.value,
        help="utf-8 (with a byte-order mark, default) or shift_jis (cp932)",
    )
    parser.add_argument(
        "--output", default="-", metavar="FILE", help="where to write (default -: stdout)"
    )


async def _write(pieces: AsyncIterator[bytes], output: str) -> None:
    """Every piece to ``output`` as it comes: stdout, or a file that appears only whole."""
    if output == "-":
        await _copy(pieces, sys.stdout.buffer)
        return
    target = Path(output)
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("wb") as out:
            await _copy(pieces, out)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


async def _copy(pieces: AsyncIterator[bytes], out: IO[bytes]) -> None:
    async for piece in pieces:
        out.write(piece)
    out.flush()


def _run(prog: str, work: Callable[[asyncpg.Pool], Awaitable[None]]) -> int:
    settings = RunnerSettings.from_env()

    async def on_pool(database_url: str) -> None:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=POOL_SIZE)
        try:
            await work(pool)
        finally:
            await pool.close()

    try:
        with open_backends(settings) as backends:
            asyncio.run(on_pool(backends.database_url))
    except Refused as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except errors.AppError as exc:
        print(f"{prog}: {exc.message_en}", file=sys.stderr)
        return 2 if exc.status < 500 else 1
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
        print(f"{prog}: the database is not migrated: run machiai migrate", file=sys.stderr)
        return 1
    return 0


def _cmd_ledger(args: argparse.Namespace) -> int:
    prog = "machiai export ledger"
    if not MUNICIPALITY.fullmatch(args.municipality):
        print(f"{prog}: --municipality: 6 digits, not {args.municipality!r}", file=sys.stderr)
        return 2
    try:
        span = exports.ledger_range(args.municipality, args.first, args.last)
    except errors.Invalid as exc:
        field = exc.detail.get("field", "to")
        print(f"{prog}: --{field}: {exc.message_en.partition(': ')[2]}", file=sys.stderr)
        return 2

    async def work(pool: asyncpg.Pool) -> None:
        if not await exports.municipality_exists(pool, span.municipality):
            raise Refused(f"--municipality: no municipality {span.municipality}")
        pieces = exports.ledger_csv(pool, span, CsvEncoding(args.encoding), exports.CLI)
        await _write(pieces, args.output)

    return _run(prog, work)


def _cmd_day_list(args: argparse.Namespace) -> int:
    prog = "machiai export day-list"
    # Imported here: the console's module (Starlette, the page templates) is only needed
    # by this command, not by every start of the CLI.
    from booking.console.clinic_day import day_csv_body

    async def work(pool: asyncpg.Pool) -> None:
        try:
            _, bookings = await exports.clinic_day(pool, args.clinic, args.date)
        except errors.NotFound:
            raise Refused(f"--clinic: no clinic {args.clinic}") from None
        body = day_csv_body(bookings, args.date, args.lang, CsvEncoding(args.encoding))

        async def pieces() -> AsyncIterator[bytes]:
            for piece in body:
                yield piece

        await _write(pieces(), args.output)

    return _run(prog, work)
