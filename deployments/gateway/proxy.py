"""The gateway's request logic: route, call the slot, fall back, mirror, record.

Framework-free (the BentoML service in service.py only adapts HTTP to it), so the whole path
from a listener's body to the bytes returned is one object with its clients and caches.

Who answers a valid /recommend:
1. the listener's slot by the stable hash and the current split (blue or green), within
   `gateway.slot_timeout_ms` when another slot could still answer, else within the longer
   `gateway.last_resort_timeout_ms` (a slow answer beats no answer);
2. if green fails or times out: blue (the error is recorded against green, the listener never
   sees it);
3. if blue fails: green, but only while green already serves part of the traffic (a rollout
   past the shadow phase), so an unvetted model never answers listeners;
4. if blue is down and no live slot answered (blue restarting after a crash): a standby slot
   (green, shadow) whose answer comes from the very model versions blue last served (no rollout
   in progress: they start on blue's models); an answer from any other version is discarded;
5. otherwise 503 with Retry-After: no live process could answer. The popular-in-market fallback
   lives inside the recommender, so it is served whenever a recommender process is up at all.
Invalid bodies get a 422 naming the field, before any slot is called.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
import orjson

from crossfade.serving.api import FeedbackBatch, FeedbackRequest, RecommendRequest
from deployments.bodies import Reply, parse_request
from deployments.gateway.client import SlotClient
from deployments.gateway.metrics import GatewayMetrics
from deployments.gateway.mirror import PairSink, ShadowMirror, ranked
from deployments.gateway.routing import answer_order, mirror_to_shadow, route, standbys
from deployments.gateway.state import RouteTable, StateCache

log = logging.getLogger(__name__)

LIVE_SLOTS = ("blue", "green")
SLOTS = ("blue", "green", "shadow")
DIVERSITY_WINDOW = 200  # responses per slot behind the catalogue-diversity gauge


class ObservationSink(PairSink, Protocol):
    """The rollout store's observation recorder, as the gateway uses it."""

    def record_request(
        self,
        slot: str,
        latency_ms: float,
        error: bool,
        fallback: bool,
        item_ids: list[str],
        at: float | None = None,
    ) -> None: ...

    def record_feedback(self, slot: str | None, event: str, at: float | None = None) -> None: ...


class SlotFailure(Exception):
    """A live slot did not answer usefully (connection error, timeout or 5xx)."""


