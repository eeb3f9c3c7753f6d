"""Plain ASGI middleware: a request body size limit, and latency sampling for backpressure."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from machiai.errors import error_body


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with 413, whether announced or streamed; the paths
    in ``per_path`` have their own limit instead (an endpoint that reads its body as it
    arrives may take far more than the others)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.per_path.get(scope["path"], self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = max_bytes + 1
                if announced > max_bytes:
                    await self._refuse(send)
                    return
                # The server frames the body by its length: no more than that can arrive.
                await self.app(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise HTTPException(413)
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        payload = json.dumps(
            error_body("body_too_large", "送信データが大きすぎます。"), ensure_ascii=False
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class LatencySampler:
    """Records (finished at, seconds) of each HTTP request for the load report."""

    def __init__(self, app: ASGIApp, samples: deque[tuple[float, float]]) -> None:
        self.app = app
        self.samples = samples

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            now = time.monotonic()
            self.samples.append((now, now - started))


def p95_ms(samples: deque[tuple[float, float]], window_s: float = 10.0) -> float:
    cutoff = time.monotonic() - window_s
    recent = sorted(d for t, d in list(samples) if t >= cutoff)
    if not recent:
        return 0.0
    return recent[min(len(recent) - 1, int(len(recent) * 0.95))] * 1000
