"""Release drills: real gateway, blue, green, shadow and controller processes under steady load.

One stack serves every scenario, in order; each one starts a rollout of a fresh challenger
(a new ranker version from the champion's artifacts, so only the injected fault makes it bad)
and leaves the stack idle again (ROLLED_BACK, faults off). Simulated listeners
(`python -m deployments.traffic`) run in a second process for the length of each scenario, and
their summary must show zero failed requests.

Timing: guardrail windows of W = 5 s (a drill copy of configs/guardrails.yaml, thresholds sized
for a loaded 2-core machine). The fault is on green before the rollout reaches canary, so it
reaches canary traffic the moment the canary window opens; the bound asserted is

    rolled back at <= canary window start + W + TICK_SLACK

i.e. at the end of that first canary window, plus the controller loop's tick interval (1 s) and
the tick's own work (TICK_SLACK = 3 s in all).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import psutil
import pytest

from crossfade.config import Settings
from deployments.serve import Stack
from model_registry.ranker import MODEL_NAME as RANKER
from tests.drills.conftest import drill_settings
from tests.fixtures.stack import (
    RM,
    SLOT_ADMIN,
    VIEWER,
    Traffic,
    eventually,
    recommend_body,
    register_challenger,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

WINDOW_S = 5.0
TICK_SLACK_S = 3.0
MIN_REQUESTS = 5  # green gets half the load; a starved machine may send only ~2 requests/s
MIN_FEEDBACK = 20
P99_LIMIT_MS = 1000.0  # drill threshold: healthy answers stay far below it even under load
INJECTED_LATENCY_MS = 1500  # over the limit, under the gateway's slot timeout (2500 ms)


def drill_guardrails(config: dict[str, Any]) -> dict[str, Any]:
    """configs/guardrails.yaml with drill windows, one canary step and loaded-machine limits."""
    config.update(window_seconds=WINDOW_S, inconclusive_grace_windows=1)
    config["shadow"]["windows"] = 1
    config["canary"] = {"steps": [50], "windows_per_step": 1}
    config["bake"] = {"windows": 1}
    for guard in config["guardrails"]:
        feedback = guard["metric"] in ("skip_rate", "save_rate")
        guard["min_samples"] = MIN_FEEDBACK if feedback else MIN_REQUESTS
        if guard["name"] == "p99_latency":
            guard["threshold"] = P99_LIMIT_MS
        elif guard["name"] == "p99_latency_vs_blue":
            guard["threshold"] = 2.0  # 3x blue: scheduling noise on a shared machine is large
        elif guard["name"] == "skip_rate_vs_blue":
            guard["threshold"] = 0.5  # a few hundred feedback events per window are noisy
        elif guard["name"] == "fallback_rate":
            guard["threshold"] = 0.5
    return dict(config)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Settings:
    """The drill stack's settings: fault injection on, short windows, generous stage budgets."""
    return drill_settings(
        tmp_path_factory, "drills", drill_guardrails, serving={"allow_fault_injection": True}
    )


@pytest.fixture
def traffic(stack: Stack, settings: Settings, tmp_path: Path) -> Iterator[Traffic]:
    load = Traffic(settings, stack.gateway_url, tmp_path / "traffic.json", listeners=10)
    yield load
    load.kill()


def _admin(stack: Stack, method: str, action: str, **body: Any) -> dict[str, Any]:
    headers = VIEWER if action in ("status", "history", "incidents") else RM
    with httpx.Client(base_url=stack.gateway_url, timeout=120) as client:
        if method == "GET":
            response = client.get(f"/admin/release/{action}", headers=headers)
        else:  # a change acts on the state version it saw (else 428)
            seen = client.get("/admin/release/status", headers=VIEWER).json()["state_version"]
            body.setdefault("expected_version", seen)
            response = client.post(f"/admin/release/{action}", headers=headers, json=body)
    assert response.status_code == 200, f"{action}: {response.status_code} {response.text}"
    result: dict[str, Any] = response.json()
    return result


def _status(stack: Stack) -> dict[str, Any]:
    return _admin(stack, "GET", "status")


def _faults(stack: Stack, slot: str, **faults: Any) -> None:
    response = httpx.post(
        f"{stack.url(slot)}/admin/faults", json=faults, headers=SLOT_ADMIN, timeout=30
    )
    assert response.status_code == 200, response.text


def _aliases(settings: Settings) -> dict[tuple[str, str], str | None]:
    client = mlflow.MlflowClient(settings.tracking_uri)
    out: dict[tuple[str, str], str | None] = {}
    for name in (settings.candidates.model_name, RANKER):
        aliases = client.get_registered_model(name).aliases
        for alias in ("champion", "challenger"):
            out[(name, alias)] = str(aliases[alias]) if alias in aliases else None
    return out


