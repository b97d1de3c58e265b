"""Supervision drills against the stack as `make serve` starts it (`python -m deployments.serve`).

One supervised stack (on fixed ports, as `make serve` has them) serves the cases in order,
with listeners sending requests through the gateway from a thread:
- green's arbiter AND worker are SIGKILLed mid-canary: the supervisor rolls the rollout back
  (actor "supervisor", an incident), restarts green on the champion, leaves no orphan, and not
  one listener request fails (the gateway sends green's listeners to blue);
- blue is SIGKILLed (no rollout in progress): blue is restarted; meanwhile green, which then
  serves the very versions blue served (it starts on the champion, and a rollback's restart
  put it there), stands in, so not one listener request fails either. With a candidate on
  green and shadow (a rollout in SHADOW) nothing may stand in for blue and its listeners get
  503 until blue is back; that case is not drilled here;
- the gateway and the controller are SIGKILLed: both are restarted (the gateway on its port);
- the supervisor and green's arbiter are SIGKILLed: `crossfade stop` still finds and ends every
  process of the stack (by the tag in their environment, no PID needed), and a second start on
  the same ports succeeds; killing an arbiter under that second stack and stopping at once
  again leaves nothing behind.
Every wait polls observed state with a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from crossfade.config import ENV_PREFIX, Settings
from deployments.process import HOST, REPO_ROOT, free_port, running, tagged
from deployments.serve import PortInUseError, Ports, manifest_path, settings_env
from tests.drills.conftest import drill_settings
from tests.fixtures.stack import (
    RM,
    VIEWER,
    eventually,
    recommend_body,
    register_challenger,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

START_S = 300.0  # a stack start on a loaded 2-core machine (three model loads)
MAX_REQUESTS = 4000  # bounds each listener run
MAX_SECONDS = 600.0


def long_windows(config: dict[str, Any]) -> dict[str, Any]:
    """Guardrail windows far longer than a drill: only the supervisor acts on the rollout."""
    config.update(window_seconds=3600.0)
    config["canary"] = {"steps": [50], "windows_per_step": 1}
    return dict(config)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Settings:
    """Settings of the drill stack: fixed ports (as `make serve` has them), long windows."""
    ports = {"port": 0, "blue_port": 0, "green_port": 0, "shadow_port": 0}
    taken: set[int] = set()
    for key in ports:
        while (port := free_port()) in taken:
            pass
        ports[key] = port
        taken.add(port)
    return drill_settings(
        tmp_path_factory,
        "supervision",
        long_windows,
        loaded_budgets=False,
        gateway={**ports, "last_resort_timeout_ms": 5000},
    )


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(settings_env(settings))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


class Served:
    """`python -m deployments.serve` in a subprocess, its console in a file."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deployments.serve"],
                cwd=REPO_ROOT,
                env=_env(settings),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        eventually(self._ready, "the stack's stack.json and gateway /readyz", timeout=START_S)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"deployments.serve exited early:\n{self.console()[-3000:]}")
        doc = self.manifest()
        return bool(doc and doc.get("supervised") and _answers(doc["gateway"]["url"]))

    def manifest(self) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads(manifest_path(self.settings).read_text())
        except (OSError, ValueError):
            return None
        return doc

    def console(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self, name: str) -> str:
        doc = self.manifest()
        assert doc is not None
        return str(doc[name]["url"])

    def processes(self, name: str) -> list[psutil.Process]:
        """The member's arbiter and workers as stack.json names them (PID-reuse safe)."""
        doc = self.manifest()
        assert doc is not None
        entry = doc[name]
        return [psutil.Process(p["pid"]) for p in [entry, *entry["workers"]]]


def _answers(url: str, path: str = "/readyz") -> bool:
    try:
        return httpx.get(f"{url}{path}", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGKILL)


