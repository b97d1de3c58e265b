"""The rollout store and controller on real SQLite, PostgreSQL and an MLflow SQLite registry:
a full release, automatic rollback on breach (aliases restored, incident, notification), fail
closed on a failed query, pause on inconclusive windows, and concurrent actions (one wins)."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from sqlalchemy import text

from crossfade.config import Settings, load_settings
from deployments.rollout.api import PreconditionRequired, ReleaseService
from deployments.rollout.auth import Forbidden, Principal
from deployments.rollout.controller import Controller
from deployments.rollout.guardrails import GuardrailsConfig, guardrails_path, load_guardrails
from deployments.rollout.machine import IllegalTransition
from deployments.rollout.observations import ObservationRecorder
from deployments.rollout.store import ConflictError, RolloutState, RolloutStore, rollout_dir
from flows.lifecycle import LifecycleRun, candidates_alone
from model_registry.ranker import MODEL_NAME as RANKER
from model_registry.registry import version_by_alias

WINDOW = 10.0
MANAGER = Principal("alice", "release-manager")


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow database (migrations are the slow part): copied per test."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_registered_models()
    return path


def register_tiny_models(settings: Settings, versions: int = 3) -> None:
    """Both crossfade models with `versions` versions; champion 1, challenger 3."""
    c = mlflow.MlflowClient(settings.tracking_uri)
    exp = c.create_experiment("release-test", artifact_location=str(settings.data_root / "art"))
    run = c.create_run(exp)
    c.log_text(run.info.run_id, "tiny", "model/MLmodel")
    for name in (settings.candidates.model_name, RANKER):
        c.create_registered_model(name)
        for _ in range(versions):
            c.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        c.set_registered_model_alias(name, "champion", "1")
        c.set_registered_model_alias(name, "challenger", str(versions))


@pytest.fixture
def release_settings(settings: Settings, mlflow_template: Path) -> Settings:
    settings.data_root.mkdir(parents=True, exist_ok=True)
    shutil.copy(mlflow_template, settings.data_root / "mlflow.db")
    register_tiny_models(settings)
    return settings


class Clock:
    """Time the test controls (the controller takes a clock; nothing sleeps)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def small_config(settings: Settings, **changes: object) -> GuardrailsConfig:
    """The shipped guardrails with a test window and one grace window; these tests tick once
    per window, so the controller counts as alive across a few windows between ticks."""
    cfg = load_guardrails(guardrails_path(settings))
    alive = cfg.controller.model_copy(
        update={"missed_ticks": 5 * WINDOW, "stale_margin_seconds": 0.0}
    )
    update = {
        "window_seconds": WINDOW,
        "inconclusive_grace_windows": 1,
        "controller": alive,
        **changes,
    }
    return cfg.model_copy(update=update)


def traffic(
    rec: ObservationRecorder,
    start: float,
    *,
    green_error: bool = False,
    shadow: bool = False,
    n: int = 450,  # enough feedback for the relative skip-rate guardrail (400)
) -> None:
    """One window of healthy traffic on blue and green (and mirrored pairs), then flush."""
    for i in range(n):
        at = start + 1 + i * (WINDOW - 2) / n
        items = [f"t{(i * 7 + k) % 211}" for k in range(10)]
        rec.record_request("blue", 40.0 + i % 5, False, False, items, at=at)
        rec.record_request("green", 45.0 + i % 5, green_error and i % 3 == 0, False, items, at=at)
        rec.record_feedback("blue", "skip" if i % 4 == 0 else "play", at=at)
        rec.record_feedback("green", "skip" if i % 4 == 0 else "play", at=at)
        if shadow:
            rec.record_pair(0.6, 0.4, 0.05, 55.0, False, at=at)
    rec.flush()


@pytest.fixture
def world(release_settings: Settings) -> Iterator[tuple[Controller, Clock, ObservationRecorder]]:
    clock = Clock()
    ctl = Controller(release_settings, config=small_config(release_settings), clock=clock)
    rec = ObservationRecorder(ctl.store, start=False)
    yield ctl, clock, rec
    rec.close()


def _aliases(settings: Settings, name: str) -> dict[str, str | None]:
    c = mlflow.MlflowClient(settings.tracking_uri)
    return {
        a: (str(v.version) if (v := version_by_alias(c, name, a)) is not None else None)
        for a in ("champion", "challenger", "previous_champion")
    }


