"""Lua scripts shipped as package data: the one loader both services use.

A package's scripts live in ``<package>/lua/<verb_noun>-<nkeys>.lua``. They are read once,
hashed once, and always sent as ``EVALSHA`` (never ``EVAL``: the text would travel with
every call). A Redis that does not have a script (restarted, flushed, a new node) answers
``NOSCRIPT``; the script is then loaded once and the call sent again. Nothing else in
machiai builds an ``EVALSHA``.

The connection is anything with ``execute(*command)`` (and ``pipeline(commands,
raise_on_error=False)`` for :meth:`Scripts.pipeline`): :class:`machiai.redis_mux.RedisMux`,
or a redis-py client through :class:`RedisPyWire`. Both raise redis-py's
``NoScriptError``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

Arg = str | bytes | int | float


class Wire(Protocol):
    async def execute(self, *args: Arg) -> Any: ...


class PipelineWire(Wire, Protocol):
    async def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, raise_on_error: bool = True
    ) -> list[Any]: ...


class RedisPyWire:
    """A redis-py client seen as a :class:`Wire` (one pooled connection per command)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def execute(self, *args: Arg) -> Any:
        return await self.client.execute_command(*args)  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class Script:
    """One script: its name without the key count, how many keys it takes, its text
    and the SHA-1 that ``EVALSHA`` names it by."""

    name: str
    nkeys: int
    text: str
    sha: str

    def call(self, keys: Sequence[str], args: Sequence[Arg]) -> tuple[Arg, ...]:
        """The EVALSHA command; every script declares its key count in its file name."""
        assert len(keys) == self.nkeys, f"{self.name} takes {self.nkeys} keys, got {len(keys)}"
        return ("EVALSHA", self.sha, self.nkeys, *keys, *args)


class Scripts:
    """Every ``lua/*.lua`` script of one package, by name (``hold_slot`` for
    ``hold_slot-2.lua``)."""

    def __init__(self, package: str) -> None:
        self._by_name: dict[str, Script] = {}
        self._by_sha: dict[str, Script] = {}
        for entry in sorted(resources.files(package).joinpath("lua").iterdir(), key=str):
            if not entry.name.endswith(".lua"):
                continue
            name, _, nkeys = entry.name.removesuffix(".lua").rpartition("-")
            text = entry.read_text(encoding="utf-8")
            script = Script(name, int(nkeys), text, hashlib.sha1(text.encode()).hexdigest())
            self._by_name[name] = script
            self._by_sha[script.sha] = script

    def __getitem__(self, name: str) -> Script:
        return self._by_name[name]

    def __iter__(self) -> Iterator[Script]:
        return iter(self._by_name.values())

    def load_commands(self) -> list[tuple[Arg, ...]]:
        """``SCRIPT LOAD`` of every script (send them pipelined: one round trip)."""
        return [("SCRIPT", "LOAD", s.text) for s in self._by_name.values()]

    async def run(self, wire: Wire, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """EVALSHA; on NOSCRIPT the script is loaded once and the call sent again."""
        return await self.execute(wire, self[name].call(keys, args))

    async def execute(self, wire: Wire, command: Sequence[Arg]) -> Any:
        """One EVALSHA command (from :meth:`Script.call`); on NOSCRIPT the script is
        loaded once and the command sent again."""
        try:
            return await wire.execute(*command)
        except NoScriptError:
            await wire.execute("SCRIPT", "LOAD", self._by_sha[str(command[1])].text)
            return await wire.execute(*command)

    async def pipeline(
        self,
        wire: PipelineWire,
        commands: Sequence[tuple[Arg, ...]],
    ) -> list[Any]:
        """Plain commands and EVALSHA commands (from :meth:`Script.call`) in one round
        trip; replies in order, errors as values. Scripts Redis does not have are loaded
        and only the calls that met NOSCRIPT are sent again: each script is atomic on its
        own, so a call that ran is never repeated."""
        replies = await wire.pipeline(commands, raise_on_error=False)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            shas = {str(commands[i][1]) for i in missing}
            await wire.pipeline([("SCRIPT", "LOAD", self._by_sha[sha].text) for sha in shas])
            again = await wire.pipeline([commands[i] for i in missing], raise_on_error=False)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies
