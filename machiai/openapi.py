"""OpenAPI 3.0 documents for both services, built from their operation tables.

Each service lists its operations (:class:`Operation`) next to its routes; this module
turns them into the document it serves at ``/openapi.json``. The schemas are written
with the small helpers below so that a field's pattern, length and range are the ones
its validator enforces (the validators import the same patterns). Errors everywhere
have one shape, ``{"error": {"code", "message", "detail"?}}``; each error status of an
operation lists the codes it can carry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]

# What every free-text field accepts: anything but NUL (Postgres cannot store it) and
# lone surrogates (they are not text and cannot be encoded). ECMA 262 syntax, which
# Python's ``re`` reads the same way.
TEXT_PATTERN = "^[^\\u0000\\ud800-\\udfff]*$"


def string(
    *,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    fmt: str | None = None,
    enum: Iterable[str] | None = None,
    nullable: bool = False,
    description: str | None = None,
) -> Schema:
    schema: Schema = {"type": "string"}
    if enum is not None:
        schema["enum"] = list(enum)
    if fmt is not None:
        schema["format"] = fmt
    if pattern is not None:
        schema["pattern"] = pattern
    if min_length is not None:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    return _finish(schema, nullable, description)


def text(max_length: int, *, required: bool = True, description: str | None = None) -> Schema:
    """Free text: NUL and lone surrogates refused; at least one character when required
    (an empty string counts as not given)."""
    return string(
        min_length=1 if required else None,
        max_length=max_length,
        pattern=TEXT_PATTERN,
        description=description,
    )


def integer(
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    nullable: bool = False,
    description: str | None = None,
) -> Schema:
    schema: Schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return _finish(schema, nullable, description)


def number(*, minimum: float | None = None, nullable: bool = False) -> Schema:
    schema: Schema = {"type": "number"}
    if minimum is not None:
        schema["minimum"] = minimum
    return _finish(schema, nullable, None)


def boolean(*, description: str | None = None) -> Schema:
    return _finish({"type": "boolean"}, False, description)


def array(
    items: Schema,
    *,
    min_items: int | None = None,
    max_items: int | None = None,
    description: str | None = None,
) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    if min_items is not None:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    return _finish(schema, False, description)


def obj(
    required: Mapping[str, Schema] | None = None,
    optional: Mapping[str, Schema] | None = None,
    *,
    closed: bool = False,
    nullable: bool = False,
    description: str | None = None,
) -> Schema:
    """An object; ``closed``: other properties are refused (only where the code refuses
    them — most endpoints ignore fields they do not know)."""
    required = dict(required or {})
    properties = {**required, **(optional or {})}
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return _finish(schema, nullable, description)


def _finish(schema: Schema, nullable: bool, description: str | None) -> Schema:
    if nullable:
        schema["nullable"] = True
    if description:
        schema["description"] = description
    return schema


def error_schema(codes: Iterable[str] = ()) -> Schema:
    """The one error shape; ``codes`` narrows ``error.code`` to those an answer can carry."""
    listed = sorted(set(codes))
    code = string(enum=listed) if listed else string()
    return obj(
        {
            "error": obj(
                {"code": code, "message": string(min_length=1)},
                {"detail": obj(description="e.g. the field, or the rows of a CSV at fault")},
            )
        }
    )


RETRY_AFTER = integer(1, description="seconds to wait before trying again")


@dataclass(frozen=True, slots=True)
class Param:
    """A path, query or header parameter."""

    name: str
    location: str  # path | query | header
    schema: Schema
    required: bool = False
    description: str = ""

    def as_dict(self) -> Schema:
        out: Schema = {
            "name": self.name,
            "in": self.location,
            "required": self.required or self.location == "path",
            "schema": self.schema,
        }
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class Reply:
    """A success response: its body (None: none), media type and headers."""

    description: str
    schema: Schema | None = None
    media_type: str = "application/json"
    headers: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of a service's API, as its document tells it."""

    method: str
    path: str
    summary: str
    replies: Mapping[int, Reply]
    errors: Mapping[int, Sequence[str]]  # status -> the error codes it can carry
    tags: tuple[str, ...] = ()
    security: tuple[str, ...] = ()  # scheme names, any one of which admits
    params: tuple[Param, ...] = ()
    body: Schema | None = None
    body_media: str = "application/json"
    body_required: bool = True
    description: str = ""

    @property
    def operation_id(self) -> str:
        return f"{self.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', self.path.lower()).strip('_')}"

    def as_dict(self) -> Schema:
        responses: dict[str, Any] = {}
        for status, reply in sorted(self.replies.items()):
            responses[str(status)] = _reply(reply)
        for status, codes in sorted(self.errors.items()):
            headers = {"Retry-After": RETRY_AFTER} if status in (429, 503) else {}
            responses[str(status)] = _reply(
                Reply(
                    f"Error: {', '.join(sorted(set(codes)))}", error_schema(codes), headers=headers
                )
            )
        op: Schema = {
            "operationId": self.operation_id,
            "summary": self.summary,
            "tags": list(self.tags),
            "responses": responses,
        }
        if self.description:
            op["description"] = self.description
        if self.params:
            op["parameters"] = [p.as_dict() for p in self.params]
        if self.body is not None:
            op["requestBody"] = {
                "required": self.body_required,
                "content": {self.body_media: {"schema": self.body}},
            }
        op["security"] = [{name: []} for name in self.security]
        return op


def _reply(reply: Reply) -> Schema:
    out: Schema = {"description": reply.description}
    if reply.schema is not None:
        out["content"] = {reply.media_type: {"schema": reply.schema}}
    if reply.headers:
        out["headers"] = {
            name: {"required": True, "schema": schema} for name, schema in reply.headers.items()
        }
    return out


def document(
    *,
    title: str,
    description: str,
    operations: Iterable[Operation],
    security_schemes: Mapping[str, Schema],
) -> Schema:
    """The OpenAPI 3.0 document of a service."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        methods = paths.setdefault(op.path, {})
        if op.method.lower() in methods:
            raise ValueError(f"{op.method} {op.path} is listed twice")
        methods[op.method.lower()] = op.as_dict()
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": "1", "description": description},
        "paths": paths,
        "components": {"securitySchemes": dict(security_schemes)},
    }


# Every service serves its own document.
DOCUMENT_OPERATION = Operation(
    "GET",
    "/openapi.json",
    "This document",
    replies={200: Reply("The OpenAPI 3 document", {"type": "object"})},
    errors={},
    tags=("meta",),
)


def bearer(description: str) -> Schema:
    return {"type": "http", "scheme": "bearer", "description": description}


def header_key(name: str, description: str) -> Schema:
    return {"type": "apiKey", "in": "header", "name": name, "description": description}
