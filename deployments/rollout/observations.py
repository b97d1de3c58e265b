"""What the gateway records per request, shadow pair and feedback, and the measures made of it.

The gateway calls `record_*` on its request path, so they only append to an in-memory buffer;
a background thread flushes it to the store in one batched insert every `flush_seconds` (or
when `batch_size` rows are waiting). A failed flush keeps the rows for the next attempt (up to
`max_buffer`, then the oldest are dropped and counted): observations never fail a request.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from deployments.rollout.store import RolloutStore

log = logging.getLogger(__name__)

SLOTS = ("blue", "green", "shadow")
SHADOW_PAIR_SLOT = "shadow"


class ObservationRecorder:
    """Buffered, thread-safe writer of observations into the rollout store."""

    def __init__(
        self,
        store: RolloutStore,
        *,
        flush_seconds: float = 1.0,
        batch_size: int = 500,
        max_buffer: int = 100_000,
        start: bool = True,
    ) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.max_buffer = max_buffer
        self.dropped = 0
        self.flush_errors = 0
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="observation-flush", daemon=True)
            self._thread.start()

    # -- the request path: append only -----------------------------------------------------
    def record_request(
        self,
        slot: str,
        latency_ms: float,
        error: bool,
        fallback: bool,
        item_ids: Sequence[str],
        at: float | None = None,
    ) -> None:
        """One answered (or failed) request of a slot."""
        self._append(
            {
                "at": at if at is not None else time.time(),
                "kind": "request",
                "slot": slot,
                "latency_ms": float(latency_ms),
                "error": bool(error),
                "fallback": bool(fallback),
                "items": tuple(item_ids),  # encoded at flush time, off the request path
            }
        )

    def record_pair(
        self,
        overlap: float | None,
        rank_corr: float | None,
        score_drift: float | None,
        shadow_latency_ms: float | None,
        shadow_error: bool,
        at: float | None = None,
    ) -> None:
        """One mirrored request: the shadow's answer compared with the live one."""
        self._append(
            {
                "at": at if at is not None else time.time(),
                "kind": "pair",
                "slot": SHADOW_PAIR_SLOT,
                "latency_ms": _finite(shadow_latency_ms),
                "error": bool(shadow_error),
                "overlap": _finite(overlap),
                "rank_corr": _finite(rank_corr),
                "score_drift": _finite(score_drift),
            }
        )

    def record_feedback(self, slot: str | None, event: str, at: float | None = None) -> None:
        """One listener feedback event attributed to the slot that served the item."""
        self._append(
            {
                "at": at if at is not None else time.time(),
                "kind": "feedback",
                "slot": slot,
                "event": event,
            }
        )

    def _append(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._buffer.append(row)
            overflow = len(self._buffer) - self.max_buffer
            if overflow > 0:
                del self._buffer[:overflow]
                self.dropped += overflow
            full = len(self._buffer) >= self.batch_size
        if full:
            self._wake.set()

    # -- background flush ------------------------------------------------------------------
    def flush(self) -> int:
        """Write everything buffered now; returns the rows written (0 when the write failed)."""
        with self._flush_lock:
            with self._lock:
                rows, self._buffer = self._buffer, []
            if not rows:
                return 0
            try:
                self.store.insert_observations([_encoded(row) for row in rows])
            except Exception as exc:  # the store is down: keep the rows, try again later
                self.flush_errors += 1
                log.warning("observation flush failed (%d rows kept): %s", len(rows), exc)
                with self._lock:
                    self._buffer[:0] = rows
                    overflow = len(self._buffer) - self.max_buffer
                    if overflow > 0:
                        del self._buffer[:overflow]
                        self.dropped += overflow
                return 0
            return len(rows)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Stop the flush thread and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()


def _encoded(row: dict[str, Any]) -> dict[str, Any]:
    """The row as stored: item ids as a JSON list."""
    items = row.get("items")
    if items is None or isinstance(items, str):
        return row
    return {**row, "items": json.dumps([str(i) for i in items])}


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Measure:
    """A measure over a window: its value (None when it cannot be computed) and sample size."""

    value: float | None
    samples: int


def _quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (no interpolation: a p99 is a latency someone really saw)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[rank - 1])