def _start_canary(stack: Stack, ranker: str) -> float:
    """Start a rollout of ranker `ranker`, approve shadow at once; returns the canary start."""
    started = _admin(stack, "POST", "start", candidates="champion", ranker=ranker, reason="drill")
    assert started["phase"] == "SHADOW", started
    # Green loads the candidate during shadow; the gateway sends it listeners only once it
    # serves it, so the canary's first window judges the candidate from its first second.
    eventually(lambda: _green_serves(stack, ranker), f"green to load ranker {ranker}", timeout=120)
    canary = _admin(stack, "POST", "promote", reason="drill: straight to canary")
    assert canary["phase"] == "CANARY" and canary["green_percent"] == 50, canary
    return float(canary["next_evaluation_at"]) - WINDOW_S


def _green_serves(stack: Stack, ranker: str) -> bool:
    """Whether green's own answer (asked directly, faults and all) comes from `ranker`."""
    try:
        answer = httpx.post(
            f"{stack.url('green')}/recommend", json=recommend_body("u-drill"), timeout=10
        )
    except httpx.HTTPError:
        return False
    return answer.is_success and str(answer.json()["model"]["ranker"]) == str(ranker)


def _breached(status: dict[str, Any]) -> set[str]:
    window = status.get("last_window") or {}
    return {r["name"] for r in window.get("results", []) if r["verdict"] == "BREACH"}


def _wait_rolled_back(stack: Stack) -> dict[str, Any]:
    status = eventually(
        lambda: (s := _status(stack))["phase"] == "ROLLED_BACK" and s,
        "the controller to roll back",
        timeout=4 * WINDOW_S + 30,
    )
    # The controller's audit row is written last (after the aliases are restored).
    history = eventually(
        lambda: [
            row
            for row in _admin(stack, "GET", "history")
            if row["action"] == "rollback" and row["rollout_id"] == status["rollout_id"]
        ],
        "the rollback's audit row",
    )
    assert history[0]["actor"] == "controller", history[0]
    return dict(status)


def _assert_no_listener_failed(summary: dict[str, Any]) -> None:
    assert summary["requests"] > 0, summary
    assert summary["failed"] == 0 and summary["transport_errors"] == 0, summary
    assert summary["feedback_failed"] == 0, summary


def test_admin_calls_without_a_token_or_as_viewer_are_refused_and_audited(
    stack: Stack,
) -> None:
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        before = client.get("/admin/release/status", headers=VIEWER).json()
        body = {"candidates": "champion", "ranker": "1", "reason": "drill"}
        assert client.get("/admin/release/status").status_code == 401
        assert client.post("/admin/release/start", json=body).status_code == 401
        wrong = client.post("/admin/release/rollback", json={}, headers={"authorization": "x"})
        assert wrong.status_code == 401
        for action, payload in (("start", body), ("promote", {}), ("rollback", {})):
            refused = client.post(f"/admin/release/{action}", json=payload, headers=VIEWER)
            assert refused.status_code == 403, (action, refused.text)
        after = client.get("/admin/release/status", headers=VIEWER).json()
        history = client.get("/admin/release/history", headers=VIEWER).json()
    assert after["state_version"] == before["state_version"]  # nothing changed
    rows = {(r["actor"], r["action"], r["outcome"]) for r in history}
    assert {
        ("anonymous", "status", "unauthenticated"),
        ("anonymous", "start", "unauthenticated"),
        ("anonymous", "rollback", "unauthenticated"),
        ("viewer", "start", "refused"),
        ("viewer", "promote", "refused"),
        ("viewer", "rollback", "refused"),
    } <= rows


def test_fault_injection_needs_the_slot_admin_token(stack: Stack) -> None:
    url = f"{stack.url('green')}/admin/faults"
    assert httpx.post(url, json={"error_rate": 1.0}, timeout=30).status_code == 401
    bad = httpx.post(url, json={"error_rate": 2.0}, headers=SLOT_ADMIN, timeout=30)
    assert bad.status_code == 400 and "error_rate" in bad.text


