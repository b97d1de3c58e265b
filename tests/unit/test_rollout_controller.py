"""Controller rules with a controlled clock on a real SQLite store: stale evidence is never
judged (gaps, late ticks, sparse windows), a stale heartbeat pauses the rollout and raises an
incident, the controller resumes it itself when back; reserved actors; the refusal audit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crossfade.config import Settings
from deployments.rollout.auth import ReservedActor, check_actor, issue_token
from deployments.rollout.controller import Controller, ControllerDown
from deployments.rollout.guardrails import COVERAGE, GuardrailsConfig, guardrails_path
from deployments.rollout.guardrails import load_guardrails as load
from deployments.rollout.observations import ObservationRecorder
from deployments.rollout.refusals import RefusalAudit
from deployments.rollout.store import ConflictError, RolloutState, RolloutStore, rollout_dir

T0 = 1_000_000.0
WINDOW = 8.0
STALE = 10.0


class Clock:
    """Time the test sets; nothing sleeps."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(settings: Settings, stale: float = STALE) -> GuardrailsConfig:
    """The shipped guardrails with an 8 s window, one shadow window, no grace window."""
    cfg = load(guardrails_path(settings))
    return cfg.model_copy(
        update={
            "window_seconds": WINDOW,
            "inconclusive_grace_windows": 1,
            "controller": cfg.controller.model_copy(
                update={"missed_ticks": stale, "stale_margin_seconds": 0.0}  # 1 s ticks
            ),
        }
    )


def controller(settings: Settings, clock: Clock, stale: float = STALE) -> Controller:
    """A controller process (a new one per restart) on the test's store."""
    return Controller(settings, config=config(settings, stale), clock=clock)


def in_shadow(store: RolloutStore, window_start: float) -> RolloutState:
    """A rollout in SHADOW whose window opened at `window_start` (written as `start` would)."""
    state = store.read_state()
    return store.compare_and_set(
        state.version,
        state.evolve(
            rollout_id="r-test",
            phase="SHADOW",
            shadow_share=0.2,
            window_start=window_start,
            candidate={"candidates": "2", "ranker": "2"},
            baseline={"candidates": "1", "ranker": "1"},
        ),
        actor="alice",
        action="start",
    )


def mirrored(store: RolloutStore, start: float, end: float, n: int = 80) -> None:
    """n healthy mirrored pairs spread evenly over [start, end)."""
    rec = ObservationRecorder(store, start=False)
    for i in range(n):
        rec.record_pair(0.6, 0.4, 0.05, 40.0 + i % 7, False, at=start + i * (end - start) / n)
    rec.close()


def test_restart_after_a_gap_discards_the_stale_window_and_collects_a_fresh_one(
    settings: Settings,
) -> None:
    """Finding 1: a controller restarted after 3.7 minutes judged a stale window holding 2 s
    of traffic as a PASS. Now the gap in its heartbeat discards that evidence."""
    clock = Clock()
    first = controller(settings, clock)
    store = first.store
    in_shadow(store, T0)
    assert first.tick().action == "wait"  # alive at T0, then killed
    mirrored(store, T0 + 0.5, T0 + 2.5)  # 2 s of traffic, enough samples
    clock.now = T0 + 222  # restarted 3.7 minutes later
    second = controller(settings, clock)
    outcome = second.tick()
    assert outcome.action == "discard", outcome.window and outcome.window.summary()
    assert outcome.state.phase == "SHADOW" and outcome.state.window_start == clock.now
    assert "down for 222 s" in outcome.detail
    (row,) = [h for h in store.history(10) if h["action"] == "discard"]
    assert row["actor"] == "controller" and "stale evidence discarded" in row["reason"]
    clock.now += WINDOW / 2
    assert second.tick().action == "wait"  # a fresh window is collected before judging
    mirrored(store, T0 + 222, T0 + 222 + WINDOW)
    clock.now = T0 + 222 + WINDOW
    outcome = second.tick()
    assert outcome.action == "advance" and outcome.state.phase == "CANARY"
    assert outcome.window is not None
    assert (outcome.window.start, outcome.window.end) == (T0 + 222, T0 + 222 + WINDOW)


def test_a_late_tick_judges_only_the_configured_window_length(settings: Settings) -> None:
    """Finding 2: a 41 s window was judged where 8 s were configured. A late tick (here
    within the liveness limit) judges the last 8 s only."""
    clock = Clock()
    ctl = controller(settings, clock, stale=60.0)
    in_shadow(ctl.store, T0)
    ctl.tick()
    mirrored(ctl.store, T0, T0 + 41, n=400)
    clock.now = T0 + 41
    outcome = ctl.tick()
    assert outcome.window is not None
    assert outcome.window.end - outcome.window.start == WINDOW
    assert outcome.window.start == T0 + 41 - WINDOW
    assert outcome.action == "advance"


