"""The waitroom's parts, opened once at start-up and handed to every service call."""

from __future__ import annotations

from dataclasses import dataclass

from machiai.tokens import Tokens
from waitroom.services.client_limiter import ClientLimiter
from waitroom.services.directory import Directory
from waitroom.services.join_batcher import JoinBatcher
from waitroom.services.line import Clock, Line
from waitroom.settings import WaitroomSettings
from waitroom.store.redis_store import RedisStore


@dataclass(frozen=True, slots=True)
class Waitroom:
    """Everything a request needs, kept on ``app.state.waitroom``.

    Invariant: one of each per process (one line of snapshots, one batcher, one limiter),
    so every request of the process shares their round trips and counts."""

    settings: WaitroomSettings
    store: RedisStore
    line: Line
    batcher: JoinBatcher
    limiter: ClientLimiter
    tokens: Tokens
    clock: Clock
    directory: Directory
