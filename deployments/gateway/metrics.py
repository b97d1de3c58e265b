"""The gateway's Prometheus metrics, named as configs/guardrails.yaml's queries expect them.

Created once per process on first use, in a registry of their own that the gateway's
`/metrics` renders. The gateway is one uvicorn process (one event loop), so plain in-memory
metrics suffice: no multiprocess files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds; the p99 latency guardrail reads this histogram (at most 300 ms locally).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5)


@dataclass(frozen=True)
class GatewayMetrics:
    """Handles on every metric the gateway exports."""

    registry: CollectorRegistry  # what /metrics renders
    requests: Any  # Counter{slot, outcome, fallback}
    latency: Any  # Histogram{slot}, seconds
    green_to_blue: Any  # Counter: green failed, blue answered
    unanswered: Any  # Counter: no live slot answered (503)
    shadow_requests: Any  # Counter{outcome}: mirrored calls that ran (ok / error)
    shadow_dropped: Any  # Counter: mirrors skipped because too many were in flight
    shadow_overlap: Any  # Gauge: overlap@k of the latest pair
    shadow_latency: Any  # Histogram: shadow call latency, seconds
    feedback: Any  # Counter{slot, event}
    diversity: Any  # Gauge{slot}: distinct items / items shown, recent responses
    refused_bodies: Any  # Counter{status}: bodies refused for size (413) or time (408)


@cache
def gateway_metrics() -> GatewayMetrics:
    """Create (once per process) and return the gateway's metrics."""
    registry = CollectorRegistry()

    def counter(name: str, doc: str, labels: list[str] | None = None) -> Counter:
        return Counter(name, doc, labels or [], registry=registry)

    def histogram(name: str, doc: str, labels: list[str] | None = None, **kw: Any) -> Histogram:
        return Histogram(name, doc, labels or [], registry=registry, **kw)

    def gauge(name: str, doc: str, labels: list[str] | None = None) -> Gauge:
        return Gauge(name, doc, labels or [], registry=registry)

    return GatewayMetrics(
        registry=registry,
        requests=counter(
            "crossfade_gateway_requests",
            "Listener requests answered, by slot that answered, outcome and fallback",
            ["slot", "outcome", "fallback"],
        ),
        latency=histogram(
            "crossfade_gateway_request_duration_seconds",
            "Time the slot took to answer a listener request, by slot",
            ["slot"],
            buckets=LATENCY_BUCKETS,
        ),
        green_to_blue=counter(
            "crossfade_gateway_green_fallbacks", "Requests green failed and blue answered"
        ),
        unanswered=counter(
            "crossfade_gateway_unanswered", "Requests no live slot could answer (503)"
        ),
        shadow_requests=counter(
            "crossfade_gateway_shadow_requests", "Mirrored requests to shadow", ["outcome"]
        ),
        shadow_dropped=counter(
            "crossfade_gateway_shadow_dropped",
            "Mirrors not sent because the in-flight limit was reached",
        ),
        shadow_overlap=gauge(
            "crossfade_gateway_shadow_overlap_at_k",
            "overlap@k between the live and shadow answer of the latest pair",
        ),
        shadow_latency=histogram(
            "crossfade_gateway_shadow_duration_seconds",
            "Time shadow took to answer a mirrored request",
            buckets=LATENCY_BUCKETS,
        ),
        feedback=counter(
            "crossfade_gateway_feedback", "Feedback events by slot and event", ["slot", "event"]
        ),
        diversity=gauge(
            "crossfade_gateway_catalogue_diversity",
            "Distinct items / items shown over the slot's recent responses",
            ["slot"],
        ),
        refused_bodies=counter(
            "crossfade_gateway_refused_bodies",
            "Request bodies refused: 413 over serving.max_body_bytes, 408 slower than "
            "serving.body_timeout_seconds",
            ["status"],
        ),
    )
