"""The simulated-listener load: valid request bodies, feedback drawn from the ground truth."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from crossfade.config import Settings
from crossfade.data import domains as D
from crossfade.data.simulator import build_world
from crossfade.data.simulator.clients import iana_zone
from deployments.traffic import SimulatedListeners, TrafficReport


def test_iana_zone_sign_convention() -> None:
    assert iana_zone(0) == "Etc/UTC"
    assert iana_zone(120) == "Etc/GMT-2"  # two hours east of UTC
    assert iana_zone(-300) == "Etc/GMT+5"
    assert ZoneInfo(iana_zone(120)).utcoffset(datetime(2026, 1, 1)).total_seconds() == 7200


def test_requests_are_for_human_listeners_with_a_full_context(settings: Settings) -> None:
    world = build_world(settings.simulator, 5)
    listeners = SimulatedListeners(world, seed=1)
    bots = set(world.listeners.user_ids[world.listeners.is_bot])
    for _ in range(200):
        _, body = listeners.request()
        assert body["listener_id"] not in bots
        ctx = body["context"]
        assert ctx["device"] in D.DEVICES and ctx["platform"] in D.PLATFORMS
        assert ctx["country"] in D.COUNTRIES
        ZoneInfo(ctx["timezone"])
        assert datetime.fromisoformat(ctx["timestamp"]).tzinfo is not None
        assert body["shelf"] in ("home", "discover_weekly") and body["k"] == 10


def test_feedback_follows_the_listener_response(settings: Settings) -> None:
    world = build_world(settings.simulator, 5)
    listeners = SimulatedListeners(world, seed=2)
    _, body = listeners.request()
    items = [str(i) for i in world.catalogue.item_ids[:10]]
    answer = {"items": [{"item_id": i} for i in items], "slot": "blue"}
    events = listeners.feedback(body, answer)
    assert events, "a listener given ten items plays at least one"
    assert {e["event"] for e in events} <= {"play", "skip", "save"}
    assert all(e["item_id"] in items and e["slot"] == "blue" for e in events)
    assert listeners.feedback(body, {"items": []}) == []


def test_report_counts_failures_and_percentiles() -> None:
    report = TrafficReport(requests=4, ok=3, latencies_ms=[1.0, 2.0, 3.0, 40.0], seconds=2.0)
    summary = report.summary()
    assert summary["failed"] == 1
    assert summary["throughput_rps"] == 2.0
    assert summary["p50_ms"] == 2.5
