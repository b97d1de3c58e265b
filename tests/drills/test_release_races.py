"""Release races and a dead controller, against the stack as `deployments.serve.start_stack`
runs it (gateway, blue, green, shadow and the `crossfade release watch` controller, each a
process), under simulated listeners. One stack, the cases in order:

- eight release managers promote at once over HTTP from the same status: exactly one 200,
  seven 409 whose body names the state they lost to (phase, step, version, who moved it);
- two `crossfade release promote` run at once from two shells on the same status: exactly one
  exits 0, the other exits 3 naming the winner;
- the controller is SIGKILLed: its heartbeat goes stale, the gateway pauses the rollout and
  raises an incident and a notification; a person cannot resume it; a new controller resumes
  it itself and judges only a fresh window collected after its return.

Every wait polls observed state with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from crossfade.config import ENV_PREFIX, Settings
from deployments.process import REPO_ROOT
from deployments.rollout.auth import issue_token
from deployments.rollout.store import RolloutStore, rollout_dir
from deployments.serve import Stack, settings_env
from tests.drills.conftest import drill_settings
from tests.drills.test_rollout_drills import _green_serves, drill_guardrails
from tests.fixtures.stack import (
    RM,
    VIEWER,
    Traffic,
    eventually,
    register_challenger,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

RACERS = 8
STALE_S = 6.0  # heartbeat limit: the controller ticks every second, a loaded tick takes ~1 s
CONFLICT_EXIT = 3


def race_guardrails(config: dict[str, Any]) -> dict[str, Any]:
    """The rollout drills' guardrails with a quick liveness watch."""
    config = drill_guardrails(config)
    config["controller"].update(missed_ticks=STALE_S, stale_margin_seconds=0, watch_seconds=0.5)
    return config


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Settings:
    return drill_settings(tmp_path_factory, "races", race_guardrails)


