"""Release stage of the lifecycle: put a gated model in front of listeners, safely.

- The first version ever (the training gate made it `champion`): start the serving stack
  (gateway, blue, green, shadow, and the controller loop) with blue on the champion.
- A `challenger`: start a rollout (shadow -> canary steps -> blue/green switch -> bake) and
  drive it with simulated listeners in a second process, whose feedback comes from the
  simulator's ground truth; the controller loop in the stack judges each guardrail window and
  promotes or rolls back by itself. The stage waits for the outcome and reports the timeline.

The stack keeps running after the lifecycle (`lifecycle.keep_serving`), so listeners and
release managers find a live gateway; `stop_stack` ends it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from prefect import flow
from prefect.artifacts import create_markdown_artifact

from crossfade.config import Settings, load_settings
from crossfade.log import get_logger
from deployments.process import end_processes, tagged
from deployments.rollout.auth import LIFECYCLE_ACTOR as ACTOR
from deployments.rollout.controller import Controller
from deployments.rollout.machine import Phase
from deployments.rollout.store import RolloutStore
from deployments.serve import manifest_path, read_manifest
from model_registry.ranker import candidates_version_of
from model_registry.registry import client, promote, version_by_alias

log = get_logger("flows.release")
REPO_ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {Phase.PROMOTED.value, Phase.ROLLED_BACK.value}
STACK_START_SECONDS = 300
POLL_SECONDS = 2.0
GATE_PASSED = "lifecycle: new version passed the gate"


@dataclass
class ReleaseOutcome:
    """How a release ended and what happened on the way (for the run report)."""

    status: str  # live | promoted | rolled_back | paused | timeout | not_released
    summary: str
    gateway: str | None = None
    rollout_id: str | None = None
    candidate: dict[str, str] = field(default_factory=dict)
    baseline: dict[str, str] = field(default_factory=dict)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    traffic: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _pid_file(settings: Settings) -> Path:
    return settings.data_root / "serve" / "serve.pid"


def _gateway_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2.0).is_success
    except httpx.HTTPError:
        return False


def running_gateway(settings: Settings) -> str | None:
    """The gateway URL of a stack already serving this data root, or None."""
    path = manifest_path(settings)
    if not path.is_file():
        return None
    url = json.loads(path.read_text()).get("gateway", {}).get("url")
    return url if url and _gateway_answers(url) else None


def ensure_stack(settings: Settings, profile: str | None) -> str:
    """Reuse the running stack or start one detached (it outlives this process); returns the
    gateway URL once every slot and the gateway are ready.

    A supervised stack of this data root that is (re)starting its gateway is waited for; if
    its supervisor still runs without a ready gateway after `STACK_START_SECONDS`, this raises
    instead of starting a second stack over it."""
    url = running_gateway(settings)
    if url:
        return url
    if _supervisors(settings):  # a supervised stack is (re)starting its gateway: wait for it
        deadline = time.monotonic() + STACK_START_SECONDS
        while time.monotonic() < deadline and _supervisors(settings):
            url = running_gateway(settings)
            if url:
                return url
            time.sleep(1.0)
        if live := _supervisors(settings):
            pids = ", ".join(str(proc.pid) for proc in live)
            raise RuntimeError(
                f"the stack of data root {settings.data_root} is still supervised (PID {pids}, "
                f"`python -m deployments.serve`) but its gateway was not ready within "
                f"{STACK_START_SECONDS} s; not starting a second stack over it. Read its console "
                f"({settings.data_root / 'serve' / 'serve.log'}) and `crossfade release status`, "
                "then wait for it or end it with `crossfade stop` and run again"
            )
    folder = settings.data_root / "serve"
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "deployments.serve"]
    if profile:
        command += ["--profile", profile]
    with (folder / "serve.log").open("ab") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    _pid_file(settings).write_text(str(process.pid))
    deadline = time.monotonic() + STACK_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (folder / "serve.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the serving stack exited with {process.returncode}:\n{tail}")
        url = running_gateway(settings)
        if url:
            return url
        time.sleep(1.0)
    process.terminate()
    raise TimeoutError(f"the serving stack was not ready in {STACK_START_SECONDS} s")


def stop_stack(settings: Settings, timeout: float = 60.0) -> bool:
    """Stop the stack serving this data root and every process it started, orphans included;
    True if any process of it was running.

    The supervisor (`python -m deployments.serve`, named in stack.json and serve.pid) gets
    SIGTERM and stops its children itself; then every process still carrying the stack's tag
    for this data root (deployments/process.py, `tagged`) is ended, so workers orphaned by a
    killed arbiter, or a whole stack whose supervisor was killed, are found without any PID.
    """
    found = False
    for proc in _supervisors(settings):
        found = True
        with contextlib.suppress(psutil.Error):
            proc.terminate()
        _, alive = psutil.wait_procs([proc], timeout=timeout)
        for left in alive:
            with contextlib.suppress(psutil.Error):
                left.kill()
    strays = [t.process for t in tagged(settings.data_root)]
    found = found or bool(strays)
    end_processes(strays)
    _pid_file(settings).unlink(missing_ok=True)
    manifest_path(settings).unlink(missing_ok=True)
    return found


def _supervisors(settings: Settings) -> list[psutil.Process]:
    """Running `deployments.serve` processes of this data root (stack.json's owner, serve.pid)."""
    pids: list[tuple[int, float | None]] = []
    doc = read_manifest(settings)
    if doc and doc.get("supervised") and isinstance(doc.get("owner"), dict):
        owner = doc["owner"]
        pids.append((int(owner.get("pid", 0)), owner.get("create_time")))
    with contextlib.suppress(OSError, ValueError):
        pids.append((int(_pid_file(settings).read_text()), None))
    found: dict[int, psutil.Process] = {}
    for pid, created in pids:
        try:
            proc = psutil.Process(pid)
            serves = "deployments.serve" in " ".join(proc.cmdline())
            same = created is None or abs(proc.create_time() - float(created)) < 1.0
        except (psutil.Error, ValueError):
            continue
        if serves and same:
            found[pid] = proc
    return list(found.values())


def _traffic(
    settings: Settings, profile: str | None, url: str, out: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "deployments.traffic", "--url", url,
        "--listeners", str(settings.lifecycle.traffic_listeners),
        "--think", str(settings.lifecycle.traffic_think_seconds),
        "--seconds", "3600", "--seed", str(settings.seed), "--json", str(out),
    ]  # fmt: skip
    if profile:
        command += ["--profile", profile]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


@dataclass
class _Watch:
    """What polling the rollout state saw: phase/split changes and each judged window."""

    transitions: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def observe(self, state: Any) -> None:
        now = datetime.now(UTC)
        key = (state.phase, float(state.green_percent), bool(state.paused))
        last = self.transitions[-1] if self.transitions else None
        if last is None or (last["phase"], last["split"], last["paused"]) != key:
            self.transitions.append(
                {"at": now, "phase": state.phase, "split": float(state.green_percent),
                 "paused": bool(state.paused)}
            )  # fmt: skip
        window = state.last_window
        if window:
            ident = json.dumps(window, sort_keys=True, default=str)
            if ident not in self._seen:
                self._seen.add(ident)
                self.windows.append(
                    {"at": now, "phase": window.get("phase", state.phase),
                     "verdict": window.get("verdict"), "values": _window_values(window)}
                )  # fmt: skip


def _window_values(window: dict[str, Any]) -> dict[str, Any]:
    return {
        r["name"]: r.get("value") for r in window.get("results", []) if r.get("value") is not None
    }


def _wait_for_outcome(store: RolloutStore, deadline: float, watch: _Watch) -> Any:
    while True:
        state = store.read_state()
        watch.observe(state)
        if state.phase in TERMINAL or state.paused or time.monotonic() > deadline:
            return state
        time.sleep(POLL_SECONDS)


def release_challenger(
    settings: Settings,
    profile: str | None,
    url: str,
    ranker_version: str,
    budget_seconds: float,
    candidates_version: str,
    reason: str = GATE_PASSED,
) -> ReleaseOutcome:
    """Roll out `ranker_version` with `candidates_version` under steady simulated traffic and
    wait until the controller promotes it, rolls it back or pauses."""
    started = time.monotonic()
    controller = Controller(settings)
    state = controller.start(ACTOR, candidates_version, ranker_version, reason)
    traffic_file = settings.data_root / "serve" / f"traffic-{state.rollout_id}.json"
    traffic = _traffic(settings, profile, url, traffic_file)
    watch = _Watch()
    try:
        final = _wait_for_outcome(controller.store, time.monotonic() + budget_seconds, watch)
    finally:
        traffic.terminate()
        try:
            traffic.wait(timeout=30)
        except subprocess.TimeoutExpired:
            traffic.kill()
    summary = json.loads(traffic_file.read_text()) if traffic_file.is_file() else {}
    if final.phase == Phase.PROMOTED.value:
        status, text = (
            "promoted",
            "every guardrail window passed; champion moved to the new version",
        )
    elif final.phase == Phase.ROLLED_BACK.value:
        status = "rolled_back"
        breached = [
            f"{r['name']}: {r.get('detail', '')}"
            for r in (final.last_window or {}).get("results", [])
            if r.get("verdict") == "BREACH"
        ]
        text = "rolled back by the guardrails, champion restored: " + (
            "; ".join(breached) or "see the audit log (`crossfade release history`)"
        )
    elif final.paused:
        status, text = "paused", f"paused: {final.pause_reason}; a release manager decides next"
    else:
        controller.pause(ACTOR, f"the lifecycle's release budget of {budget_seconds:.0f} s ran out")
        status, text = "timeout", f"still in {final.phase} after {budget_seconds:.0f} s; paused"
    return ReleaseOutcome(
        status, text, url, state.rollout_id, dict(state.candidate), dict(state.baseline),
        watch.transitions, watch.windows, summary, time.monotonic() - started,
    )  # fmt: skip


@flow(name="release")
def release_flow(
    ranker_version: str,
    alias: str,
    profile: str | None = None,
    budget_seconds: float = 420,
    candidates_version: str | None = None,
    reason: str = GATE_PASSED,
) -> dict[str, Any]:
    """Make the first champion live, or take a challenger through the rollout; the candidate
    model is `candidates_version` or, by default, the one in the ranker's lineage."""
    settings = load_settings(profile)
    candidates_version = candidates_version or candidates_version_of(settings, ranker_version)
    if alias == "champion":
        c = client(settings.tracking_uri)
        if version_by_alias(c, settings.candidates.model_name, "champion") is None:
            promote(c, settings.candidates.model_name, candidates_version, "champion")
        url = ensure_stack(settings, profile)
        outcome = ReleaseOutcome(
            "live",
            f"first version: ranker v{ranker_version} with candidates v{candidates_version} "
            "serves every listener from blue",
            url,
            candidate={"candidates": candidates_version, "ranker": ranker_version},
        )
    else:
        url = ensure_stack(settings, profile)
        outcome = release_challenger(
            settings, profile, url, ranker_version, budget_seconds, candidates_version, reason
        )
    create_markdown_artifact(
        f"# Release: {outcome.status}\n\n{outcome.summary}\n\ngateway: {outcome.gateway}\n",
        key="release",
    )
    log.info("release finished", extra={"status": outcome.status})
    return outcome.to_dict()
