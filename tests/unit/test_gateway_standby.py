"""A dead blue: a standby slot answers only with the very model versions blue served.

Real loopback HTTP servers stand in for the slots (asyncio streams answering one fixed JSON);
blue's port has nothing listening, as after a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from deployments.gateway.proxy import Gateway
from deployments.gateway.routing import answer_order, standbys
from deployments.gateway.state import StateCache
from deployments.process import HOST, free_port
from deployments.rollout.store import RolloutState

CHAMPION = {"candidates": "1", "ranker": "2"}
CANDIDATE = {"candidates": "1", "ranker": "3"}


class Sink:
    """Records what the gateway would write to the rollout store."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bool]] = []

    def record_request(self, slot: str, latency_ms: float, error: bool, *_: Any, **__: Any) -> None:
        self.requests.append((slot, error))

    def record_feedback(self, *_: Any, **__: Any) -> None:
        """Unused here."""

    def record_pair(self, *_: Any, **__: Any) -> None:
        """Unused here."""


@asynccontextmanager
async def slot_server(model: dict[str, str]) -> AsyncIterator[str]:
    """A loopback HTTP server answering every request with one recommendation from `model`."""
    body = orjson.dumps({"items": [{"item_id": "t1", "score": 1.0}], "model": model})

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length")
            )
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()

    server = await asyncio.start_server(answer, HOST, 0)
    async with server:
        yield f"http://{HOST}:{server.sockets[0].getsockname()[1]}"


def _request() -> bytes:
    context = {
        "device": "phone",
        "platform": "android",
        "country": "SE",
        "timezone": "Europe/Stockholm",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    body = {"listener_id": "u1", "context": context, "shelf": "home", "k": 1}
    return orjson.dumps(body)


async def _answer(green_model: dict[str, str], blue_served: dict[str, str] | None) -> int:
    async with slot_server(green_model) as green, slot_server(CANDIDATE) as shadow:
        state = StateCache(lambda: RolloutState(), refresh_seconds=1.0, idle_shadow_share=0.0)
        urls = {"blue": f"http://{HOST}:{free_port()}", "green": green, "shadow": shadow}
        gateway = Gateway(
            urls, state, Sink(), slot_timeout_s=1.0, last_resort_timeout_s=1.0,
            shadow_timeout_s=1.0, shadow_max_inflight=1, max_connections=2,
        )  # fmt: skip
        if blue_served is not None:
            gateway.served["blue"] = blue_served
        try:
            reply = await gateway.recommend(_request())
        finally:
            await gateway.close(0)
        return reply.status


@pytest.mark.parametrize(
    ("green_model", "blue_served", "status"),
    [
        pytest.param(CHAMPION, CHAMPION, 200, id="green-serves-blue's-versions"),
        pytest.param(CANDIDATE, CHAMPION, 503, id="green-serves-a-candidate"),
        pytest.param(CHAMPION, None, 503, id="blue's-versions-unknown"),
    ],
)
def test_a_standby_answers_for_a_dead_blue_only_with_blues_versions(
    green_model: dict[str, str], blue_served: dict[str, str] | None, status: int
) -> None:
    assert asyncio.run(_answer(green_model, blue_served)) == status


def test_answer_order_never_sends_an_idle_green_listeners() -> None:
    assert answer_order("blue", 0) == ["blue"]
    assert answer_order("blue", 500) == ["blue", "green"]
    assert answer_order("green", 500) == ["green", "blue"]
    assert standbys(["blue"]) == ["green", "shadow"]
    assert standbys(["blue", "green"]) == ["shadow"]
