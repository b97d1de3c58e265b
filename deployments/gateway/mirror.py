"""Fire-and-forget mirroring to the shadow slot, with a cap on calls in flight.

`ShadowMirror.submit` is called after the live answer is ready and returns at once: the shadow
call runs as a background asyncio task, never awaited on the request path, so a slow or dead
shadow cannot add listener latency. When `max_inflight` calls are already running the mirror is
dropped (and counted) instead of queued, so a slow shadow cannot pile up work either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from deployments.gateway.client import SlotClient
from deployments.gateway.pairing import PairOutcome, compare

log = logging.getLogger(__name__)


class PairSink(Protocol):
    """Where pair outcomes go (the rollout store's observation recorder)."""

    def record_pair(
        self,
        overlap: float | None,
        rank_corr: float | None,
        score_drift: float | None,
        shadow_latency_ms: float | None,
        shadow_error: bool,
        at: float | None = None,
    ) -> None: ...


def ranked(response: dict[str, Any]) -> tuple[list[str], list[float]]:
    """Item ids and scores of a recommender response, in rank order."""
    items: Sequence[dict[str, Any]] = response.get("items") or []
    return [str(i["item_id"]) for i in items], [float(i["score"]) for i in items]


class ShadowMirror:
    """Sends copies of live requests to shadow and records how its answer compares."""

    def __init__(
        self,
        client: SlotClient,
        sink: PairSink,
        *,
        max_inflight: int,
        metrics: Any | None = None,
    ) -> None:
        self.client = client
        self.sink = sink
        self.max_inflight = max_inflight
        self.metrics = metrics
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def inflight(self) -> int:
        """Mirrored calls running now."""
        return len(self._tasks)

    def submit(self, body: bytes, live: dict[str, Any], k: int) -> bool:
        """Start mirroring one request unless the in-flight cap is reached; never blocks."""
        if len(self._tasks) >= self.max_inflight:
            self.dropped += 1
            if self.metrics is not None:
                self.metrics.shadow_dropped.inc()
            return False
        task = asyncio.get_running_loop().create_task(self._mirror(body, live, k))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.sent += 1
        return True

    async def _mirror(self, body: bytes, live: dict[str, Any], k: int) -> None:
        started = time.perf_counter()
        outcome: PairOutcome | None = None
        try:
            status, content = await self.client.post("/recommend", body)
            latency_ms = (time.perf_counter() - started) * 1000
            if status >= 400:
                raise RuntimeError(f"shadow answered HTTP {status}")
            shadow_items, shadow_scores = ranked(orjson.loads(content))
            live_items, live_scores = ranked(live)
            outcome = compare(live_items, live_scores, shadow_items, shadow_scores, k)
        except Exception as exc:  # any failure of shadow is an observation, never an error
            latency_ms = (time.perf_counter() - started) * 1000
            self.errors += 1
            log.info("shadow call failed: %s", type(exc).__name__)
        self._record(outcome, latency_ms)

    def _record(self, outcome: PairOutcome | None, latency_ms: float) -> None:
        if outcome is None:
            self.sink.record_pair(None, None, None, latency_ms, True)
        else:
            self.sink.record_pair(
                outcome.overlap, outcome.kendall_tau, outcome.score_drift, latency_ms, False
            )
        if self.metrics is not None:
            self.metrics.shadow_requests.labels(outcome="error" if outcome is None else "ok").inc()
            self.metrics.shadow_latency.observe(latency_ms / 1000)
            if outcome is not None:
                self.metrics.shadow_overlap.set(outcome.overlap)

    async def drain(self, timeout: float) -> None:
        """Wait (up to `timeout` s) for mirrored calls in flight, e.g. before shutting down."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