class Gateway:
    """One gateway process: pooled clients to each slot, the state cache, the shadow mirror."""

    def __init__(
        self,
        slot_urls: dict[str, str],
        state: StateCache,
        sink: ObservationSink,
        *,
        slot_timeout_s: float,
        last_resort_timeout_s: float,
        shadow_timeout_s: float,
        shadow_max_inflight: int,
        max_connections: int,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        missing = [slot for slot in SLOTS if slot not in slot_urls]
        if missing:
            raise ValueError(f"slot_urls lacks {', '.join(missing)}; give a URL for every slot")
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        # httpx for the rare calls (readiness, /admin/reload by the reconciler) ...
        self.clients = {
            slot: httpx.AsyncClient(
                base_url=slot_urls[slot],
                limits=limits,
                timeout=shadow_timeout_s if slot == "shadow" else slot_timeout_s,
            )
            for slot in SLOTS
        }
        # ... and a small keep-alive client on the request path (deployments/gateway/client.py:
        # about a third of aiohttp's CPU per call, which was a third of httpx's).
        self.slot_clients = {
            slot: SlotClient(
                slot_urls[slot],
                max_connections=max_connections,
                timeout_s=shadow_timeout_s if slot == "shadow" else slot_timeout_s,
                keepalive_seconds=KEEPALIVE_SECONDS,
            )
            for slot in SLOTS
        }
        self.slot_timeout_s = slot_timeout_s
        self.last_resort_timeout_s = last_resort_timeout_s
        self.state = state
        self.sink = sink
        self.metrics = metrics
        self.mirror = ShadowMirror(
            self.slot_clients["shadow"], sink, max_inflight=shadow_max_inflight, metrics=metrics
        )
        self.green_fallbacks = 0
        self.served: dict[str, dict[str, str]] = {}  # slot -> versions of its latest answer
        self._recent: dict[str, deque[list[str]]] = {s: deque() for s in LIVE_SLOTS}
        self._shown: dict[str, Counter[str]] = {s: Counter() for s in LIVE_SLOTS}
        self._shown_total: dict[str, int] = dict.fromkeys(LIVE_SLOTS, 0)

    # -- /recommend ------------------------------------------------------------------------
    async def recommend(self, raw: bytes) -> Reply:
        """Answer one listener request (see the module docstring for who answers)."""
        request = parse_request(raw, RecommendRequest)
        if isinstance(request, Reply):
            return request
        table = self.state.current()
        first = route(request.listener_id, table.green_bp)
        order = answer_order(first, table.green_bp)
        for position, slot in enumerate(order):
            last = position == len(order) - 1
            timeout = self.last_resort_timeout_s if last else self.slot_timeout_s
            try:
                reply, answer = await self._call(slot, raw, timeout)
            except SlotFailure:
                continue
            if position > 0 and order[0] == "green" and slot == "blue":
                self.green_fallbacks += 1
                if self.metrics is not None:
                    self.metrics.green_to_blue.inc()
            if answer is not None and slot == "blue":
                self._maybe_mirror(request.listener_id, raw, answer, request.k, table)
            return reply
        standby = await self._standby(raw, order)
        if standby is not None:
            return standby
        if self.metrics is not None:
            self.metrics.unanswered.inc()
        return Reply(
            503,
            orjson.dumps(
                {"error": f"no recommender slot answered (tried {', '.join(order)}); retry soon"}
            ),
            {"retry-after": "1"},
        )

    async def _standby(self, raw: bytes, order: list[str]) -> Reply | None:
        """An answer from a standby slot serving blue's versions, or None (rule 4)."""
        want = self.served.get("blue")
        if not want:  # blue never answered this process: which versions it serves is unknown
            return None
        spare = standbys(order)
        for position, slot in enumerate(spare):
            timeout = (
                self.last_resort_timeout_s if position == len(spare) - 1 else self.slot_timeout_s
            )
            try:
                reply, _ = await self._call(slot, raw, timeout, expect=want)
            except SlotFailure:
                continue
            return reply
        return None

    async def _call(
        self, slot: str, raw: bytes, timeout: float, expect: dict[str, str] | None = None
    ) -> tuple[Reply, dict[str, Any] | None]:
        """POST to a slot; a 2xx/4xx is an answer, anything else raises SlotFailure. With
        `expect`, an answer from other model versions raises SlotFailure too (not recorded)."""
        started = time.perf_counter()
        try:
            status, content = await self.slot_clients[slot].post("/recommend", raw, timeout)
        except OSError as exc:  # ConnectionError, TimeoutError
            self._record_failure(slot, started, type(exc).__name__)
            raise SlotFailure(slot) from exc
        if status >= 500:
            self._record_failure(slot, started, f"HTTP {status}")
            raise SlotFailure(slot)
        latency_ms = (time.perf_counter() - started) * 1000
        if status >= 400:  # the request was invalid: relay, not a slot error
            return Reply(status, content), None
        try:
            answer = orjson.loads(content)
            items, _ = ranked(answer)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self._record_failure(slot, started, "malformed answer")
            raise SlotFailure(slot) from exc
        if expect is not None and _versions(answer) != expect:
            raise SlotFailure(slot)
        fallback = bool(answer.get("fallbacks"))
        self._note_versions(slot, answer)
        self.sink.record_request(slot, latency_ms, False, fallback, items)
        self._observe(slot, latency_ms, "ok", fallback, items)
        return Reply(status, content), answer

    def _note_versions(self, slot: str, answer: dict[str, Any]) -> None:
        versions = _versions(answer)
        if versions is not None:
            self.served[slot] = versions

    def _record_failure(self, slot: str, started: float, why: str) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        log.info("slot %s failed: %s", slot, why)
        self.sink.record_request(slot, latency_ms, True, False, [])
        self._observe(slot, latency_ms, "error", False, None)

    def _observe(
        self, slot: str, latency_ms: float, outcome: str, fallback: bool, items: list[str] | None
    ) -> None:
        if self.metrics is None:
            return
        self.metrics.requests.labels(
            slot=slot, outcome=outcome, fallback="true" if fallback else "false"
        ).inc()
        self.metrics.latency.labels(slot=slot).observe(latency_ms / 1000)
        if items is not None and slot in self._recent:
            self.metrics.diversity.labels(slot=slot).set(self._diversity(slot, items))

    def _diversity(self, slot: str, items: list[str]) -> float:
        """Distinct items / items shown over the slot's last DIVERSITY_WINDOW responses."""
        recent, shown = self._recent[slot], self._shown[slot]
        recent.append(items)
        shown.update(items)
        self._shown_total[slot] += len(items)
        if len(recent) > DIVERSITY_WINDOW:
            evicted = recent.popleft()
            self._shown_total[slot] -= len(evicted)
            for item in evicted:
                shown[item] -= 1
                if shown[item] <= 0:
                    del shown[item]
        total = self._shown_total[slot]
        return len(shown) / total if total else 0.0

    def _maybe_mirror(
        self, listener_id: str, raw: bytes, answer: dict[str, Any], k: int, table: RouteTable
    ) -> None:
        if table.shadow_bp > 0 and mirror_to_shadow(listener_id, table.shadow_bp):
            self.mirror.submit(raw, answer, k)

    # -- /feedback ------------------------------------------------------------------------
    async def feedback(self, raw: bytes) -> Reply:
        """Forward feedback to the slot that served the listener and record it by slot."""
        request = parse_request(raw, FeedbackRequest)
        if isinstance(request, Reply):
            return request
        slot = self._feedback_slot(request)
        forward = raw if request.slot == slot else _with_slot(orjson.loads(raw), slot)
        reply = await self._forward_feedback(slot, "/feedback", forward, [request.event])
        return reply or _no_slot_took_feedback()

    async def feedback_batch(self, raw: bytes) -> Reply:
        """A session's feedback in one call: each event goes to the slot that served it (one
        forwarded batch per slot) and is recorded by slot. 202 when every event was taken; a
        503 names the events no slot took, so a client resends only those."""
        request = parse_request(raw, FeedbackBatch)
        if isinstance(request, Reply):
            return request
        groups: dict[str, list[int]] = {}
        for index, event in enumerate(request.events):
            groups.setdefault(self._feedback_slot(event), []).append(index)
        body = orjson.loads(raw)["events"]
        refused: list[int] = []
        for slot, indexes in groups.items():
            forward = orjson.dumps({"events": [{**body[i], "slot": slot} for i in indexes]})
            events = [request.events[i].event for i in indexes]
            reply = await self._forward_feedback(slot, "/feedback/batch", forward, events)
            if reply is None:
                refused.extend(indexes)
            elif reply.status >= 300:
                return reply  # a 4xx from the recommender: the batch itself is wrong
        if refused:
            message = "no recommender slot accepted some of the feedback; resend those events"
            body = {"error": message, "accepted": len(request.events) - len(refused)}
            return Reply(
                503, orjson.dumps({**body, "failed_events": sorted(refused)}), {"retry-after": "1"}
            )
        return Reply(202, orjson.dumps({"status": "accepted", "events": len(request.events)}))

    def _feedback_slot(self, event: FeedbackRequest) -> str:
        """The slot that served the listener: as the client says, else by the current split."""
        if event.slot in LIVE_SLOTS:
            return event.slot
        return route(event.listener_id, self.state.current().green_bp)

    async def _forward_feedback(
        self, slot: str, path: str, forward: bytes, events: Sequence[str]
    ) -> Reply | None:
        """POST to the serving slot, then to blue's log; record accepted events by slot.
        None when neither slot answered below 500."""
        for target in dict.fromkeys([slot, "blue"]):
            try:
                status, content = await self.slot_clients[target].post(path, forward)
            except OSError:
                continue
            if status >= 500:
                continue
            if status < 300:
                for event in events:
                    self.sink.record_feedback(slot, event)
                    if self.metrics is not None:
                        self.metrics.feedback.labels(slot=slot, event=event).inc()
            return Reply(status, content)
        return None

    # -- lifecycle -------------------------------------------------------------------------
    async def ready(self) -> bool:
        """Ready once the state was read and blue answers its /readyz."""
        if not self.state.loaded:
            return False
        try:
            response = await self.clients["blue"].get("/readyz")
        except (httpx.HTTPError, OSError):
            return False
        return response.status_code == 200

    async def close(self, drain_seconds: float = 2.0) -> None:
        """Let mirrored calls finish (bounded), then close the connection pools."""
        await self.mirror.drain(drain_seconds)
        await asyncio.gather(*(client.aclose() for client in self.clients.values()))
        await asyncio.gather(*(client.close() for client in self.slot_clients.values()))


KEEPALIVE_SECONDS = 3.0  # below uvicorn's 5 s, so the gateway never reuses a closing connection


def _versions(answer: dict[str, Any]) -> dict[str, str] | None:
    """The model versions an answer says it came from."""
    model = answer.get("model")
    if isinstance(model, dict) and "candidates" in model and "ranker" in model:
        return {"candidates": str(model["candidates"]), "ranker": str(model["ranker"])}
    return None


def _no_slot_took_feedback() -> Reply:
    return Reply(
        503,
        orjson.dumps({"error": "no recommender slot accepted the feedback; retry soon"}),
        {"retry-after": "1"},
    )


def _with_slot(body: dict[str, Any], slot: str) -> bytes:
    return orjson.dumps({**body, "slot": slot})
