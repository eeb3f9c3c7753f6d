"""The eligibility registry import (administrators): upload a file, see what it would do,
then apply it.

GET  /staff/admin/registry          the form: a CSV file and the mode (merge / replace)
POST /staff/admin/registry/import   preview (nothing written) or apply, as the form says

Nothing is kept between the preview and the apply: a city's file is hundreds of MB and
may reach another process. The preview page asks for the same file again with the counts
it saw; for a replace it carries the number of residents the preview said would be
removed, and the service refuses the apply if the file removes any other number (the
promise "a replace removes exactly what the administrator confirmed"). A file with bad
rows writes nothing and lists every bad row and column.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import errors
from booking.console.common import (
    CsrfRefused,
    console_page,
    problem,
    render,
    resume_console,
)
from booking.http import ctx_of
from booking.pages.common import Form, language
from booking.services.console import Console
from booking.services.registry_import import Mode, import_registry
from machiai.i18n import N_, tr

PAGE = "/staff/admin/registry"
IMPORT_PATH = PAGE + "/import"
CHUNK_BYTES = 256 * 1024
MODE_TEXTS = {
    Mode.MERGE: N_(
        "Add and update: residents in the file are added or updated; nobody else is removed. "
        "A large registry can be sent in several files this way."
    ),
    Mode.REPLACE: N_(
        "Replace: the registry becomes exactly the file; residents not in it are removed "
        "(those with a booking still to come are kept)."
    ),
}


def _form_context(lang: str) -> dict[str, Any]:
    return {
        "title": tr(lang, N_("Eligibility registry")),
        "modes": [(m.value, tr(lang, text)) for m, text in MODE_TEXTS.items()],
    }


@console_page("admin")
async def registry_form(request: Request, q: Form, lang: str, console: Console) -> Response:
    return render(request, "staff_admin_registry.html", lang, _form_context(lang), console)


async def _chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    """The uploaded file as it was spooled (to disk past 1 MB), a piece at a time."""
    while True:
        piece = await upload.read(CHUNK_BYTES)
        if not piece:
            return
        yield piece


async def import_file(request: Request) -> Response:
    """Not ``console_page``: the body is a multipart upload (a file), not a short form; the
    same checks, in the same order, are made here."""
    lang = language(request)
    try:
        console = await resume_console(request, "admin")
        if isinstance(console, Response):
            return console
        async with request.form(max_files=1, max_fields=10) as form:
            lang = language(request, str(form.get("lang") or "") or None)
            # Promise (booking.console.common): a POST without the session's secret changes
            # nothing, whatever the cookie says.
            if not console.csrf_ok(str(form.get("csrf") or "")):
                return problem(request, lang, CsrfRefused(), console)
            upload = form.get("file")
            try:
                mode = Mode(str(form.get("mode") or Mode.MERGE.value))
            except ValueError:
                raise errors.BadRequest() from None
            apply = form.get("apply") == "1"
            expected_raw = str(form.get("expect_removed") or "")
            expected = int(expected_raw) if expected_raw.isdigit() else None

            def page(status: int = 200, **shown: Any) -> Response:
                context = {**_form_context(lang), "mode": mode.value, **shown}
                return render(
                    request, "staff_admin_registry.html", lang, context, console, status=status
                )

            if not isinstance(upload, UploadFile) or not upload.filename:
                return page(422, problems={"file": N_("Choose the registry's CSV file.")})
            try:
                result = await import_registry(
                    ctx_of(request),
                    console.claims.municipality_code,
                    console.claims.staff_id,
                    _chunks(upload),
                    mode=mode,
                    dry_run=not apply,
                    expect_removed=expected if mode is Mode.REPLACE else None,
                )
            except errors.CsvInvalid as bad:
                return page(422, filename=upload.filename, row_errors=bad.detail.get("errors", []))
            except errors.RemovalsUnconfirmed as refused:
                return page(
                    409,
                    filename=upload.filename,
                    refused=tr(
                        lang,
                        N_(
                            "This file removes %(removed)s residents, not the %(expected)s "
                            "the preview showed (another file, or the registry changed "
                            "since). Nothing was changed: preview it again."
                        ),
                        removed=f"{refused.detail['removed']:,}",
                        expected=f"{refused.detail.get('expect_removed') or 0:,}",
                    ),
                )
            return page(filename=upload.filename, result=result, applied=apply)
    except errors.AppError as exc:
        return problem(request, lang, exc)


def routes() -> list[Route]:
    return [
        Route(PAGE, registry_form, methods=["GET"]),
        Route(IMPORT_PATH, import_file, methods=["POST"]),
    ]
