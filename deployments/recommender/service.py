"""The recommender: a BentoML service answering /recommend and /feedback for one slot.

Run one process per slot (`CROSSFADE_SERVING__SLOT=blue|green|shadow`), e.g. through
`deployments.process.start_service("deployments.recommender.service:Recommender", env)`.
Models load in a background thread at start-up: /healthz answers at once, /readyz is 503
until the models are loaded and the item-feature cache is warm. /admin/reload loads new
refs beside the serving ones and swaps atomically; a failed load keeps the old ones.
/admin/faults (drills only, `serving.allow_fault_injection`) makes this one slot slow, failing
or degenerate at runtime. Every route reads its body under `serving.max_body_bytes` and
`serving.body_timeout_seconds` (413 / 408, deployments/bodies.py:BodyLimits, as the gateway).
API and fallbacks: docs/serving.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

import bentoml
import orjson
from pydantic import BaseModel, ConfigDict, Field

from crossfade.config import load_settings
from crossfade.log import configure_logging, get_logger
from crossfade.safety.privacy import edge_pseudonymizer
from crossfade.serving import fallbacks as F
from crossfade.serving.api import (
    FeedbackBatch,
    FeedbackRequest,
    RecommendRequest,
    ReloadRequest,
)
from crossfade.serving.logs import FEEDBACK, REQUESTS, BatchedLog, logs_dir
from crossfade.serving.pipeline import RecommendationPipeline
from deployments.bodies import BodyLimits, Limits, Reply, error_reply, parse_request
from deployments.heap import settle_heap
from deployments.recommender.loading import (
    build_pipeline,
    listener_history,
    open_online_features,
)
from deployments.recommender.routes import app as routes
from deployments.recommender.routes import serve_with

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
log = get_logger("deployments.recommender")
PIPELINE_ERROR = "pipeline_error"
ACCEPTED = orjson.dumps({"status": "accepted"})

INJECTED_ERROR = "injected fault (drill): error_rate"
STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
REQUEST_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True)
class RecommenderMetrics:
    """Handles on the recommender's Prometheus metrics (docs/serving.md lists them)."""

    stage_seconds: Any  # Histogram{slot, stage}
    request_seconds: Any  # Histogram{slot, shelf}
    fallbacks: Any  # Counter{slot, fallback}
    stale_features: Any  # Counter{slot, kind}
    feedback: Any  # Counter{slot, event, served_by}
    refused_bodies: Any  # Counter{slot, status}: 413 too large, 408 too slow


@cache
def recommender_metrics() -> RecommenderMetrics:
    """Create (once per process, inside the worker) and return the recommender's metrics.

    Not at import time: BentoML sets the Prometheus multiprocess directory after importing the
    service module, and metrics created before that never reach `/metrics`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # still BentoML's multiprocess path
        metrics: Any = bentoml.metrics
        counter, histogram = metrics.Counter, metrics.Histogram
    return RecommenderMetrics(
        stage_seconds=histogram(
            name="crossfade_recommender_stage_seconds",
            documentation="time spent per pipeline stage",
            labelnames=["slot", "stage"],
            buckets=STAGE_BUCKETS,
        ),
        request_seconds=histogram(
            name="crossfade_recommender_request_seconds",
            documentation="time to answer /recommend, all stages",
            labelnames=["slot", "shelf"],
            buckets=REQUEST_BUCKETS,
        ),
        fallbacks=counter(
            name="crossfade_recommender_fallbacks",
            documentation="requests that took a fallback, by fallback name",
            labelnames=["slot", "fallback"],
        ),
        stale_features=counter(
            name="crossfade_recommender_stale_features",
            documentation="feature rows served as defaults (user/item, missing/stale)",
            labelnames=["slot", "kind"],
        ),
        feedback=counter(
            name="crossfade_recommender_feedback",
            documentation="feedback events received, by event and the slot that served the item",
            labelnames=["slot", "event", "served_by"],
        ),
        refused_bodies=counter(
            name="crossfade_recommender_refused_bodies",
            documentation="request bodies refused: 413 over serving.max_body_bytes, 408 slower "
            "than serving.body_timeout_seconds",
            labelnames=["slot", "status"],
        ),
    )


class FaultRequest(BaseModel):
    """POST /admin/faults: what to break in this slot (all off by default = healthy)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    latency_ms: int = Field(0, ge=0, le=60_000, description="added to every /recommend")
    error_rate: float = Field(0.0, ge=0.0, le=1.0, description="share answered with HTTP 500")
    degenerate: bool = Field(False, description="the same few items for every listener")