@pytest.fixture(scope="module")
def served(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    stack = Served(settings, log)
    yield stack
    if stack.process.poll() is None:
        stack.process.terminate()
        stack.process.wait(timeout=120)
    _crossfade_stop(settings)


class Listeners:
    """Listener requests through the gateway from a thread until stopped (bounded)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Listeners:
        self._thread.start()
        eventually(lambda: self.ok >= 5, "the first listener answers")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for n in range(MAX_REQUESTS):
                if self._stop.is_set() or time.monotonic() - started > MAX_SECONDS:
                    return
                try:
                    response = client.post("/recommend", json=recommend_body(f"u-drill-{n % 97}"))
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                else:
                    if response.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{response.status_code}: {response.text[:200]}")
                self._stop.wait(0.02)

    def after(self, count: int, what: str) -> None:
        """Wait until `count` more requests were answered (traffic kept flowing)."""
        target = self.ok + count
        eventually(lambda: self.ok >= target, what, timeout=120)


def _admin(url: str, method: str, action: str, **body: Any) -> Any:
    headers = VIEWER if method == "GET" else RM
    if method == "POST":  # every change names the state it acts on
        body["expected_version"] = _admin(url, "GET", "status")["state_version"]
    response = httpx.request(
        method, f"{url}/admin/release/{action}", headers=headers, json=body or None, timeout=120
    )
    assert response.status_code == 200, f"{action}: {response.status_code} {response.text}"
    return response.json()


def _serves(url: str, ranker: str) -> bool:
    try:
        answer = httpx.post(f"{url}/recommend", json=recommend_body("u-probe"), timeout=10)
    except httpx.HTTPError:
        return False
    return answer.is_success and str(answer.json()["model"]["ranker"]) == str(ranker)


def _restarted(served: Served, name: str, old: list[psutil.Process]) -> bool:
    doc = served.manifest()
    if not doc or doc[name]["pid"] in {p.pid for p in old}:
        return False
    return _answers(doc[name]["url"])


def _crossfade_stop(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossfade.cli", "stop"],
        cwd=REPO_ROOT,
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_green_killed_mid_canary_rolls_back_and_restarts_with_no_listener_error(
    served: Served, settings: Settings
) -> None:
    gateway = served.url("gateway")
    version = register_challenger(settings)
    with Listeners(gateway) as listeners:
        started = _admin(gateway, "POST", "start", candidates="champion", ranker=version,
                         reason="drill")  # fmt: skip
        eventually(lambda: _serves(served.url("green"), version), "green to load the candidate",
                   timeout=120)  # fmt: skip
        canary = _admin(gateway, "POST", "promote", reason="drill: to canary")
        assert canary["phase"] == "CANARY" and canary["green_percent"] == 50, canary
        listeners.after(20, "canary traffic")
        green = served.processes("green")
        assert len(green) >= 2, "expected green's bentoml arbiter and at least one worker"
        _kill(green)
        status = eventually(
            lambda: (s := _admin(gateway, "GET", "status"))["phase"] == "ROLLED_BACK" and s,
            "the supervisor to roll the rollout back",
        )
        eventually(lambda: _restarted(served, "green", green), "green restarted", timeout=START_S)
        listeners.after(20, "traffic after green's restart")
    assert status["rollout_id"] == started["rollout_id"] and status["green_percent"] == 0
    rows = [r for r in _admin(gateway, "GET", "history")
            if r["action"] == "rollback" and r["rollout_id"] == started["rollout_id"]]  # fmt: skip
    assert [r["actor"] for r in rows] == ["supervisor"], rows
    incidents = _admin(gateway, "GET", "incidents")
    assert any(i["actor"] == "supervisor" and "green" in i["reason"] for i in incidents)
    assert not listeners.failures, listeners.failures[:5]
    assert not [p.pid for p in green if running(p)], "green's old processes still run"
    assert _serves(served.url("green"), status["baseline"]["ranker"])  # back on the champion
    console = served.console()
    assert "green died" in console and "rolled back: green slot died" in console, console[-2000:]


def test_blue_killed_is_restarted_while_green_stands_in(served: Served) -> None:
    gateway = served.url("gateway")
    with Listeners(gateway) as listeners:
        blue = served.processes("blue")
        _kill(blue)
        eventually(lambda: _restarted(served, "blue", blue), "blue restarted", timeout=START_S)
        listeners.after(20, "traffic after blue's restart")
    assert not listeners.failures, listeners.failures[:5]
    assert not [p.pid for p in blue if running(p)], "blue's old processes still run"
    assert "blue died" in served.console()


def test_killed_gateway_and_controller_are_restarted(served: Served) -> None:
    gateway, controller = served.processes("gateway"), served.processes("controller")
    _kill([*gateway, *controller])
    eventually(lambda: _restarted(served, "gateway", gateway), "the gateway restarted",
               timeout=START_S)  # fmt: skip

    def controller_back() -> bool:
        doc = served.manifest()
        return bool(doc and doc["controller"]["pid"] not in {p.pid for p in controller})

    eventually(controller_back, "the controller restarted")
    assert served.url("gateway").endswith(f":{served.settings.gateway.port}")  # same port
    with Listeners(served.url("gateway")) as listeners:
        listeners.after(5, "answers through the restarted gateway")
    assert not listeners.failures, listeners.failures[:5]
    console = served.console()
    assert "gateway restarted" in console and "controller restarted" in console, console[-2000:]


def test_stop_after_killed_processes_leaves_nothing_and_the_ports_start_again(
    served: Served, settings: Settings, tmp_path: Path
) -> None:
    # The worst case first: the supervisor itself and green's arbiter die; stack.json's top
    # PIDs are dead and green's worker is an orphan holding its port.
    worker_pids = [p.pid for p in served.processes("green")[1:]]
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(timeout=30)
    served.processes("green")[0].send_signal(signal.SIGKILL)
    assert tagged(settings.data_root), "the stack's processes should outlive their supervisor"
    done = _crossfade_stop(settings)
    assert done.returncode == 0 and "stopped" in done.stdout, done.stdout + done.stderr
    assert not tagged(settings.data_root)
    assert not [pid for pid in worker_pids if psutil.pid_exists(pid)
                and running(psutil.Process(pid))]  # fmt: skip
    again = Served(settings, tmp_path / "serve-again.log")  # same fixed ports
    try:
        assert "PortInUseError" not in again.console()
        green = again.processes("green")
        green[0].send_signal(signal.SIGKILL)  # the arbiter only; stop at once
        done = _crossfade_stop(settings)
        assert done.returncode == 0, done.stdout + done.stderr
        again.process.wait(timeout=60)
        assert not tagged(settings.data_root)
        assert not [p.pid for p in green if running(p)]
    finally:
        if again.process.poll() is None:
            again.process.kill()


def test_a_port_held_by_another_program_is_named(settings: Settings) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        gateway = settings.gateway.model_copy(update={"port": port})
        with pytest.raises(PortInUseError, match=f"{port} \\(held by PID {os.getpid()} "):
            Ports.resolve(settings.model_copy(update={"gateway": gateway}))
