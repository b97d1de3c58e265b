"""The recommender: a BentoML service answering /recommend and /feedback for one slot.

Run one process per slot (`CROSSFADE_SERVING__SLOT=blue|green|shadow`), e.g. through
`deployments.process.start_service("deployments.recommender.service:Recommender", env)`.
Models load in a background thread at start-up: /healthz answers at once, /readyz is 503
until the models are loaded and the item-feature cache is warm. /admin/reload loads new
refs beside the serving ones and swaps atomically; a failed load keeps the old ones.
API and fallbacks: docs/serving.md.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import bentoml

from crossfade.config import load_settings
from crossfade.log import configure_logging, get_logger
from crossfade.serving import fallbacks as F
from crossfade.serving.api import (
    FeedbackEvent,
    FeedbackRequest,
    RecommendRequest,
    ReloadRequest,
    RequestContext,
    Shelf,
)
from crossfade.serving.logs import FEEDBACK, REQUESTS, BatchedLog, logs_dir
from crossfade.serving.pipeline import RecommendationPipeline
from deployments.recommender.loading import (
    build_pipeline,
    listener_history,
    open_online_features,
)

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
log = get_logger("deployments.recommender")
PIPELINE_ERROR = "pipeline_error"

STAGE_SECONDS = bentoml.metrics.Histogram(
    name="crossfade_recommender_stage_seconds",
    documentation="time spent per pipeline stage",
    labelnames=["slot", "stage"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
REQUEST_SECONDS = bentoml.metrics.Histogram(
    name="crossfade_recommender_request_seconds",
    documentation="time to answer /recommend, all stages",
    labelnames=["slot", "shelf"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
FALLBACKS = bentoml.metrics.Counter(
    name="crossfade_recommender_fallbacks",
    documentation="requests that took a fallback, by fallback name",
    labelnames=["slot", "fallback"],
)
STALE_FEATURES = bentoml.metrics.Counter(
    name="crossfade_recommender_stale_features",
    documentation="feature rows served as defaults (user/item, missing/stale)",
    labelnames=["slot", "kind"],
)
FEEDBACK_EVENTS = bentoml.metrics.Counter(
    name="crossfade_recommender_feedback",
    documentation="feedback events received, by event and the slot that served the item",
    labelnames=["slot", "event", "served_by"],
)


def pseudonym(value: str) -> str:
    """A short one-way digest, so logs can correlate a listener without naming them."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


@bentoml.service(name="crossfade-recommender", traffic={"timeout": 30})
class Recommender:
    """One slot's recommender: pipeline, metrics, request and feedback logs."""

    def __init__(self) -> None:
        configure_logging()
        self.settings = load_settings()
        self.slot = self.settings.serving.slot
        root = self.settings.data_root
        size = self.settings.serving.log_batch_size
        self.request_log = BatchedLog(logs_dir(root, REQUESTS), self.slot, size)
        self.feedback_log = BatchedLog(logs_dir(root, FEEDBACK), self.slot, size)
        self.pipeline: RecommendationPipeline | None = None
        self.load_error: str | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._initial_load, name="model-load", daemon=True).start()
        threading.Thread(target=self._flush_logs, name="log-flush", daemon=True).start()

    # --- lifecycle -------------------------------------------------------------------------
    def _initial_load(self) -> None:
        serving = self.settings.serving
        try:
            self.features = open_online_features(self.settings)
            self.history = listener_history(self.settings)
            self.pipeline = build_pipeline(
                self.settings, serving.candidates_ref, serving.ranker_ref,
                self.features, self.history,
            )  # fmt: skip
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
    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    def recommend(
        self, listener_id: str, context: RequestContext, shelf: Shelf, k: int
    ) -> dict[str, Any]:
        """Recommendations for one listener, shelf and context (contract: docs/serving.md)."""
        started = time.perf_counter()
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
                    STALE_FEATURES.labels(slot=self.slot, kind=kind).inc(n)
            except Exception as exc:
                log.error(
                    "pipeline error",
                    extra={"listener": pseudonym(listener_id), "error": repr(exc)},
                )
                answer = self._empty(request, PIPELINE_ERROR)
        for stage, ms in answer["stage_ms"].items():
            STAGE_SECONDS.labels(slot=self.slot, stage=stage).observe(ms / 1000.0)
        for name in answer["fallbacks"]:
            FALLBACKS.labels(slot=self.slot, fallback=name).inc()
        REQUEST_SECONDS.labels(slot=self.slot, shelf=shelf).observe(time.perf_counter() - started)
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

    @bentoml.api(route="/feedback", input_spec=FeedbackRequest)
    def feedback(
        self,
        listener_id: str,
        item_id: str,
        event: FeedbackEvent,
        ms_played: int | None,
        timestamp: datetime,
        slot: str | None,
        ctx: bentoml.Context,
    ) -> dict[str, Any]:
        """A play, skip or save of a recommended item: logged and counted (202 Accepted)."""
        FEEDBACK_EVENTS.labels(slot=self.slot, event=event, served_by=slot or "unknown").inc()
        self.feedback_log.append(
            {
                "ts": timestamp.isoformat(),
                "received": datetime.now(UTC).isoformat(),
                "listener_id": listener_id,
                "item_id": item_id,
                "event": event,
                "ms_played": ms_played,
                "slot": slot,
                "recorded_by": self.slot,
            }
        )
        ctx.response.status_code = 202
        return {"status": "accepted"}

    @bentoml.api(route="/admin/reload", input_spec=ReloadRequest)
    def admin_reload(self, candidates: str, ranker: str, ctx: bentoml.Context) -> dict[str, Any]:
        """Load other model refs off the request path, then swap atomically (bearer token)."""
        token = self.settings.serving.admin_token
        if token is None:
            ctx.response.status_code = 403
            return {"error": "admin API disabled: set CROSSFADE_SERVING__ADMIN_TOKEN"}
        header = ctx.request.headers.get("authorization", "")
        if not hmac.compare_digest(header.encode(), f"Bearer {token.get_secret_value()}".encode()):
            ctx.response.status_code = 401
            return {"error": "missing or wrong bearer token"}
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
        self._reload_lock.release()
        return {
            "status": "reloaded",
            "model": {
                "candidates": fresh.models.candidates_version,
                "ranker": fresh.models.ranker_version,
            },
        }
