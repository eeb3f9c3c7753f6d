"""Log lines of every machiai process: one JSON object per line (MACHIAI_LOG_FORMAT=json,
the default) or plain text, each with the service and the request id (machiai/request_id.py)
of the request it was written in, so one resident's way through the waitroom and booking
can be followed across both services' logs."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final

from machiai import request_id

FORMATS: Final = ("json", "text")
# uvicorn's own loggers keep their handlers unless told: they write through ours instead.
# Not "uvicorn.access": the services run with --no-access-log (a line per request would
# cost the hot paths more than everything else they do), which leaves that logger silent.
_UVICORN = ("uvicorn", "uvicorn.error")


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            line["request_id"] = rid
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__("%(asctime)s %(levelname)s " + service + " %(name)s%(rid)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.rid = f" [{rid}]" if rid else ""
        return super().format(record)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request it was written in, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.for_log()
        return True


def configure(service: str, log_format: str, level: int = logging.INFO) -> None:
    """One handler on stderr for the root logger and uvicorn's, in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if log_format == "json" else TextFormatter(service))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in _UVICORN:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