@pytest.mark.parametrize(
    ("fault", "guardrails"),
    [
        pytest.param(
            {"latency_ms": INJECTED_LATENCY_MS},
            {"p99_latency", "p99_latency_vs_blue"},
            id="latency",
        ),
        pytest.param({"error_rate": 0.5}, {"error_rate"}, id="errors"),
        pytest.param({"degenerate": True}, {"catalogue_diversity"}, id="degenerate"),
    ],
)
def test_a_bad_challenger_is_rolled_back_within_one_window(
    stack: Stack,
    settings: Settings,
    traffic: Traffic,
    fault: dict[str, Any],
    guardrails: set[str],
) -> None:
    version = register_challenger(settings)
    aliases = _aliases(settings)
    _faults(stack, "green", **fault)
    try:
        traffic.start()
        canary_start = _start_canary(stack, version)
        status = _wait_rolled_back(stack)
        time.sleep(1.0)  # requests in flight at the switch back to blue finish
        summary = traffic.stop()
    finally:
        _faults(stack, "green")  # healthy again for the next scenario
    rolled_back_at = float(status["updated_at"])
    assert rolled_back_at - canary_start <= WINDOW_S + TICK_SLACK_S, (
        f"rolled back {rolled_back_at - canary_start:.1f} s after canary start "
        f"(bound {WINDOW_S + TICK_SLACK_S:.0f} s); judged window: {status['last_window']}"
    )
    assert guardrails & _breached(status), status["last_window"]
    assert status["green_percent"] == 0
    _assert_no_listener_failed(summary)
    assert _aliases(settings) == aliases  # champion (and challenger) where they were
    tag = mlflow.MlflowClient(settings.tracking_uri).get_model_version(RANKER, version)
    assert tag.tags.get("crossfade.rollout") == "rolled_back"


def _metric_sum(text: str, name: str, slot: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and f'slot="{slot}"' in line
    )


def test_each_slot_exports_its_own_recommender_metrics(stack: Stack) -> None:
    # Blue served every listener, green the canary halves of the drills above; each process
    # has its own BENTOML_HOME, so no start-up wiped another's metric files.
    for slot in ("blue", "green"):
        text = httpx.get(f"{stack.url(slot)}/metrics", timeout=30).text
        count = _metric_sum(text, "crossfade_recommender_request_seconds_count", slot)
        assert count > 0, f"{slot} exports no crossfade_recommender_request_seconds samples"
        assert _metric_sum(text, "crossfade_recommender_feedback_total", slot) > 0


def test_silent_metrics_never_advance_the_rollout(stack: Stack, settings: Settings) -> None:
    # No traffic at all: every guardrail window is empty, which is never a pass.
    version = register_challenger(settings)
    canary_start = _start_canary(stack, version)
    paused = eventually(
        lambda: (s := _status(stack))["paused"] and s,
        "the controller to pause the silent rollout",
        timeout=4 * WINDOW_S + 30,
    )
    # One inconclusive window is extended (grace), the second pauses.
    assert float(paused["updated_at"]) - canary_start <= 2 * WINDOW_S + TICK_SLACK_S
    assert paused["phase"] == "CANARY" and paused["green_percent"] == 50
    assert "inconclusive" in (paused["pause_reason"] or "")
    time.sleep(WINDOW_S + TICK_SLACK_S)  # a whole further window: still held, never promoted
    held = _status(stack)
    assert (held["phase"], held["paused"], held["step"]) == ("CANARY", True, paused["step"])
    assert held["state_version"] == paused["state_version"]
    rolled = _admin(stack, "POST", "rollback", reason="drill: metrics silent")
    assert rolled["phase"] == "ROLLED_BACK"


def test_green_killed_mid_canary_rolls_back_with_no_listener_error(
    stack: Stack, settings: Settings, traffic: Traffic
) -> None:
    version = register_challenger(settings)
    aliases = _aliases(settings)
    traffic.start()
    canary_start = _start_canary(stack, version)
    stack.kill("green")
    assert _status(stack)["phase"] == "CANARY"  # killed mid-canary, before its window ended
    status = _wait_rolled_back(stack)
    time.sleep(1.0)
    summary = traffic.stop()
    assert float(status["updated_at"]) - canary_start <= WINDOW_S + TICK_SLACK_S
    assert "error_rate" in _breached(status), status["last_window"]
    _assert_no_listener_failed(summary)
    assert _aliases(settings) == aliases


def test_stop_kills_a_hung_service_and_its_workers(stack: Stack) -> None:
    # A frozen process ignores SIGTERM; stop() must SIGKILL the whole tree, workers included
    # (they run in sessions of their own, out of reach of the process group).
    shadow = stack.services["shadow"]
    tree = shadow.tree()
    assert len(tree) > 1, "expected the bentoml arbiter and at least one worker"
    for proc in tree:
        proc.send_signal(signal.SIGSTOP)
    try:
        shadow.stop(timeout=3)
        _gone, alive = psutil.wait_procs(tree, timeout=10)
        assert not alive, f"still running after stop(): {[p.pid for p in alive]}"
    finally:
        for proc in tree:
            if proc.is_running():
                proc.kill()
