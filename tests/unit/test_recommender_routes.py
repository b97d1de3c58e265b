"""The recommender's plain routes: their published contract and how they hand bodies over."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.openapi.utils import get_openapi
from starlette.testclient import TestClient

from crossfade.serving.api import RecommendRequest
from deployments.bodies import Reply, parse_request
from deployments.recommender import routes


@pytest.fixture
def client() -> Iterator[TestClient]:
    saved = dict(routes._handlers)
    routes._handlers.clear()
    try:
        yield TestClient(routes.app)
    finally:
        routes._handlers.clear()
        routes._handlers.update(saved)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_published_openapi_has_every_route_with_self_contained_body_schemas() -> None:
    spec = get_openapi(title="t", version="1", routes=routes.app.routes)  # as BentoML calls it
    assert {"/recommend", "/feedback", "/feedback/batch"} <= set(spec["paths"])
    recommend = spec["paths"]["/recommend"]["post"]
    body = recommend["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"listener_id", "context", "shelf", "k"}
    assert body["properties"]["context"]["properties"]["timezone"]["type"] == "string"
    assert {"200", "400", "422", "503"} <= set(recommend["responses"])
    assert _refs(spec["paths"]) == []  # BentoML would drop the components they point at


def test_a_route_before_the_service_exists_answers_503(client: TestClient) -> None:
    response = client.post("/recommend", content=b"{}")
    assert response.status_code == 503 and "starting" in response.json()["error"]


def test_routes_hand_the_raw_body_to_the_service_and_send_its_reply(client: TestClient) -> None:
    seen: list[bytes] = []

    async def recommend(raw: bytes) -> Reply:
        seen.append(raw)
        request = parse_request(raw, RecommendRequest)
        if isinstance(request, Reply):
            return request
        return Reply(200, json.dumps({"k": request.k}).encode())

    routes.serve_with(recommend=recommend)
    body = {
        "listener_id": "u-1",
        "context": {
            "device": "mobile",
            "platform": "ios",
            "country": "DE",
            "timezone": "Europe/Berlin",
            "timestamp": "2026-01-13T08:30:00Z",
        },
        "shelf": "home",
        "k": 7,
    }
    ok = client.post("/recommend", json=body)
    assert ok.status_code == 200 and ok.json() == {"k": 7}
    assert json.loads(seen[0]) == body
    bad = client.post("/recommend", json={**body, "k": 0})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "k"
    assert client.post("/recommend", content=b"[1, 2]").status_code == 400
    assert client.post("/feedback", content=b"{}").status_code == 503  # not registered