def test_full_release_promotes_champion(
    world: tuple[Controller, Clock, ObservationRecorder], release_settings: Settings
) -> None:
    ctl, clock, rec = world
    state = ctl.start("alice", "2", "2", "weekly retrain")
    assert state.phase == "SHADOW" and state.shadow_share == ctl.config.shadow.share
    assert state.slots["shadow"] == {"candidates": "2", "ranker": "2"}
    assert state.slots["green"] == state.slots["shadow"]  # loads now, serves from the canary
    assert state.green_percent == 0
    assert state.slots["blue"] == {"candidates": "1", "ranker": "1"}
    assert _aliases(release_settings, RANKER)["challenger"] == "2"
    seen = []
    while state.phase != "PROMOTED":
        traffic(rec, clock.now, shadow=state.phase == "SHADOW")
        clock.now += WINDOW + 1
        outcome = ctl.tick()
        assert outcome.action in ("advance", "hold"), outcome.window and outcome.window.summary()
        state = outcome.state
        seen.append((state.phase, state.green_percent))
        assert len(seen) < 20
    canary = [("CANARY", float(step)) for step in ctl.plan.steps]
    expected = [*canary, ("SWITCH", 100.0), ("BAKE", 100.0)]
    assert seen[: len(expected)] == expected
    assert state.slots == {
        "blue": {"candidates": "2", "ranker": "2"},
        "green": None,
        "shadow": None,
    }
    for name in (release_settings.candidates.model_name, RANKER):
        aliases = _aliases(release_settings, name)
        assert aliases["champion"] == "2" and aliases["previous_champion"] == "1"
    history = ctl.store.history(100)
    assert [h["action"] for h in history][-1] == "start"
    assert {h["actor"] for h in history} == {"alice", "controller"}
    assert all(h["outcome"] == "ok" for h in history)
    advance = next(h for h in history if h["to_phase"] == "PROMOTED")
    assert advance["metrics"]["verdict"] == "PASS"

    # The instant rollback: champion goes back to the version before the rollout.
    state, incident = ctl.rollback("alice", "complaints after promotion")
    assert state.phase == "ROLLED_BACK" and state.slots["blue"] == {
        "candidates": "1",
        "ranker": "1",
    }
    assert _aliases(release_settings, RANKER) == {
        "champion": "1",
        "challenger": "3",
        "previous_champion": None,
    }
    assert incident > 0


def breach_in_canary(ctl: Controller, clock: Clock, rec: ObservationRecorder) -> Any:
    """A healthy shadow window, then a canary window with green erroring; the second tick's
    outcome."""
    traffic(rec, clock.now, shadow=True)
    clock.now += WINDOW + 1
    assert ctl.tick().state.phase == "CANARY"
    traffic(rec, clock.now, green_error=True)
    clock.now += WINDOW + 1
    return ctl.tick()


