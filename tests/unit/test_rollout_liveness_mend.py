"""The heartbeat is judged against the tick interval its own controller promised (a 120 s
schedule and a 1 s loop alike), a slow tick does not look dead, refusal summaries survive a
full client table, the status panel always shows the state version, reserved actors have one
source."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import yaml

import crossfade.cli  # noqa: F401  (loads deployments.cli as its plugin first)
from crossfade.config import Settings
from deployments.cli import print_status
from deployments.rollout import refusals
from deployments.rollout.auth import SYSTEM_ACTORS
from deployments.rollout.controller import HEARTBEAT, Controller
from deployments.rollout.guardrails import guardrails_path, load_guardrails
from deployments.rollout.refusals import RefusalAudit
from tests.unit.test_rollout_controller import Clock, in_shadow, mirrored

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = "rollout-guardrails"


def schedule_seconds() -> float:
    """The shipped Prefect guardrails schedule's interval and the tick_seconds it passes."""
    doc = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    (dep,) = [d for d in doc["deployments"] if d["name"] == SCHEDULE]
    (schedule,) = dep["schedules"]
    assert dep["parameters"]["tick_seconds"] == schedule["interval"]
    return float(schedule["interval"])


def test_a_scheduled_controller_advances_and_is_never_stale_between_ticks(
    settings: Settings,
) -> None:
    every = schedule_seconds()
    clock = Clock()
    cfg = load_guardrails(guardrails_path(settings))  # the shipped liveness rule
    cfg = cfg.model_copy(update={"window_seconds": every, "inconclusive_grace_windows": 0})
    ctl = Controller(settings, config=cfg, clock=clock, tick_seconds=every)
    gateway = Controller(settings, config=cfg, clock=clock)  # the watcher never ticks
    store = ctl.store
    assert ctl.tick().action == "idle"
    in_shadow(store, clock.now)
    actions = []
    for _ in range(cfg.shadow.windows):
        mirrored(store, clock.now, clock.now + every)
        for probe in (every / 2, every - 1e-3):  # the gateway looks between ticks
            assert gateway.watch_liveness("gateway", clock.now + probe) is None
        clock.now += every
        actions.append(ctl.tick().action)
    assert "discard" not in actions and actions[-1] == "advance", actions
    assert store.read_state().phase == "CANARY" and not store.read_state().paused
    assert store.heartbeat(HEARTBEAT)["tick_seconds"] == every


def test_a_fast_loop_is_still_judged_against_its_own_interval(settings: Settings) -> None:
    clock = Clock()
    ctl = Controller(settings, clock=clock, tick_seconds=1.0)
    ctl.tick()
    limit = ctl.config.controller.stale_after(1.0)
    assert ctl.liveness(clock.now + limit - 0.1)["stale"] is False
    assert ctl.liveness(clock.now + limit + 0.1)["stale"] is True
    assert limit < ctl.config.controller.stale_after(schedule_seconds())


def test_the_heartbeat_thread_beats_while_a_tick_is_slow(settings: Settings) -> None:
    clock = Clock()
    ctl = Controller(settings, clock=clock, tick_seconds=0.05)
    stop = threading.Event()
    thread = ctl.beating(stop)
    try:
        for _ in range(3):  # a tick that never returns would leave the clock here
            clock.now += 1.0
            seen = threading.Event()
            while not seen.wait(0.01):  # wait on observed state: the thread's next beat
                beat = ctl.store.heartbeat(HEARTBEAT)
                if beat is not None and beat["at"] == clock.now:
                    seen.set()
            assert ctl.liveness()["stale"] is False
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


class Rows:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def audit(self, **row: Any) -> None:
        self.rows.append(row)


def test_summaries_owed_by_a_full_client_table_are_written_not_dropped(monkeypatch: Any) -> None:
    monkeypatch.setattr(refusals, "MAX_CLIENTS", 3)
    sink, clock = Rows(), Clock()
    audit = RefusalAudit(sink, per_minute=1, burst=1, clock=clock)  # type: ignore[arg-type]
    row = {"actor": "x", "action": "promote", "outcome": "refused", "reason": "r"}
    for client in ("a", "b", "c"):
        assert audit.record(client, **row) is True
        assert audit.record(client, **row) is False
    assert audit.pending() == 3
    assert audit.record("d", **row) is True
    summaries = [r for r in sink.rows if r["outcome"] == "suppressed"]
    assert sorted(r["actor"] for r in summaries) == ["a", "b", "c"]
    assert sum(r["metrics"]["suppressed"] for r in summaries) == 3
    assert audit.pending() == 0


def test_a_suppressed_refusal_reads_nothing_from_the_store(settings: Settings) -> None:
    from deployments.rollout.api import ReleaseService

    service = ReleaseService(settings)
    reads = []
    real = service.store.read_state
    service.store.read_state = lambda: reads.append(1) or real()  # type: ignore[method-assign]
    burst = service.refusals.burst
    for _ in range(burst + 5):
        service.refuse("anonymous@x", actor="anonymous", action="promote", outcome="x", reason="r")
    assert len(reads) == burst


def test_the_status_panel_always_shows_the_state_version(settings: Settings, capsys: Any) -> None:
    from deployments.rollout.api import ReleaseService
    from deployments.rollout.auth import Principal

    service = ReleaseService(settings)
    doc = service.status(Principal("viewer-1", "viewer"))
    assert doc["state_version"] == 0 and not doc.get("updated_by")
    print_status(doc)
    assert "state     version 0" in capsys.readouterr().out


def test_reserved_actors_come_from_the_modules_that_act() -> None:
    from deployments.gateway.admin import WATCHER
    from deployments.rollout.controller import CONTROLLER_ACTOR
    from flows.release import ACTOR

    assert {CONTROLLER_ACTOR, WATCHER, ACTOR} <= SYSTEM_ACTORS
