"""The waitroom's document matches its routes: every route is in /openapi.json with
exactly its methods (the pages for people aside), and a method a path does not have is a
405 whose Allow names the ones it has."""

from __future__ import annotations

import re
import uuid

from starlette.routing import Route

from tests.waitroom.conftest import AppFactory, running
from waitroom.web.openapi import DOCUMENT
from waitroom.web.page import CSS, JS

PAGES = {
    "/",
    "/events/{event_id}/wait",
    "/events/{event_id}/shuffle",
    "/events/{event_id}/notify",  # issue 15's form, for people
    CSS.path,
    JS.path,
}


async def test_the_document_lists_every_route_with_its_methods(make_app: AppFactory) -> None:
    app = make_app()
    async with running(app) as client:
        doc = (await client.get("/openapi.json")).json()
        assert doc == DOCUMENT
        served = {
            r.path: {m for m in (r.methods or set()) if m != "HEAD"}
            for r in app.routes
            if isinstance(r, Route) and r.path not in PAGES
        }
        listed = {path: {m.upper() for m in ops} for path, ops in doc["paths"].items()}
        assert served == listed
        for path, methods in listed.items():
            url = re.sub(r"{\w+}", f"ev-{uuid.uuid4().hex[:8]}", path)
            r = await client.request("PUT", url)
            assert r.status_code == 405, (path, r.status_code)
            allowed = {m.strip() for m in r.headers["allow"].split(",")} - {"HEAD"}
            assert allowed == methods, (path, allowed)
            assert r.json()["error"]["code"] == "method_not_allowed"
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ticket"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Machiai-Ticket",
        "description": schemes["ticket"]["description"],
    }
    for ops in doc["paths"].values():
        for op in ops.values():
            assert all(set(s) <= set(schemes) for s in op["security"])
            for status, answer in op["responses"].items():
                if int(status) >= 400 and "error" in str(answer["description"]).lower():
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema["properties"]["error"]["required"] == ["code", "message"]