def test_breach_rolls_back_by_itself(
    world: tuple[Controller, Clock, ObservationRecorder], release_settings: Settings
) -> None:
    ctl, clock, rec = world
    ctl.start("alice", "2", "2", "")
    outcome = breach_in_canary(ctl, clock, rec)
    assert outcome.action == "rollback"
    state = outcome.state
    assert (state.phase, state.green_percent, state.shadow_share) == ("ROLLED_BACK", 0.0, 0.0)
    assert state.slots["green"] is None and state.slots["shadow"] is None
    # challenger was moved to the candidate at start and is restored; champion never moved
    for name in (release_settings.candidates.model_name, RANKER):
        assert _aliases(release_settings, name) == {
            "champion": "1",
            "challenger": "3",
            "previous_champion": None,
        }
    c = mlflow.MlflowClient(release_settings.tracking_uri)
    assert c.get_model_version(RANKER, "2").tags["crossfade.rollout"] == "rolled_back"
    (incident,) = ctl.store.incidents()
    assert incident["actor"] == "controller" and "error_rate" in incident["reason"]
    assert incident["detail"]["window"]["verdict"] == "BREACH"
    lines = (rollout_dir(release_settings) / "notifications.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "rollout_rolled_back"
    assert ctl.store.history(1)[0]["action"] == "rollback"


def test_candidates_alone_release_leaves_the_champion_ranker_as_it_is(
    world: tuple[Controller, Clock, ObservationRecorder], release_settings: Settings
) -> None:
    """A release of a new candidate model with the champion ranker (the lifecycle's plan when
    the retrained ranker is refused): only the candidate model's aliases and tags move."""
    ctl, clock, rec = world
    state = ctl.start("lifecycle", "2", "champion", "candidates alone")
    assert state.candidate == {"candidates": "2", "ranker": "1"}
    assert _aliases(release_settings, RANKER)["challenger"] == "3"  # not the champion
    assert _aliases(release_settings, release_settings.candidates.model_name)["challenger"] == "2"
    while state.phase != "PROMOTED":
        traffic(rec, clock.now, shadow=state.phase == "SHADOW")
        clock.now += WINDOW + 1
        state = ctl.tick().state
    assert state.slots["blue"] == {"candidates": "2", "ranker": "1"}
    assert _aliases(release_settings, release_settings.candidates.model_name) == {
        "champion": "2", "challenger": "2", "previous_champion": "1",
    }  # fmt: skip
    assert _aliases(release_settings, RANKER) == {
        "champion": "1", "challenger": "3", "previous_champion": None,
    }  # fmt: skip
    c = mlflow.MlflowClient(release_settings.tracking_uri)
    assert c.get_model_version(RANKER, "1").tags.get("crossfade.rollout") is None
    candidates = release_settings.candidates.model_name
    assert c.get_model_version(candidates, "2").tags["crossfade.rollout"] == "promoted"


def test_candidates_alone_rollback_tags_only_the_candidate_model(
    world: tuple[Controller, Clock, ObservationRecorder], release_settings: Settings
) -> None:
    ctl, clock, rec = world
    ctl.start("lifecycle", "2", "champion", "candidates alone")
    assert breach_in_canary(ctl, clock, rec).state.phase == "ROLLED_BACK"
    for name in (release_settings.candidates.model_name, RANKER):
        assert _aliases(release_settings, name) == {
            "champion": "1", "challenger": "3", "previous_champion": None,
        }  # fmt: skip
    c = mlflow.MlflowClient(release_settings.tracking_uri)
    candidates = release_settings.candidates.model_name
    assert c.get_model_version(candidates, "2").tags["crossfade.rollout"] == "rolled_back"
    assert c.get_model_version(RANKER, "1").tags.get("crossfade.rollout") is None


@pytest.mark.parametrize(
    ("gate_passed", "switch", "champion", "new_data", "planned"),
    [
        (True, True, True, True, ("2", "1")),
        (False, True, True, True, None),  # the candidate gate refused too: nothing to release
        (True, False, True, True, None),  # the operator wants the run to stop on a refused ranker
        (True, True, False, True, None),  # no champion ranker yet (a first run)
        (True, True, True, False, None),  # nothing new ingested: a retrain of the same data
    ],
)
def test_lifecycle_plans_the_candidates_alone_when_the_ranker_is_refused(
    release_settings: Settings,
    gate_passed: bool,
    switch: bool,
    champion: bool,
    new_data: bool,
    planned: tuple[str, str] | None,
) -> None:
    c = mlflow.MlflowClient(release_settings.tracking_uri)
    if not champion:
        c.delete_registered_model_alias(RANKER, "champion")
    settings = release_settings.model_copy(
        update={
            "lifecycle": release_settings.lifecycle.model_copy(
                update={"release_candidates_alone": switch}
            )
        }
    )
    outcomes: dict[str, object] = {"candidates": {"version": 2, "gate_passed": gate_passed}}
    if new_data:
        outcomes["ingest"] = {"status": "published"}
    run = LifecycleRun(settings, None, outcomes=outcomes)
    plan = candidates_alone(run)
    if planned is None:
        assert plan is None
    else:
        assert plan is not None and (plan.candidates, plan.ranker) == planned
        assert plan.alias == "challenger" and "champion ranker v1" in plan.why


def test_failed_query_fails_closed(world: tuple[Controller, Clock, ObservationRecorder]) -> None:
    ctl, clock, rec = world
    ctl.start("alice", "2", "2", "")
    traffic(rec, clock.now, shadow=True)
    with ctl.store.engine.begin() as conn:
        conn.execute(text("DROP TABLE rollout_observations"))
    clock.now += WINDOW + 1
    outcome = ctl.tick()
    assert outcome.action == "rollback"
    assert outcome.window is not None and "query failed" in outcome.window.summary()


def test_inconclusive_window_extends_then_pauses(
    world: tuple[Controller, Clock, ObservationRecorder],
) -> None:
    ctl, clock, rec = world
    ctl.start("alice", "2", "2", "")
    traffic(rec, clock.now, shadow=True, n=5)  # fewer than min_samples
    clock.now += WINDOW + 1
    assert ctl.tick().action == "extend"  # the grace window accumulates samples
    assert ctl.tick().action == "wait"
    clock.now += WINDOW
    outcome = ctl.tick()
    assert outcome.action == "pause"
    assert outcome.state.paused and "inconclusive" in (outcome.state.pause_reason or "")
    assert outcome.state.phase == "SHADOW"
    assert ctl.tick().action == "paused"
    resumed = ctl.resume("alice", "more traffic now")
    assert not resumed.paused and resumed.window_start == clock.now


def test_release_service_audits_refusals(release_settings: Settings) -> None:
    ctl = Controller(release_settings, config=small_config(release_settings))
    api = ReleaseService(release_settings, ctl)
    viewer = Principal("bob", "viewer")
    assert api.status(viewer)["phase"] == "IDLE"
    with pytest.raises(Forbidden):
        api.start(viewer, "2", "2", "sneaky", expected_version=0)
    with pytest.raises(IllegalTransition):
        api.pause(MANAGER, "nothing to pause", expected_version=0)
    with pytest.raises(PreconditionRequired, match="expected_version"):
        api.start(MANAGER, "challenger", "challenger", "go", expected_version=None)
    doc = api.start(MANAGER, "challenger", "challenger", "go", expected_version=0)
    assert doc["candidate"] == {"candidates": "3", "ranker": "3"}
    assert (doc["updated_by"], doc["last_action"]) == ("alice", "start")
    first = ctl.plan.steps[0]
    assert doc["next"] == f"canary {first:g} % green" and doc["next_evaluation_at"] is not None
    with pytest.raises(ConflictError, match="already in SHADOW"):
        api.start(MANAGER, "2", "2", "again", expected_version=doc["state_version"])
    with pytest.raises(ConflictError, match="expected state version 0") as lost:
        api.promote(MANAGER, "stale view", expected_version=0)
    assert lost.value.winner() == {
        "phase": "SHADOW", "step_index": 0, "paused": False, "green_percent": 0.0,
        "version": doc["state_version"], "updated_by": "alice", "last_action": "start",
        "updated_at": doc["updated_at"],
    }  # fmt: skip
    outcomes = [(h["actor"], h["action"], h["outcome"]) for h in api.history(viewer)]
    assert outcomes == [
        ("alice", "promote", "conflict"),
        ("alice", "start", "conflict"),
        ("alice", "start", "ok"),
        ("alice", "start", "precondition"),
        ("alice", "pause", "refused"),
        ("bob", "start", "refused"),
    ]


def test_concurrent_starts_one_wins(release_settings: Settings) -> None:
    controllers = [
        Controller(release_settings, config=small_config(release_settings)) for _ in range(2)
    ]
    for ctl in controllers:
        ctl.registry  # noqa: B018 - open MLflow before the race so both start together
    barrier = threading.Barrier(2)
    results: list[object] = []

    def run(ctl: Controller, who: str) -> None:
        barrier.wait()
        try:
            results.append(ctl.start(who, "2", "2", "race"))
        except ConflictError as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(c, f"rm{i}")) for i, c in enumerate(controllers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [r for r in results if isinstance(r, RolloutState)]
    conflicts = [r for r in results if isinstance(r, ConflictError)]
    assert len(wins) == 1 and len(conflicts) == 1, results
    assert controllers[0].store.read_state().started_by == wins[0].started_by


def _cas_contract(store: RolloutStore) -> None:
    state = store.read_state()
    assert state.version == 0 and state.phase == "IDLE"
    first = store.compare_and_set(0, state.evolve(phase="SHADOW", slots={"blue": {"ranker": "1"}}))
    assert first.version == 1 and store.read_state() == first
    with pytest.raises(ConflictError, match="expected state version 0, now SHADOW, version 1"):
        store.compare_and_set(0, state.evolve(phase="CANARY"))
    second = store.compare_and_set(1, first.evolve(phase="CANARY", green_percent=5.0))
    with pytest.raises(ConflictError):
        store.compare_and_set(1, first.evolve(phase="ROLLED_BACK"))
    assert store.read_state() == second
    # threads racing on the same version: exactly one wins
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def race(i: int) -> None:
        barrier.wait()
        try:
            store.compare_and_set(2, second.evolve(step_index=i))
            outcomes.append("win")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 3 + ["win"]
    rec = ObservationRecorder(store, flush_seconds=0.05)
    rec.record_request("green", 12.5, False, True, ["a", "b"], at=5.0)
    rec.record_pair(0.5, None, float("nan"), 20.0, False, at=6.0)
    rec.record_feedback("green", "skip", at=7.0)
    rec.close()
    rows = sorted(store.observations(0, 10), key=lambda r: r["at"])
    assert [r["kind"] for r in rows] == ["request", "pair", "feedback"]
    assert rows[0]["items"] == ["a", "b"] and rows[0]["fallback"] is True
    assert rows[1]["score_drift"] is None
    store.audit(actor="x", action="pause", outcome="ok", reason="r", metrics={"a": 1})
    assert store.history(1)[0]["metrics"] == {"a": 1}
    # the controller's heartbeat: one row, upserted (racing first beats included)
    assert store.heartbeat("controller") is None
    beats = threading.Barrier(4)

    def beat(i: int) -> None:
        beats.wait()
        store.beat("controller", 10.0 + i, 5.0, 100 + i)

    threads = [threading.Thread(target=beat, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.beat("controller", 20.0, 5.0, 123)
    seen = store.heartbeat("controller")
    assert seen is not None and (seen["at"], seen["started_at"], seen["pid"]) == (20.0, 5.0, 123)


def _promotion_race(settings: Settings, n: int = 8) -> None:
    """n release managers promote from the same status at once: exactly one moves the
    rollout one step; the others get ConflictError naming the winner's state."""
    api = ReleaseService(settings)
    store = api.store
    start = store.read_state()
    shadow = store.compare_and_set(
        start.version,
        start.evolve(phase="SHADOW", rollout_id="r-race", candidate={"ranker": "2"}),
        actor="lifecycle",
        action="start",
    )
    seen = api.status(MANAGER)["state_version"]
    assert seen == shadow.version
    barrier = threading.Barrier(n)
    results: list[object] = []

    def run(i: int) -> None:
        who = Principal(f"rm{i}", "release-manager")
        barrier.wait()
        try:
            results.append(api.promote(who, "race", expected_version=seen))
        except ConflictError as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [r for r in results if isinstance(r, dict)]
    lost = [r for r in results if isinstance(r, ConflictError)]
    assert len(wins) == 1 and len(lost) == n - 1, results
    final = store.read_state()
    assert (final.phase, final.step_index, final.version) == ("CANARY", 0, seen + 1)
    winner = final.updated_by
    assert winner is not None and winner.startswith("rm") and final.last_action == "promote"
    for exc in lost:
        assert exc.winner() == {
            "phase": "CANARY", "step_index": 0, "paused": False,
            "green_percent": final.green_percent, "version": seen + 1, "updated_by": winner,
            "last_action": "promote", "updated_at": final.updated_at,
        }  # fmt: skip
        assert f"by {winner} (promote)" in str(exc)
    conflicts = [h for h in store.history(50) if h["outcome"] == "conflict"]
    assert len(conflicts) == n - 1


def test_concurrent_promotions_one_wins_sqlite(settings: Settings) -> None:
    _promotion_race(settings)


def test_store_contract_sqlite(settings: Settings) -> None:
    store = RolloutStore.from_settings(settings)
    assert store.url.startswith("sqlite:///") and str(settings.data_root) in store.url
    _cas_contract(store)


@pytest.fixture
def pg_store_settings(services_settings: Settings) -> Iterator[Settings]:
    """services settings whose rollout store lives in a private PostgreSQL schema."""
    import psycopg

    dsn = services_settings.services.postgres_dsn
    assert dsn is not None
    schema = f"rollout_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = "postgresql+psycopg://" + dsn.split("://", 1)[1] + f"?options=-csearch_path%3D{schema}"
    yield load_settings(
        "services", data_root=services_settings.data_root, rollout={"store_url": url}
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.services
def test_store_contract_postgres(pg_store_settings: Settings) -> None:
    store = RolloutStore.from_settings(pg_store_settings)
    assert store.engine.dialect.name == "postgresql"
    _cas_contract(store)


@pytest.mark.services
def test_concurrent_promotions_one_wins_postgres(pg_store_settings: Settings) -> None:
    _promotion_race(pg_store_settings)


@pytest.mark.services
def test_default_store_on_services_is_postgres(services_settings: Settings) -> None:
    from deployments.rollout.store import default_url

    assert default_url(services_settings).startswith("postgresql+psycopg://")


def test_rollback_notifies_webhook_and_survives_a_dead_one(release_settings: Settings) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict[str, object]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for url, expect in (
            (f"http://127.0.0.1:{server.server_port}/hook", "webhook: HTTP 204"),
            ("http://127.0.0.1:9/unreachable", "webhook failed"),
        ):
            hooked = load_settings(
                "local",
                data_root=release_settings.data_root,
                rollout={"notify_webhook": url, "notify_timeout_seconds": 2},
            )
            ctl = Controller(hooked, config=small_config(hooked))
            ctl.start("alice", "2", "2", "")
            state, incident_id = ctl.rollback("alice", "drill")
            assert state.phase == "ROLLED_BACK"
            incident = ctl.store.incidents(1)[0]
            assert incident["id"] == incident_id
            assert any(expect in line for line in incident["detail"]["notified"])
    finally:
        server.shutdown()
    assert len(received) == 1 and received[0]["reason"] == "drill"
