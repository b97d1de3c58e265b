"""The gateway process: the listeners' single entry point, an ASGI app served by uvicorn.

`python -m uvicorn deployments.gateway.service:app` with the settings in the environment
(deployments/serve.py starts it that way, next to the blue, green and shadow recommenders,
which are BentoML services). Routes:
- POST /recommend, POST /feedback, POST /feedback/batch: the serving contract's bodies,
  proxied to a slot (deployments/gateway/proxy.py says who answers);
- /admin/release/...: the release API for people (deployments/gateway/admin.py);
- GET /healthz and /livez (process alive), GET /readyz (state read and blue ready),
  GET /metrics (Prometheus, deployments/gateway/metrics.py).
Every route reads its body under `serving.max_body_bytes` and `serving.body_timeout_seconds`
(413 / 408, connection closed; deployments/bodies.py:BodyLimits), counted in
`crossfade_gateway_refused_bodies{status}`.

Why not a BentoML service like the recommender: the gateway holds no model, and BentoML's
per-request middlewares (HTTP metrics, timeout task, request context, tracing check) cost
about a fifth of its CPU per request and pushed its share of the listener p99 past the 10 %
budget (docs/gateway.md, Performance). The three listener routes are dispatched straight from
the ASGI scope; the rest go through a small Starlette app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from crossfade.config import Settings, load_settings
from deployments.bodies import BodyLimits, Limits, Reply, error_reply
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

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
STARTING = "the gateway is starting; retry when /readyz answers 200"


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


class GatewayProcess:
    """What one gateway process holds: settings, rollout store, recorder, admin API, core."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = RolloutStore.from_settings(settings)
        self.recorder = ObservationRecorder(self.store)
        self.admin = AdminAPI(settings)
        self.core: GatewayCore | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        """Build the routing core, read the rollout state once, start the state refresh."""
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
        settle_heap()  # full collections then skip the objects of the imported stack
        self._tasks.append(asyncio.get_running_loop().create_task(state.run()))
        # the controller's liveness watcher (a stale heartbeat pauses the rollout)
        self._tasks.append(asyncio.get_running_loop().create_task(self.admin.watch()))

    async def stop(self) -> None:
        """Stop the refresh, drain mirrors, close pools, write the observations left."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.core is not None:
            await self.core.close()
        await asyncio.to_thread(self.recorder.close)
        await asyncio.to_thread(self.admin.close)

    async def ready(self) -> bool:
        """Ready once started, the state read and blue ready."""
        return self.core is not None and await self.core.ready()


_process: list[GatewayProcess] = []  # the one per server process, set by the lifespan


def _current() -> GatewayProcess | None:
    return _process[0] if _process else None


# -- the listener routes: straight from the ASGI scope ---------------------------------------
LISTENER_ROUTES = {  # path -> the routing core's method that answers it
    "/recommend": "recommend",
    "/feedback": "feedback",
    "/feedback/batch": "feedback_batch",
}


async def _body(receive: Receive) -> bytes | None:
    """The whole body; None when the client left or BodyLimits refused it (answered already)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_reply(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    if reply.headers:
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items())
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _listener_route(scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer a POST to a listener route; False when the scope is anything else."""
    method = LISTENER_ROUTES.get(scope["path"])
    if method is None:
        return False
    if scope["method"] != "POST":
        reply = Reply(405, error_reply(405, "method not allowed; use POST").body, {"allow": "POST"})
    else:
        current = _current()
        raw = await _body(receive)
        if raw is None:
            return True  # nobody to answer, or BodyLimits answered 413 / 408
        if current is None or current.core is None:
            reply = Reply(503, error_reply(503, STARTING).body, {"retry-after": "1"})
        else:
            reply = await getattr(current.core, method)(raw)
    await _send_reply(send, reply)
    return True


# -- everything else: a small Starlette app --------------------------------------------------
def _send(reply: Reply) -> Response:
    return Response(reply.body, reply.status, reply.headers, media_type="application/json")


async def release(request: Request) -> Response:
    """The release API (status, history, start, promote, pause, resume, rollback)."""
    current = _current()
    if current is None:
        return PlainTextResponse(STARTING, 503, {"retry-after": "1"})
    reply = await current.admin.handle(
        request.path_params["action"],
        method=request.method,
        authorization=request.headers.get("authorization"),
        raw=await request.body(),
        query=dict(request.query_params),
        if_match=request.headers.get("if-match"),
        client=request.client.host if request.client else None,
    )
    return _send(reply)


async def healthz(request: Request) -> Response:
    """The process is alive (it answers)."""
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """200 once the rollout state was read and blue answers its own /readyz."""
    current = _current()
    if current is not None and await current.ready():
        return PlainTextResponse("ready")
    return PlainTextResponse("not ready", 503)


async def metrics(request: Request) -> Response:
    """The gateway's Prometheus metrics (text exposition format)."""
    return Response(generate_latest(gateway_metrics().registry), media_type=CONTENT_TYPE_LATEST)


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    """Start the gateway with the server, stop it (draining mirrors, flushing) at shutdown."""
    if not logging.getLogger().handlers:  # uvicorn configures only its own loggers
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    process = GatewayProcess(load_settings())
    _process[:] = [process]
    await process.start()
    try:
        yield
    finally:
        await process.stop()
        _process.clear()


admin_app = Starlette(
    routes=[
        Route("/admin/release/{action}", release, methods=["GET", "POST"]),
        Route("/healthz", healthz),
        Route("/livez", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ],
    lifespan=lifespan,
)


async def routes(scope: Scope, receive: Receive, send: Send) -> None:
    """Listener routes first, then the Starlette routes."""
    if scope["type"] == "http" and await _listener_route(scope, receive, send):
        return
    await admin_app(scope, receive, send)


def _limits() -> Limits:
    current = _current()  # set by the lifespan, which runs before any request
    return Limits.of(current.settings if current is not None else load_settings())


def _count_refused() -> Callable[[int], None]:
    counter = gateway_metrics().refused_bodies
    return lambda status: counter.labels(status=str(status)).inc()


# The gateway's ASGI application: the routes with every body read under the limits.
app = BodyLimits(routes, limits=_limits, on_refused=_count_refused)
