"""The gateway process: the listeners' single entry point (BentoML service on loopback).

`bentoml serve deployments.gateway.service:Gateway` with the settings in the environment
(deployments/serve.py starts it that way, next to the blue, green and shadow recommenders).
Routes:
- POST /recommend, POST /feedback: the serving contract's bodies, proxied to a slot
  (deployments/gateway/proxy.py says who answers);
- /admin/release/...: the release API for people (deployments/gateway/admin.py);
- GET /healthz (BentoML: process alive), GET /readyz (state read and blue ready),
  GET /metrics (Prometheus, deployments/gateway/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crossfade.config import Settings, load_settings
from deployments.bodies import Reply
from deployments.gateway.admin import AdminAPI
from deployments.gateway.metrics import gateway_metrics
from deployments.gateway.proxy import Gateway as GatewayCore
from deployments.gateway.reconcile import SlotReconciler
from deployments.gateway.state import StateCache
from deployments.heap import settle_heap
from deployments.rollout.observations import ObservationRecorder
from deployments.rollout.store import RolloutStore

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
log = logging.getLogger(__name__)


def slot_urls(settings: Settings) -> dict[str, str]:
    """Where blue, green and shadow listen (their ports are resolved by deployments/serve.py)."""
    gw = settings.gateway
    ports = {"blue": gw.blue_port, "green": gw.green_port, "shadow": gw.shadow_port}
    zero = [slot for slot, port in ports.items() if port == 0]
    if zero:
        raise ValueError(
            f"gateway.{zero[0]}_port is 0 (any free port) in the gateway process; start the "
            "stack with `python -m deployments.serve`, which fixes the ports it chose"
        )
    return {slot: f"http://{gw.host}:{port}" for slot, port in ports.items()}


def _send(reply: Reply) -> Response:
    return Response(reply.body, reply.status, reply.headers, media_type="application/json")


_instance: list[Gateway] = []  # the process's service object, for the route functions


def _service() -> Gateway:
    if not _instance:
        raise RuntimeError("the gateway is starting; retry when /readyz answers 200")
    return _instance[0]


async def recommend(request: Request) -> Response:
    """Recommendations for one listener from the slot the rollout assigns them."""
    return _send(await _service()._core().recommend(await request.body()))


async def feedback(request: Request) -> Response:
    """A play, skip or save, forwarded to the slot that served the listener."""
    return _send(await _service()._core().feedback(await request.body()))


async def feedback_batch(request: Request) -> Response:
    """A listening session's plays, skips and saves in one call."""
    return _send(await _service()._core().feedback_batch(await request.body()))


async def release(request: Request) -> Response:
    """The release API (status, history, start, promote, pause, resume, rollback)."""
    reply = await _service().admin.handle(
        request.path_params["action"],
        method=request.method,
        authorization=request.headers.get("authorization"),
        raw=await request.body(),
        query=dict(request.query_params),
    )
    return _send(reply)


# Plain Starlette routes (no FastAPI): the handlers take no injected `self`, which BentoML
# resolves through a dependency run in a worker thread, two thread hops per request.
app = Starlette(
    routes=[
        Route("/recommend", recommend, methods=["POST"]),
        Route("/feedback", feedback, methods=["POST"]),
        Route("/feedback/batch", feedback_batch, methods=["POST"]),
        Route("/admin/release/{action}", release, methods=["GET", "POST"]),
    ]
)


@bentoml.service(
    name="crossfade-gateway",
    traffic={"timeout": 30},
    workers=1,  # one event loop: routing state, mirror cap and metrics stay per process
    # Per-request costs the gateway does not need on its hot path: an access-log line (its own
    # observations and metrics record every request) and OpenTelemetry spans (no exporter).
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/recommend", "/feedback", "/feedback/batch"]},
)
@bentoml.asgi_app(app, path="/")
class Gateway:
    """Routes listeners to blue / green, mirrors to shadow, records observations, admin API."""

    def __init__(self) -> None:
        self.settings = load_settings()
        self.store = RolloutStore.from_settings(self.settings)
        self.recorder = ObservationRecorder(self.store)
        self.admin = AdminAPI(self.settings)
        self.core: GatewayCore | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        _instance[:] = [self]

    @bentoml.on_startup
    async def _start(self) -> None:
        gw = self.settings.gateway
        state = StateCache(
            self.store.read_state,
            refresh_seconds=gw.state_refresh_seconds,
            idle_shadow_share=gw.idle_shadow_share,
        )
        self.core = GatewayCore(
            slot_urls(self.settings),
            state,
            self.recorder,
            slot_timeout_s=gw.slot_timeout_ms / 1000,
            last_resort_timeout_s=gw.last_resort_timeout_ms / 1000,
            shadow_timeout_s=gw.shadow_timeout_ms / 1000,
            shadow_max_inflight=gw.shadow_max_inflight,
            max_connections=gw.max_connections,
            metrics=gateway_metrics(),
        )
        token = self.settings.serving.admin_token
        self.reconciler = SlotReconciler(
            self.core.clients,
            admin_token=token.get_secret_value() if token else None,
            timeout_s=gw.start_timeout_seconds,
            served=self.core.served,
        )
        state.listeners.append(self.reconciler.on_state)
        state.confirmed = self.reconciler.confirmed
        await state.refresh()
        settle_heap()  # full collections then skip the ~115k objects of the imported stack
        self._tasks.append(asyncio.get_running_loop().create_task(state.run()))

    @bentoml.on_shutdown
    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.core is not None:
            await self.core.close()
        await asyncio.to_thread(self.recorder.close)

    async def __is_ready__(self) -> bool:
        return self.core is not None and await self.core.ready()

    def _core(self) -> GatewayCore:
        if self.core is None:  # requests before start-up finished
            raise RuntimeError("the gateway is starting; retry when /readyz answers 200")
        return self.core