def _rate(flags: Iterable[bool | None]) -> Measure:
    seen = [bool(f) for f in flags if f is not None]
    return Measure(sum(seen) / len(seen) if seen else None, len(seen))


def _mean(values: Iterable[float | None]) -> Measure:
    seen = [float(v) for v in values if v is not None]
    return Measure(sum(seen) / len(seen) if seen else None, len(seen))


def _diversity(lists: Sequence[list[str]], n: int) -> Measure:
    """Distinct items over items shown in the latest n responses (equal n keeps slots fair)."""
    recent = lists[-n:] if n > 0 else []
    shown = [item for items in recent for item in items]
    return Measure(len(set(shown)) / len(shown) if shown else None, len(recent))


def slot_measures(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Measure]]:
    """Per slot, every measure the guardrails can name, from one window of observations.

    Request measures (p99_latency_ms, error_rate, fallback_rate, catalogue_diversity) come from
    request rows, skip_rate and save_rate from feedback rows, and the shadow_* measures from
    mirrored pairs (reported under the slot "shadow"). catalogue_diversity is computed over the
    same number of most recent responses for every slot, since distinct/shown falls with volume.
    """
    ordered = sorted(rows, key=lambda r: r["at"])
    requests: dict[str, list[dict[str, Any]]] = {}
    feedback: dict[str, list[str]] = {}
    pairs: list[dict[str, Any]] = []
    for row in ordered:
        if row["kind"] == "request" and row["slot"]:
            requests.setdefault(row["slot"], []).append(row)
        elif row["kind"] == "feedback" and row["slot"]:
            feedback.setdefault(row["slot"], []).append(str(row["event"]))
        elif row["kind"] == "pair":
            pairs.append(row)
    item_lists = {
        slot: [list(r["items"] or []) for r in reqs if not r["error"]]
        for slot, reqs in requests.items()
    }
    fair_n = min((len(v) for v in item_lists.values() if v), default=0)
    out: dict[str, dict[str, Measure]] = {slot: {} for slot in SLOTS}
    for slot in set(requests) | set(feedback) | set(SLOTS):
        measures = out.setdefault(slot, {})
        reqs = requests.get(slot, [])
        ok_latencies = [float(r["latency_ms"]) for r in reqs if r["latency_ms"] is not None]
        measures["requests"] = Measure(float(len(reqs)), len(reqs))
        measures["p99_latency_ms"] = Measure(_quantile(ok_latencies, 0.99), len(ok_latencies))
        measures["error_rate"] = _rate(r["error"] for r in reqs)
        measures["fallback_rate"] = _rate(r["fallback"] for r in reqs if not r["error"])
        measures["catalogue_diversity"] = _diversity(item_lists.get(slot, []), fair_n)
        events = feedback.get(slot, [])
        measures["skip_rate"] = _rate(e == "skip" for e in events)
        measures["save_rate"] = _rate(e == "save" for e in events)
    shadow = out[SHADOW_PAIR_SLOT]
    shadow["shadow_overlap"] = _mean(p["overlap"] for p in pairs)
    shadow["shadow_rank_corr"] = _mean(p["rank_corr"] for p in pairs)
    shadow["shadow_score_drift"] = _mean(p["score_drift"] for p in pairs)
    shadow["shadow_error_rate"] = _rate(p["error"] for p in pairs)
    pair_latencies = [float(p["latency_ms"]) for p in pairs if p["latency_ms"] is not None]
    shadow["shadow_p99_latency_ms"] = Measure(_quantile(pair_latencies, 0.99), len(pair_latencies))
    if not requests.get(SHADOW_PAIR_SLOT):
        # The shadow's own requests are the mirrored pairs.
        shadow["p99_latency_ms"] = shadow["shadow_p99_latency_ms"]
        shadow["error_rate"] = shadow["shadow_error_rate"]
    return out


def coverage(
    rows: Sequence[dict[str, Any]], slot: str, start: float, end: float, buckets: int
) -> float:
    """Share of `buckets` equal parts of [start, end) holding at least one row of `slot`."""
    if end <= start:
        return 0.0
    width = (end - start) / buckets
    hit = {
        min(buckets - 1, int((row["at"] - start) // width))
        for row in rows
        if row.get("slot") == slot and start <= row["at"] < end
    }
    return len(hit) / buckets
