"""Refused release requests in the audit log, rate-limited per client and never lost.

Every refusal (unknown token, invalid body, missing precondition, forbidden, illegal move,
conflict) is worth an audit row, but an anonymous flood must not grow the log without bound.
Each client (an actor, or `anonymous@<address>`) has a token bucket: `burst` refusals are
written in full, then `per_minute`. Refusals past the bucket are counted, and one summary row,
"N more refusals from X suppressed", is written as soon as the bucket allows one, when
`flush()` runs (the gateway calls it on its watch loop) and at `close()`, whatever the rate:
the count is never lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployments.rollout.store import RolloutStore

log = logging.getLogger(__name__)

MAX_CLIENTS = 10_000  # buckets kept; full, quiet ones are dropped first


@dataclass
class _Bucket:
    tokens: float
    at: float
    suppressed: int = 0
    first: float | None = None
    last: float | None = None
    actions: Counter[str] = field(default_factory=Counter)
    context: dict[str, Any] = field(default_factory=dict)


class RefusalAudit:
    """Writes refusal rows through a per-client token bucket; summaries are never dropped."""

    def __init__(
        self,
        store: RolloutStore,
        *,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.rate = per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def _bucket(self, client: str, now: float) -> tuple[_Bucket, list[dict[str, Any]]]:
        """The client's bucket, refilled to `now`, and the summaries an eviction produced
        (the caller writes them once the lock is released)."""
        evicted: list[dict[str, Any]] = []
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= MAX_CLIENTS:
                evicted = self._evict(now)
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        return bucket, evicted

    def _evict(self, now: float) -> list[dict[str, Any]]:
        for key, bucket in list(self._buckets.items()):
            if not bucket.suppressed:
                del self._buckets[key]
        if len(self._buckets) < MAX_CLIENTS:
            return []
        summaries = self._flush_locked(now, force=True)  # all of them owe a summary
        self._buckets.clear()
        return summaries

    def record(
        self,
        client: str,
        where: Callable[[], dict[str, Any]] | None = None,
        **row: Any,
    ) -> bool:
        """Audit one refusal of `client` (row: actor, action, outcome, reason, and rollout_id,
        from_phase, to_phase or a `where()` that returns them, called only when the row is
        written); False when it was only counted (the summary comes later)."""
        now = self.clock()
        summary: dict[str, Any] | None = None
        with self._lock:
            bucket, evicted = self._bucket(client, now)
            written = bucket.tokens >= 1
            if written:
                bucket.tokens -= 1
                summary = self._take_summary(client, bucket)
            else:
                bucket.suppressed += 1
                bucket.first = bucket.first if bucket.first is not None else now
                bucket.last = now
                bucket.actions[f"{row.get('action')} {row.get('outcome')}"] += 1
        for evicted_summary in evicted:
            self._write(evicted_summary)
        if not written:
            return False
        if where is not None:
            row.update(where())
        with self._lock:  # a later summary names the rollout of the last row written
            bucket.context = {k: row.get(k) for k in ("rollout_id", "from_phase")}
        if summary is not None:
            self._write(summary)
        self._write(row)
        return True

    def flush(self, force: bool = False) -> int:
        """Write the summary of every client whose bucket allows one (every client: force);
        returns the summaries written."""
        with self._lock:
            summaries = self._flush_locked(self.clock(), force)
        for summary in summaries:
            self._write(summary)
        return len(summaries)

    def close(self) -> None:
        """Write every pending summary (the process is stopping)."""
        self.flush(force=True)

    def pending(self) -> int:
        """Refusals counted but not yet summarized."""
        with self._lock:
            return sum(b.suppressed for b in self._buckets.values())

    def _flush_locked(self, now: float, force: bool) -> list[dict[str, Any]]:
        out = []
        for client in list(self._buckets):
            bucket, _ = self._bucket(client, now)  # existing clients: never an eviction
            if not bucket.suppressed or (bucket.tokens < 1 and not force):
                continue
            bucket.tokens = max(0.0, bucket.tokens - 1)
            summary = self._take_summary(client, bucket)
            if summary is not None:
                out.append(summary)
        return out

    def _take_summary(self, client: str, bucket: _Bucket) -> dict[str, Any] | None:
        if not bucket.suppressed:
            return None
        what = ", ".join(f"{n} x {kind}" for kind, n in bucket.actions.most_common())
        span = (bucket.last or 0.0) - (bucket.first or 0.0)
        summary = {
            "actor": client,
            "action": "refusals",
            "outcome": "suppressed",
            "reason": f"{bucket.suppressed} more refusals from {client} suppressed over "
            f"{span:.0f} s ({what}); the audit rate is limited per client",
            "metrics": {"suppressed": bucket.suppressed, "actions": dict(bucket.actions)},
            "rollout_id": bucket.context.get("rollout_id"),
            "from_phase": bucket.context.get("from_phase"),
            "to_phase": bucket.context.get("from_phase"),
        }
        bucket.suppressed, bucket.first, bucket.last = 0, None, None
        bucket.actions = Counter()
        return summary

    def _write(self, row: dict[str, Any]) -> None:
        try:
            self.store.audit(**row)
        except Exception as exc:  # the refusal stands; losing its audit line must be loud
            log.error("audit of a refused %s failed: %s", row.get("action"), exc)