def test_a_window_with_traffic_in_one_corner_is_inconclusive(settings: Settings) -> None:
    """Enough samples, but all in the first second of the window: coverage below the
    configured minimum is INCONCLUSIVE (extend, then pause), never a pass."""
    clock = Clock()
    ctl = controller(settings, clock)
    in_shadow(ctl.store, T0)
    ctl.tick()
    mirrored(ctl.store, T0 + 0.05, T0 + 0.75)  # the first of 10 buckets
    clock.now = T0 + WINDOW / 2
    ctl.tick()  # alive through the window
    clock.now = T0 + WINDOW
    outcome = ctl.tick()
    assert outcome.action == "extend", outcome.window and outcome.window.summary()
    assert outcome.window is not None
    (cover,) = [r for r in outcome.window.results if r.name == COVERAGE]
    assert cover.verdict == "INCONCLUSIVE" and cover.value == pytest.approx(0.1)
    assert "10% of the window" in outcome.window.summary()


def test_stale_heartbeat_pauses_alerts_once_and_the_controller_resumes_itself(
    settings: Settings,
) -> None:
    clock = Clock()
    ctl = controller(settings, clock)
    gateway = controller(settings, clock)  # the watcher is another process
    in_shadow(ctl.store, T0)
    assert gateway.watch_liveness("gateway") is None  # never seen: nothing to judge
    ctl.tick()
    clock.now = T0 + STALE
    assert gateway.watch_liveness("gateway") is None  # exactly at the limit: alive
    assert gateway.liveness()["stale"] is False  # type: ignore[index]
    clock.now = T0 + STALE + 1  # the controller died after its tick at T0
    paused = gateway.watch_liveness("gateway")
    assert paused is not None and paused.state.paused
    assert paused.state.pause_kind == "liveness" and paused.state.updated_by == "gateway"
    assert "heartbeat is 11 s old" in (paused.state.pause_reason or "")
    assert gateway.watch_liveness("gateway") is None  # already paused: one alert only
    (incident,) = ctl.store.incidents()
    assert incident["actor"] == "gateway" and "heartbeat" in incident["reason"]
    lines = (rollout_dir(settings) / "notifications.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "controller_stale"
    # a person cannot resume while nothing would judge the windows
    with pytest.raises(ControllerDown, match="heartbeat is 11 s old"):
        gateway.resume("alice", "go on", expected_version=paused.state.version)
    # a person's pause is not undone by the controller's return, a liveness pause is
    clock.now = T0 + 30
    back = controller(settings, clock).tick()
    assert back.action == "resume" and not back.state.paused
    assert back.state.window_start == clock.now and back.state.pause_kind is None
    assert back.state.updated_by == "controller"
    clock.now += 1
    assert ctl.tick().action == "wait"


def test_a_persons_pause_stays_when_the_controller_comes_back(settings: Settings) -> None:
    clock = Clock()
    ctl = controller(settings, clock)
    state = in_shadow(ctl.store, T0)
    ctl.tick()
    ctl.pause("alice", "waiting for the weekly report", expected_version=state.version)
    clock.now = T0 + 100
    assert ctl.tick().action == "paused"


def test_actions_act_only_on_the_expected_version(settings: Settings) -> None:
    clock = Clock()
    ctl = controller(settings, clock)
    state = in_shadow(ctl.store, T0)
    moved = ctl.promote("bob", "looks good", expected_version=state.version)
    assert (moved.phase, moved.updated_by, moved.last_action) == ("CANARY", "bob", "promote")
    with pytest.raises(ConflictError, match=r"now CANARY step 1 .*by bob \(promote\)") as lost:
        ctl.promote("carol", "looks good", expected_version=state.version)
    assert lost.value.current is not None and lost.value.current.version == moved.version
    assert ctl.store.read_state().phase == "CANARY"


@pytest.mark.parametrize(
    "actor", ["controller", "Controller", " supervisor ", "gateway:1", "lifecycle@host", "system"]
)
def test_system_actors_are_reserved(actor: str, settings: Settings) -> None:
    with pytest.raises(ReservedActor, match="reserved for the platform"):
        check_actor(actor)
    with pytest.raises(ReservedActor):
        issue_token(settings, actor, "release-manager")


def test_people_may_use_their_own_names() -> None:
    assert check_actor(" alice ") == "alice"
    assert check_actor("cli:controller-team") == "cli:controller-team"
    with pytest.raises(ReservedActor, match="empty"):
        check_actor("  ")


def test_refusal_audit_refills_and_summarizes_with_the_rate(settings: Settings) -> None:
    clock = Clock()
    store = RolloutStore.from_settings(settings)
    audit = RefusalAudit(store, per_minute=6, burst=2, clock=clock)  # one token per 10 s
    row: dict[str, Any] = {"actor": "anonymous", "action": "promote", "outcome": "x", "reason": "r"}
    written = [audit.record("anonymous@a", **row) for _ in range(5)]
    assert written == [True, True, False, False, False]
    assert audit.flush() == 0  # no token yet: the summary waits (it is not lost)
    clock.now += 10
    assert audit.flush() == 1
    (summary,) = [h for h in store.history(10) if h["outcome"] == "suppressed"]
    assert summary["metrics"]["suppressed"] == 3 and "3 more refusals" in summary["reason"]
    assert len(store.history(10)) == 3
    clock.now += 10
    assert audit.record("anonymous@a", **row) is True
    assert audit.pending() == 0
