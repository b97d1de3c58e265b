"""The gateway's ASGI app: listener routes dispatched from the scope, the rest by Starlette."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from crossfade.config import load_settings
from deployments.bodies import Reply
from deployments.gateway import service
from deployments.gateway.metrics import gateway_metrics


class FakeCore:
    """Records the bodies handed over and answers with a fixed reply per method."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def _answer(self, method: str, raw: bytes) -> Reply:
        self.calls.append((method, raw))
        return Reply(200, orjson.dumps({"method": method}), {"x-slot": "blue"})

    async def recommend(self, raw: bytes) -> Reply:
        return self._answer("recommend", raw)

    async def feedback(self, raw: bytes) -> Reply:
        return self._answer("feedback", raw)

    async def feedback_batch(self, raw: bytes) -> Reply:
        return self._answer("feedback_batch", raw)

    async def ready(self) -> bool:
        return True


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The app without its lifespan: no process state unless a test installs one."""
    saved = list(service._process)
    service._process.clear()
    try:
        yield TestClient(service.app)
    finally:
        service._process[:] = saved


def _install(core: Any) -> None:
    fake = SimpleNamespace(core=core, settings=load_settings())  # settings: the body limits

    async def ready() -> bool:
        return bool(await core.ready())

    fake.ready = ready
    service._process[:] = [fake]  # type: ignore[list-item]


def test_listener_routes_answer_503_with_retry_after_before_start(client: TestClient) -> None:
    for path in ("/recommend", "/feedback", "/feedback/batch"):
        response = client.post(path, content=b"{}")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "starting" in response.json()["error"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_listener_routes_hand_the_raw_body_to_the_core_and_send_its_reply(
    client: TestClient,
) -> None:
    core = FakeCore()
    _install(core)
    body = b'{"listener_id": "u1", "k": 3}'
    for path, method in service.LISTENER_ROUTES.items():
        response = client.post(path, content=body)
        assert response.status_code == 200
        assert response.json() == {"method": method}
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-slot"] == "blue"
    assert core.calls == [(m, body) for m in service.LISTENER_ROUTES.values()]
    assert client.get("/readyz").status_code == 200


def test_wrong_method_on_a_listener_route_is_405_naming_post(client: TestClient) -> None:
    response = client.get("/recommend")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "POST" in response.json()["error"]


def test_unknown_paths_are_404_and_metrics_render_the_gateway_registry(
    client: TestClient,
) -> None:
    assert client.post("/nowhere", content=b"{}").status_code == 404
    gateway_metrics().unanswered.inc()
    text = client.get("/metrics").text
    assert "crossfade_gateway_unanswered_total" in text
    assert "crossfade_gateway_request_duration_seconds" in text
