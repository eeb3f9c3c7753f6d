"""The OpenAPI 3 document, generated from the endpoint table so every route is listed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from booking.http import Endpoint

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "detail": {"type": "object"},
            },
        }
    },
}


def _schema(fields: dict[str, str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, note in fields.items():
        kind = note.split(":", 1)[0].split(" ")[0]
        json_type = {"int": "integer", "array": "array", "object": "object", "bool": "boolean"}.get(
            kind, "string"
        )
        prop: dict[str, Any] = {"type": json_type, "description": note}
        if json_type == "array":
            prop["items"] = {}
        props[name] = prop
    return {"type": "object", "properties": props}


def build_openapi(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": f"{ep.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', ep.path.lower())}",
            "tags": list(ep.tags),
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": _schema(dict(ep.response))}},
                },
                "4XX": {
                    "description": "Client error (ja/en message by Accept-Language)",
                    "content": {"application/json": {"schema": ERROR}},
                },
                "503": {
                    "description": "Busy: retry after Retry-After seconds",
                    "content": {"application/json": {"schema": ERROR}},
                },
            },
        }
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", ep.path)
        ]
        params += [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": note,
                "schema": {"type": "string"},
            }
            for name, note in ep.params.items()
        ]
        if ep.method in {"POST", "PATCH"}:
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 200},
                }
            )
        if params:
            op["parameters"] = params
        if ep.body_kind == "json" and ep.method in {"POST", "PATCH", "PUT"}:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema(dict(ep.request))}},
            }
        elif ep.body_kind == "csv":
            op["requestBody"] = {
                "required": True,
                "content": {"text/csv": {"schema": {"type": "string"}}},
            }
        if ep.auth != "none":
            op["security"] = [{ep.auth: []}]
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "machiai booking API",
            "version": "1",
            "description": "Residents (session token), operators, clinics and admins (staff "
            'token). Errors: {"error": {"code", "message"}}, Japanese by default, English '
            "with Accept-Language: en.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "token from POST /api/sessions",
                },
                "staff": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "token from POST /api/staff/login",
                },
            }
        },
    }