@pytest.fixture(scope="module")
def traffic(stack: Stack, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Any:
    load = Traffic(settings, stack.gateway_url, tmp_path_factory.mktemp("load") / "t.json")
    load.start()
    yield load
    load.kill()


def _status(stack: Stack) -> dict[str, Any]:
    reply = httpx.get(f"{stack.gateway_url}/admin/release/status", headers=VIEWER, timeout=60)
    assert reply.status_code == 200, reply.text
    doc: dict[str, Any] = reply.json()
    assert reply.headers["etag"] == f'"{doc["state_version"]}"'
    return doc


def _change(stack: Stack, action: str, headers: dict[str, str] = RM, **body: Any) -> Any:
    """A change on the state version read just before (as an operator would)."""
    body.setdefault("expected_version", _status(stack)["state_version"])
    reply = httpx.post(
        f"{stack.gateway_url}/admin/release/{action}", headers=headers, json=body, timeout=120
    )
    assert reply.status_code == 200, f"{action}: {reply.status_code} {reply.text}"
    return reply.json()


def _cli(settings: Settings, *args: str, quiet: bool = False) -> subprocess.Popen[str]:
    """`crossfade release <args>` in a process of its own (a shell of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(settings_env(settings))
    return subprocess.Popen(
        [sys.executable, "-m", "crossfade.cli", "release", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_eight_concurrent_http_promotions_exactly_one_wins(
    stack: Stack, settings: Settings, traffic: Traffic
) -> None:
    ranker = register_challenger(settings)
    started = _change(stack, "start", candidates="champion", ranker=ranker, reason="race drill")
    assert started["phase"] == "SHADOW"
    eventually(lambda: _green_serves(stack, ranker), f"green to load ranker {ranker}", 180)
    # paused, so the controller cannot move it during the race: only the racers can
    seen = _change(stack, "pause", reason="race drill: hold")["state_version"]
    tokens = [issue_token(settings, f"rm-race-{i}", "release-manager") for i in range(RACERS)]
    barrier = threading.Barrier(RACERS)
    replies: list[httpx.Response] = []

    def promote(token: str) -> None:
        with httpx.Client(base_url=stack.gateway_url, timeout=120) as client:
            barrier.wait()
            replies.append(
                client.post(
                    "/admin/release/promote",
                    headers={"authorization": f"Bearer {token}", "if-match": f'"{seen}"'},
                    json={"reason": "race drill"},
                )
            )

    threads = [threading.Thread(target=promote, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in replies)
    assert codes == [200] + [409] * (RACERS - 1), [r.text for r in replies]
    won = next(r for r in replies if r.status_code == 200).json()
    assert won["phase"] == "CANARY" and won["state_version"] == seen + 1
    winner = won["updated_by"]
    assert winner.startswith("rm-race-") and won["last_action"] == "promote"
    for reply in replies:
        if reply.status_code == 409:
            lost = reply.json()
            assert lost["kind"] == "ConflictError" and lost["expected_version"] == seen
            assert lost["current"]["phase"] == "CANARY" and lost["current"]["step_index"] == 0
            assert lost["current"]["version"] == seen + 1
            assert lost["current"]["updated_by"] == winner
    # hold again at once (the window opened by the promotion lasts 5 s): the next case
    # races from here
    status = _change(stack, "pause", reason="race drill: hold", expected_version=seen + 1)
    assert (status["phase"], status["step"]) == ("CANARY", "1 of 1")  # one step, not eight
    history = httpx.get(
        f"{stack.gateway_url}/admin/release/history", headers=VIEWER, timeout=60
    ).json()
    conflicts = [r for r in history if r["action"] == "promote" and r["outcome"] == "conflict"]
    assert len(conflicts) == RACERS - 1


def test_two_concurrent_cli_promotions_exactly_one_exits_zero(
    stack: Stack, settings: Settings, traffic: Traffic
) -> None:
    before = _status(stack)
    assert before["paused"] and before["phase"] == "CANARY"
    seen = before["state_version"]
    shells = [
        _cli(stack.settings, "promote", "--expect-version", str(seen), "--actor", who, "-r", "x")
        for who in ("alice", "bob")
    ]
    outputs = [shell.communicate(timeout=300)[0] for shell in shells]
    codes = sorted(shell.returncode for shell in shells)
    assert codes == [0, CONFLICT_EXIT], outputs
    status = _change(stack, "pause", reason="race drill: hold", expected_version=seen + 1)
    assert status["phase"] == "SWITCH"  # one step forward, not two
    loser = next(o for s, o in zip(shells, outputs, strict=True) if s.returncode != 0)
    flat = " ".join(loser.split())
    assert "conflict" in flat and f"expected state version {seen}" in flat
    # the two shells' rows only: the HTTP race's winner may be audited after its losers, so
    # its row can fall among the last few
    rows = RolloutStore.from_settings(stack.settings).history(20)
    (winner,) = [
        r["actor"]
        for r in rows
        if r["action"] == "promote" and r["outcome"] == "ok" and r["actor"] in ("alice", "bob")
    ]
    assert winner in ("alice", "bob") and f"by {winner} (promote)" in flat
    # nobody may write audit rows as the controller
    refused = _cli(stack.settings, "pause", "--actor", "controller")
    out = refused.communicate(timeout=300)[0]
    assert refused.returncode == 2 and "reserved for the platform" in " ".join(out.split())
    assert _status(stack)["state_version"] == seen + 2  # the drill's own pause only


def test_killed_controller_pauses_the_rollout_and_a_new_one_judges_a_fresh_window(
    stack: Stack, settings: Settings, traffic: Traffic
) -> None:
    store = RolloutStore.from_settings(stack.settings)
    held = _status(stack)
    assert held["paused"] and held["phase"] == "SWITCH"
    assert stack.controller is not None
    eventually(
        lambda: (_status(stack)["controller"] or {}).get("pid") == stack.controller.pid,
        "the controller's heartbeat",
    )
    stack.controller.send_signal(signal.SIGKILL)
    stack.controller.wait(timeout=30)
    resumed = _change(stack, "resume", reason="drill", expected_version=held["state_version"])
    assert not resumed["paused"]  # the heartbeat is not stale yet

    def paused_by_the_gateway() -> dict[str, Any] | None:
        doc = _status(stack)
        return doc if doc["paused"] and doc["updated_by"] == "gateway" else None

    paused = eventually(paused_by_the_gateway, "the gateway to pause for the stale heartbeat")
    assert paused["controller"]["stale"] is True and "heartbeat" in paused["pause_reason"]
    (incident,) = [i for i in store.incidents(5) if i["actor"] == "gateway"]
    assert incident["rollout_id"] == paused["rollout_id"]
    notes = (rollout_dir(stack.settings) / "notifications.jsonl").read_text().splitlines()
    assert any(json.loads(line)["event"] == "controller_stale" for line in notes)
    judged_before = paused["last_window"]
    refused = httpx.post(
        f"{stack.gateway_url}/admin/release/resume",
        headers={**RM, "if-match": f'"{paused["state_version"]}"'},
        json={"reason": "drill: too early"},
        timeout=60,
    )
    assert refused.status_code == 409 and "heartbeat" in refused.text
    assert _status(stack)["last_window"] == judged_before  # nothing judged while dead

    watcher = _cli(stack.settings, "watch", quiet=True)
    try:

        def resumed_by_the_controller() -> dict[str, Any] | None:
            doc = _status(stack)
            back = not doc["paused"] and doc["updated_by"] == "controller"
            return doc if back and doc["last_action"] == "resume" else None

        back = eventually(resumed_by_the_controller, "the new controller to resume", 120)
        assert back["controller"]["pid"] == watcher.pid and not back["controller"]["stale"]
        fresh_from = back["next_evaluation_at"] - back["window_seconds"]
        assert fresh_from >= paused["updated_at"]  # the window restarted after the gap

        def judged_again() -> dict[str, Any] | None:
            window = _status(stack)["last_window"]
            return window if window and window != judged_before else None

        window = eventually(judged_again, "a window judged by the new controller", 120)
        assert window["start"] >= fresh_from
        assert window["end"] - window["start"] <= back["window_seconds"] + 1e-6
        _change(stack, "rollback", reason="race drill done")
    finally:
        watcher.send_signal(signal.SIGTERM)
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait(timeout=30)
    summary = traffic.stop()
    assert summary["failed"] == 0 and summary["transport_errors"] == 0, summary


def test_the_stack_answers_after_the_races(stack: Stack, tmp_path: Path) -> None:
    assert _status(stack)["phase"] == "ROLLED_BACK"
