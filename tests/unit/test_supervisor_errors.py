"""The supervisor survives an error in one member's step (issue 19, review finding 5).

Real processes stand in for the stack's members (a sleeping Python each; nothing answers their
ports, and the supervisor's clock is frozen so none of them counts as unready). Blue's clean-up
raises, as `ServiceProcess.stop` does when a killed process does not go away in time: the
error is counted as blue's failed restart, one line names it, the traceback goes to the log
file under the data root, and the other members stay supervised while the loop goes on.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossfade.config import Settings
from deployments.process import ServiceProcess, free_port
from deployments.serve import SLOTS, Ports, Stack, manifest_path, supervisor_log_path
from deployments.supervisor import Supervisor
from tests.fixtures.stack import eventually


class StuckService(ServiceProcess):
    """A member whose clean-up fails, as a process that outlives its SIGKILL would make it."""

    def stop(self, timeout: float = 15.0) -> int | None:
        """End the process, then fail as a wait that timed out does."""
        super().stop(timeout)
        raise subprocess.TimeoutExpired(self.target, timeout)


def _service(tmp_path: Path, name: str, kind: type[ServiceProcess]) -> ServiceProcess:
    stderr_path = tmp_path / f"{name}.err"
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    return kind(name, free_port(), process, stderr_path, stderr_path.open("wb"))


class Clock:
    """A monotonic clock the test moves by hand (backoffs never elapse unless told)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    services = {
        name: _service(tmp_path, name, StuckService if name == "blue" else ServiceProcess)
        for name in (*SLOTS, "gateway")
    }
    ports = Ports(*(services[name].port for name in ("gateway", *SLOTS)))
    # nothing answers the probes: only a process that exits counts as dead here
    gateway = settings.gateway.model_copy(update={"unready_grace_seconds": 1e9})
    settings = settings.model_copy(update={"gateway": gateway})
    stack = Stack(settings, ports, services, manifest_path(settings))
    yield stack
    for svc in services.values():
        if svc.alive():
            svc.process.kill()
            svc.process.wait(timeout=10)


def _status(supervisor: Supervisor) -> dict[str, str]:
    return {name: member.status for name, member in supervisor.members.items()}


def test_a_failing_clean_up_is_one_members_failed_restart(stack: Stack, settings: Settings) -> None:
    lines: list[str] = []
    clock = Clock()
    supervisor = Supervisor(stack, say=lines.append, clock=clock)
    stack.services["blue"].process.kill()
    stack.services["shadow"].process.kill()
    for name in ("blue", "shadow"):
        stack.services[name].process.wait(timeout=10)

    supervisor.tick()  # before the fix, blue's error ended the pass (and `make serve` with it)

    blue, shadow = supervisor.members["blue"], supervisor.members["shadow"]
    assert (blue.status, blue.dirty, len(blue.restarts)) == ("waiting", True, 1)
    assert shadow.status == "waiting" and len(shadow.restarts) == 1
    assert _status(supervisor)["green"] == "up" and _status(supervisor)["gateway"] == "up"
    failed = [line for line in lines if line.startswith("blue:")]
    assert len(failed) == 1, lines
    assert "TimeoutExpired" in failed[0] and "counted as a failed restart" in failed[0]
    assert str(supervisor_log_path(settings)) in failed[0]
    details = supervisor_log_path(settings).read_text()
    assert "Traceback" in details and "member blue" in details and "TimeoutExpired" in details
    assert any(line.startswith("shadow died") for line in lines), lines

    # The retry cleans up first; it fails again and counts again, and blue keeps waiting.
    clock.now = blue.next_start
    supervisor.tick()
    assert len(blue.restarts) == 2 and blue.status == "waiting"


def test_the_loop_goes_on_after_a_members_error(stack: Stack, settings: Settings) -> None:
    lines: list[str] = []
    supervisor = Supervisor(stack, say=lines.append, clock=Clock())
    stop = threading.Event()
    loop = threading.Thread(target=supervisor.run, args=(stop,), daemon=True)
    stack.services["blue"].process.kill()
    loop.start()
    try:
        eventually(lambda: supervisor.members["blue"].restarts, "blue's failed restart", 60)
        assert loop.is_alive()
        stack.services["gateway"].process.kill()  # a later pass still sees other deaths
        eventually(
            lambda: any(line.startswith("gateway died") for line in lines),
            "the supervisor to notice the gateway died",
            60,
        )
    finally:
        stop.set()
        loop.join(timeout=60)
    assert not loop.is_alive()
    assert supervisor.members["green"].status == "up"


def test_a_member_out_of_restarts_is_reported_and_left_alone(
    stack: Stack, settings: Settings
) -> None:
    lines: list[str] = []
    clock = Clock()
    supervisor = Supervisor(stack, say=lines.append, clock=clock)
    blue = supervisor.members["blue"]
    stack.services["blue"].process.kill()
    stack.services["blue"].process.wait(timeout=10)
    supervisor.tick()
    for _ in range(settings.gateway.max_restarts):
        clock.now = max(clock.now, blue.next_start)
        supervisor.tick()
    assert blue.status == "failed"
    blue_lines = [line for line in lines if line.startswith("blue:")]
    assert "NOT supervising it any more" in blue_lines[-1], blue_lines
    restarts = len(blue.restarts)
    clock.now += 3600.0  # a member given up on is never tried again
    supervisor.tick()
    assert blue.status == "failed" and len(blue.restarts) == restarts
    assert {_status(supervisor)[name] for name in ("green", "shadow", "gateway")} == {"up"}
