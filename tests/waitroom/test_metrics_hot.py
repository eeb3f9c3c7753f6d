"""The hot paths (status polls and API joins, answered before routing) are in the metrics
under their route templates, with the status they were answered with, once each."""

from __future__ import annotations

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from tests.waitroom.conftest import AppFactory, add_event, running

JSON = {"accept": "application/json"}


def _count(text: str, route: str, status: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "machiai_http_requests_total"
        and s.labels.get("service") == "waitroom"
        and s.labels.get("route") == route
        and s.labels.get("status") == status
    )


async def test_status_polls_and_joins_are_counted_by_template(
    db: asyncpg.Pool, make_app: AppFactory
) -> None:
    event_id = await add_event(db)
    status_route, join_route = "/events/{event_id}/status", "/events/{event_id}/join"
    async with running(make_app()) as client:
        before = (await client.get("/metrics")).text
        joined = (await client.post(f"/events/{event_id}/join", headers=JSON)).json()
        for _ in range(3):
            r = await client.get(
                f"/events/{event_id}/status",
                headers={**JSON, "x-machiai-ticket": joined["ticket"]},
            )
            assert r.status_code == 200
        refused = await client.get(
            f"/events/{event_id}/status", headers={**JSON, "x-machiai-ticket": "forged"}
        )
        assert refused.status_code >= 400
        after = (await client.get("/metrics")).text
    assert _count(after, join_route, "201") - _count(before, join_route, "201") == 1
    assert _count(after, status_route, "200") - _count(before, status_route, "200") == 3
    code = str(refused.status_code)
    assert _count(after, status_route, code) - _count(before, status_route, code) == 1
    refusal = refused.json()["error"]["code"]
    assert f'machiai_refusals_total{{code="{refusal}",service="waitroom"}}' in after
