"""The vaccination ledger for administrators: a GET form and the download it leads to.

GET /staff/admin/export                 the form: the first and last day, the encoding
GET /staff/admin/export/ledger.csv      the file (booking/services/exports.py), or the
                                        form again with what to correct (422)

A GET form (no JavaScript, nothing changed but the audit log): a download is a link one
may bookmark, and a refused one comes back with the days as typed and the reason beside
each field. Every download is audited (``booking.export.ledger``) by the service.
"""

from __future__ import annotations

from datetime import date, datetime

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from booking import errors
from booking.console.common import console_page, render
from booking.http import JST, ctx_of
from booking.pages.common import SECURITY_HEADERS, Form
from booking.services import exports
from booking.services.console import Console
from booking.services.csv_export import CsvEncoding, attachment
from machiai.i18n import N_, tr

FORM = "/staff/admin/export"
LEDGER = "/staff/admin/export/ledger.csv"
ENCODINGS = (
    (CsvEncoding.UTF8.value, N_("UTF-8 (opens in Excel; every character)")),
    (
        CsvEncoding.SHIFT_JIS.value,
        N_("Shift_JIS (older ledger software; a few rare characters become ?)"),
    ),
)
ENTER_A_DATE = N_("Enter a date as 2026-12-01.")
# The service's refusals of a range, by field, in the console's words.
RANGE_PROBLEMS = {
    "from": N_("Enter a first day from 2000-01-01 to 2999-12-31."),
    "to": N_("Enter a last day up to 2999-12-31, at most ten years after the first day."),
}
BACKWARDS = N_("Enter a last day on or after the first day.")


def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        return None


def _form(
    request: Request,
    lang: str,
    console: Console,
    values: dict[str, str],
    problems: dict[str, str],
) -> Response:
    return render(
        request,
        "staff_admin_export.html",
        lang,
        {
            "title": tr(lang, N_("Vaccination ledger")),
            "action": LEDGER,
            "values": values,
            "problems": problems,
            "encodings": [(value, tr(lang, label)) for value, label in ENCODINGS],
            "columns": exports.LEDGER_HEADER,
        },
        console,
        status=422 if problems else 200,
    )


@console_page("admin")
async def ledger_form(request: Request, q: Form, lang: str, console: Console) -> Response:
    today = datetime.now(JST).date()
    # The month so far: what a city hands on most often.
    values = {"from": today.replace(day=1).isoformat(), "to": today.isoformat(), "encoding": ""}
    return _form(request, lang, console, values, {})


@console_page("admin")
async def ledger_download(request: Request, q: Form, lang: str, console: Console) -> Response:
    values = {name: q.get(name).strip() for name in ("from", "to", "encoding")}
    problems: dict[str, str] = {}
    first, last = _day(values["from"]), _day(values["to"])
    for name, day in (("from", first), ("to", last)):
        if day is None:
            problems[name] = ENTER_A_DATE
    encoding = CsvEncoding.UTF8
    if values["encoding"]:
        try:
            encoding = CsvEncoding(values["encoding"])
        except ValueError:
            problems["encoding"] = N_("Choose UTF-8 or Shift_JIS.")
    span: exports.LedgerRange | None = None
    if first is not None and last is not None:
        try:
            span = exports.ledger_range(console.claims.municipality_code, first, last)
        except errors.Invalid as exc:
            field = str(exc.detail.get("field", "to"))
            problems[field] = RANGE_PROBLEMS.get(field, RANGE_PROBLEMS["to"])
            if field == "to" and last < first:
                problems[field] = BACKWARDS
    if problems or span is None:
        return _form(request, lang, console, values, problems)
    pieces = exports.ledger_csv(
        ctx_of(request).pool, span, encoding, exports.Exporter("staff", console.claims.staff_id)
    )
    return StreamingResponse(
        await exports.started(pieces),
        media_type=f"text/csv; charset={encoding.charset}",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": attachment(exports.ledger_filename(span)),
        },
    )


def routes() -> list[Route]:
    return [
        Route(FORM, ledger_form, methods=["GET"]),
        Route(LEDGER, ledger_download, methods=["GET"]),
    ]
