"""What the schemathesis runs of both services share: a real uvicorn server in a thread,
the run's settings, the error-shape check and a tally of what was sent.

Each service's fuzz test (``tests/<service>/test_fuzz_api.py``) loads the document its
server serves at /openapi.json and lets schemathesis send every operation examples,
boundary and malformed cases (coverage phase) and generated ones (fuzzing phase). Seeded
and derandomized: CI sends the same requests every run.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import CHECKS
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from starlette.applications import Starlette

from machiai import inputs
from machiai.embedded import free_port
from tests import report
from tests.servers import PostgresForTests, delete_prefixed_keys

SEED = 16  # the issue that asked for these runs
# Fixed, so that the module can sign passes and tokens for its dictionaries at import.
SECRET_KEY = "fuzz-only-" + "0123456789abcdef" * 4
MAX_EXAMPLES = 12  # generated cases per operation, after its coverage cases
START_TIMEOUT_S = 30.0


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` behind a real uvicorn on a free port, in a thread with its own event loop
    (schemathesis sends its requests synchronously from the test's thread)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server under test did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)


@contextmanager
def own_backends(
    postgres: PostgresForTests, redis_url: str, data_dir: Path
) -> Iterator[dict[str, str]]:
    """The environment of a service under fuzzing: a migrated database and a Redis key
    prefix of its own for the whole run (one server serves every operation), dropped after."""
    name = asyncio.run(postgres.create_database())
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    try:
        yield {
            "MACHIAI_ENV": "development",
            "MACHIAI_DATA_DIR": str(data_dir),
            "REDIS_URL": redis_url,
            "DATABASE_URL": postgres.url_for(name),
            "MACHIAI_REDIS_PREFIX": prefix,
            "MACHIAI_SECRET_KEYS": SECRET_KEY,
        }
    finally:
        delete_prefixed_keys(redis_url, prefix)
        asyncio.run(postgres.drop_database(name))


def config(**extra: Any) -> SchemathesisConfig:
    """The run's settings: seeded, derandomized, no example database, a few generated cases
    per operation; ``extra`` (dictionaries of real ids, parameters) on top."""
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "no-shrink": True,
            },
            "phases": {"stateful": {"enabled": False}},
            **extra,
        }
    )


def error_shape(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every error answers ``{"error": {"code", "message"}}`` as JSON, whatever its status."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (response.status_code, content_type)
    body = json.loads(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), body
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str) and error["message"], body
    return True


def check(name: str) -> Any:
    """A built-in check by name (to leave it out of one operation's run)."""
    for found in CHECKS.get_all():
        if found.__name__ == name:
            return found
    raise LookupError(name)


def _unstorable(*values: object) -> bool:
    """Whether any text in ``values`` holds a character the document's text pattern
    (machiai.openapi.TEXT_PATTERN) forbids. Schemathesis's generator lets NUL and lone
    surrogates through that pattern now and then (seen with schemathesis 4.32 in a long
    run, not reproducible alone), so a refusal of such a request is the documented answer,
    not a fault: the other checks (no 5xx, the error shape) still hold it."""
    for value in values:
        if isinstance(value, str) and not inputs.usable_text(value):
            return True
        if isinstance(value, dict):
            if _unstorable(*value.keys(), *value.values()):
                return True
        elif isinstance(value, list | tuple) and _unstorable(*value):
            return True
    return False


def _negative(case: Case[Any], where: ParameterLocation) -> bool:
    """Whether schemathesis made this part of the case invalid on purpose."""
    meta = case.meta
    info = None if meta is None else meta.components.get(where)
    return info is not None and info.mode is GenerationMode.NEGATIVE


def call(
    case: Case[Any], base_url: str, headers: dict[str, str], beyond_schema: set[str]
) -> Response:
    """Send ``case`` and hold the answer to the document and to the error shape. Operations
    in ``beyond_schema`` have rules a schema cannot say (times in order, a registry that
    exists): a valid-looking request they refuse is not a fault there."""
    lenient = case.operation.label in beyond_schema or _unstorable(case.body, case.query)
    excluded = [check("positive_data_acceptance")] if lenient else []
    if headers and _negative(case, ParameterLocation.HEADER):
        # The case's headers were made invalid (e.g. its Authorization left out) and the
        # credentials sent put them right again: what is left may be valid, and an answer
        # 200 to it is no acceptance of bad data.
        excluded.append(check("negative_data_rejection"))
    response: Response = case.call_and_validate(
        base_url=base_url,
        headers=headers,
        additional_checks=[error_shape],
        excluded_checks=excluded,
        timeout=30,
    )
    return response


class Tally:
    """Requests sent and answers by status class, printed at the end of a run."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.started = time.monotonic()
        self.statuses: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()
        self.answers: Counter[tuple[str, int]] = Counter()

    def count(self, case: Case[Any], response: Response) -> None:
        self.statuses[f"{response.status_code // 100}xx"] += 1
        self.operations[case.operation.label] += 1
        self.answers[(case.operation.label, response.status_code)] += 1

    def report(self) -> str:
        total = sum(self.statuses.values())
        took = time.monotonic() - self.started
        by_class = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.service}: {total} requests over {len(self.operations)} operations "
            f"in {took:.0f} s ({by_class})"
        )

    def details(self) -> str:
        """Answers by operation and status, for a look at what the run reached."""
        lines = []
        for label in sorted(self.operations):
            seen = sorted((s, n) for (op, s), n in self.answers.items() if op == label)
            lines.append(f"  {label}: " + ", ".join(f"{s}×{n}" for s, n in seen))
        return "\n".join(lines)


def show(config: pytest.Config, tally: Tally) -> None:
    """The run's tally in the test output (with -v, by operation and status too) and in
    the report the test command prints at its end."""
    report.fuzzed(tally.report())
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(tally.report())
        if config.option.verbose > 0:
            reporter.write_line(tally.details())