def pseudonym(value: str) -> str:
    """A short one-way digest, so logs can correlate a listener without naming them."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


@bentoml.service(
    name="crossfade-recommender",
    traffic={"timeout": 30},
    # no per-request access log line: the request log and the metrics record every answer,
    # and formatting a line per request cost a few per cent of the request's CPU
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/recommend"]},  # spans with no exporter: CPU for nothing
)
@bentoml.asgi_app(routes, path="/")
class Recommender:
    """One slot's recommender: pipeline, metrics, request and feedback logs."""

    def __init__(self) -> None:
        configure_logging()
        self.settings = load_settings()
        self.slot = self.settings.serving.slot
        # Clients send account ids; only their keyed pseudonyms go further (docs/privacy.md).
        self.to_pseudonym = edge_pseudonymizer(self.settings)
        root = self.settings.data_root
        size = self.settings.serving.log_batch_size
        self.request_log = BatchedLog(logs_dir(root, REQUESTS), self.slot, size)
        self.feedback_log = BatchedLog(logs_dir(root, FEEDBACK), self.slot, size)
        self.metrics = recommender_metrics()
        self.pipeline: RecommendationPipeline | None = None
        self.load_error: str | None = None
        self.faults = FaultRequest()
        self._fault_rng = random.Random(self.settings.seed)
        self._degenerate_items: list[dict[str, Any]] | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._initial_load, name="model-load", daemon=True).start()
        threading.Thread(target=self._flush_logs, name="log-flush", daemon=True).start()
        serve_with(
            recommend=self.recommend, feedback=self.feedback, feedback_batch=self.feedback_batch
        )

    # --- lifecycle -------------------------------------------------------------------------
    def _initial_load(self) -> None:
        serving = self.settings.serving
        try:
            self.features = open_online_features(self.settings)
            self.history = listener_history(self.settings)
            pipeline = build_pipeline(
                self.settings, serving.candidates_ref, serving.ranker_ref,
                self.features, self.history,
            )  # fmt: skip
            settle_heap()
            self.pipeline = pipeline  # ready from here on
        except Exception as exc:
            self.load_error = str(exc)
            log.error("initial model load failed", extra={"slot": self.slot, "error": str(exc)})

    def _flush_logs(self) -> None:
        every = self.settings.serving.log_flush_seconds
        while not self._stop.wait(every):
            self.request_log.flush()
            self.feedback_log.flush()

    def __is_ready__(self) -> bool:
        """Ready once the models are loaded and the item-feature cache is warm."""
        return self.pipeline is not None

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self.request_log.close()
        self.feedback_log.close()

    # --- API -----------------------------------------------------------------------------
    async def recommend(self, raw: bytes) -> Reply:
        """Recommendations for one listener, shelf and context (contract: docs/serving.md).

        Served by the plain route of deployments/recommender/routes.py. The pipeline runs on
        the event loop: it holds the GIL throughout, so a worker thread would add a hop per
        request and no parallelism; requests are answered in arrival order.
        """
        request = parse_request(raw, RecommendRequest)
        if isinstance(request, Reply):
            return request
        faults = self.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000.0)
        if faults.error_rate and self._fault_rng.random() < faults.error_rate:
            return error_reply(500, f"{INJECTED_ERROR}={faults.error_rate:g}")
        return Reply(200, orjson.dumps(self.answer(request)))

    def answer(self, request: RecommendRequest) -> dict[str, Any]:
        """The answer to a valid request: pipeline, fallbacks, metrics and the request log."""
        started = time.perf_counter()
        listener_id = self.to_pseudonym(request.listener_id)  # features, logs, answer: pseudonym
        context, shelf, k = request.context, request.shelf, request.k
        request = RecommendRequest.model_construct(
            listener_id=listener_id, context=context, shelf=shelf, k=k
        )
        pipeline = self.pipeline
        if pipeline is None:
            answer = self._empty(request, F.NO_MODELS)
        else:
            try:
                result = pipeline.recommend(request)
                answer = result.response(self.slot)
                for kind, n in result.stale.items():
                    self.metrics.stale_features.labels(slot=self.slot, kind=kind).inc(n)
            except Exception as exc:
                log.error(
                    "pipeline error",
                    extra={"listener": pseudonym(listener_id), "error": repr(exc)},
                )
                answer = self._empty(request, PIPELINE_ERROR)
        if self.faults.degenerate:
            answer = self._degenerate(answer, k)
        metrics = self.metrics
        for stage, ms in answer["stage_ms"].items():
            metrics.stage_seconds.labels(slot=self.slot, stage=stage).observe(ms / 1000.0)
        for name in answer["fallbacks"]:
            metrics.fallbacks.labels(slot=self.slot, fallback=name).inc()
        metrics.request_seconds.labels(slot=self.slot, shelf=shelf).observe(
            time.perf_counter() - started
        )
        self.request_log.append(
            {
                "ts": datetime.now(UTC).isoformat(),
                "listener_id": listener_id,
                "slot": self.slot,
                "shelf": shelf,
                "k": k,
                "country": context.country,
                "device": context.device,
                "platform": context.platform,
                "items": [i["item_id"] for i in answer["items"]],
                "fallbacks": answer["fallbacks"],
                "model": answer["model"],
            }
        )
        return answer

    def _degenerate(self, answer: dict[str, Any], k: int) -> dict[str, Any]:
        """Injected fault: the first answer's items, served to every later listener."""
        if self._degenerate_items is None and answer["items"]:
            self._degenerate_items = [dict(item) for item in answer["items"][:3]]
        items = self._degenerate_items or answer["items"]
        return {**answer, "items": [dict(item) for item in items[:k]]}

    def _empty(self, request: RecommendRequest, fallback: str) -> dict[str, Any]:
        pipeline = self.pipeline
        models = pipeline.models if pipeline is not None else None
        return {
            "listener_id": request.listener_id,
            "shelf": request.shelf,
            "slot": self.slot,
            "model": {
                "candidates": models.candidates_version if models else "none",
                "ranker": models.ranker_version if models else "none",
            },
            "items": [],
            "fallbacks": [fallback],
            "stage_ms": {},
        }

    async def feedback(self, raw: bytes) -> Reply:
        """A play, skip or save of a recommended item: logged and counted (202 Accepted)."""
        event = parse_request(raw, FeedbackRequest)
        if isinstance(event, Reply):
            return event
        self._record_feedback(event)
        return Reply(202, ACCEPTED)

    async def feedback_batch(self, raw: bytes) -> Reply:
        """A listening session's feedback in one call (the whole batch was validated first)."""
        batch = parse_request(raw, FeedbackBatch)
        if isinstance(batch, Reply):
            return batch
        for event in batch.events:
            self._record_feedback(event)
        return Reply(202, orjson.dumps({"status": "accepted", "events": len(batch.events)}))

    def _record_feedback(self, event: FeedbackRequest) -> None:
        served_by = event.slot or "unknown"
        self.metrics.feedback.labels(slot=self.slot, event=event.event, served_by=served_by).inc()
        self.feedback_log.append(
            {
                "ts": event.timestamp.isoformat(),
                "received": datetime.now(UTC).isoformat(),
                # the feedback log holds pseudonyms only
                "listener_id": self.to_pseudonym(event.listener_id),
                "item_id": event.item_id,
                "event": event.event,
                "ms_played": event.ms_played,
                "slot": event.slot,
                "recorded_by": self.slot,
            }
        )

    @bentoml.api(route="/admin/reload", input_spec=ReloadRequest)
    def admin_reload(self, candidates: str, ranker: str, ctx: bentoml.Context) -> dict[str, Any]:
        """Load other model refs off the request path, then swap atomically (bearer token)."""
        refused = self._refuse_admin(ctx)
        if refused is not None:
            return refused
        current = self.pipeline.models if self.pipeline is not None else None
        if current is not None and (current.candidates_version, current.ranker_version) == (
            candidates,
            ranker,
        ):
            return {
                "status": "already serving",
                "model": {"candidates": candidates, "ranker": ranker},
            }
        if not self._reload_lock.acquire(blocking=False):
            ctx.response.status_code = 409
            return {"error": "a reload is already running; retry when it ends"}
        try:
            features = getattr(self, "features", None) or open_online_features(self.settings)
            history = getattr(self, "history", None) or listener_history(self.settings)
            fresh = build_pipeline(self.settings, candidates, ranker, features, history)
        except Exception as exc:
            self._reload_lock.release()
            log.warning("reload refused", extra={"slot": self.slot, "error": str(exc)})
            ctx.response.status_code = 422
            current = self.pipeline.models if self.pipeline is not None else None
            return {
                "error": str(exc)[:1000],
                "serving": {
                    "candidates": current.candidates_version if current else "none",
                    "ranker": current.ranker_version if current else "none",
                },
            }
        self.pipeline = fresh  # one reference assignment: requests see old or new, never half
        self.load_error = None
        # The gateway sends a reloaded green or shadow nothing until this call answers, so the
        # old pipeline's collection stalls no listener there (blue, at promotion, pays it once).
        settle_heap()
        self._reload_lock.release()
        return {
            "status": "reloaded",
            "model": {
                "candidates": fresh.models.candidates_version,
                "ranker": fresh.models.ranker_version,
            },
        }

    @bentoml.api(route="/admin/faults", input_spec=FaultRequest)
    def admin_faults(
        self, latency_ms: int, error_rate: float, degenerate: bool, ctx: bentoml.Context
    ) -> dict[str, Any]:
        """Drills only: make this slot slow, failing or degenerate now (all off = healthy).

        Refused (403) unless `serving.allow_fault_injection` is true; needs the admin token.
        """
        if not self.settings.serving.allow_fault_injection:
            ctx.response.status_code = 403
            return {
                "error": "fault injection is off: it is a drill-only control, enabled by "
                "serving.allow_fault_injection (CROSSFADE_SERVING__ALLOW_FAULT_INJECTION=true)"
            }
        refused = self._refuse_admin(ctx)
        if refused is not None:
            return refused
        faults = FaultRequest(latency_ms=latency_ms, error_rate=error_rate, degenerate=degenerate)
        self._degenerate_items = None
        self.faults = faults  # one reference assignment, like the pipeline swap
        log.warning("faults injected", extra={"slot": self.slot, **faults.model_dump()})
        return {"slot": self.slot, "faults": faults.model_dump()}

    def _refuse_admin(self, ctx: bentoml.Context) -> dict[str, Any] | None:
        """The error body (status set on ctx) unless the bearer token is the admin token."""
        token = self.settings.serving.admin_token
        if token is None:
            ctx.response.status_code = 403
            return {"error": "admin API disabled: set CROSSFADE_SERVING__ADMIN_TOKEN"}
        header = ctx.request.headers.get("authorization", "")
        if not hmac.compare_digest(header.encode(), f"Bearer {token.get_secret_value()}".encode()):
            ctx.response.status_code = 401
            return {"error": "missing or wrong bearer token"}
        return None


def _count_refused() -> Any:
    """Count a refused body against this worker's slot (metrics exist only inside a worker)."""
    counter, slot = recommender_metrics().refused_bodies, load_settings().serving.slot
    return lambda status: counter.labels(slot=slot, status=str(status)).inc()


# Every route, admin ones included, reads its body under the same limits as the gateway
# (the decorator made `Recommender` a BentoML Service; its stubs still say a class).
cast(Any, Recommender).add_asgi_middleware(
    BodyLimits,
    limits=lambda: Limits.of(load_settings()),
    on_refused=_count_refused,
)
