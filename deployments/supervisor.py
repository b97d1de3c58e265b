"""Supervision of a running stack: each slot, the gateway and the controller on its own.

`Supervisor(stack).run(stop)` (what `make serve` runs) checks every process each
`gateway.supervise_interval_seconds`:
- a slot is dead when its `bentoml serve` arbiter exited, a worker recorded at start is gone
  (BentoML would respawn it on the slot's start-up models, not the ones reloaded since), or
  `/readyz` has not answered 200 for `gateway.unready_grace_seconds`; the gateway when it exited
  or `/healthz` stops answering as long; the controller when it exited;
- a dead process is cleaned up completely (its tree, orphaned workers found by the stack's tag)
  and restarted on the same port after a backoff (`restart_backoff_seconds`, doubling with each
  recent restart); a slot restarts on the versions the rollout store assigns it;
- if the dead slot is one the live rollout uses (green, or shadow during SHADOW), the rollout
  is rolled back first through the controller's API (actor "supervisor", an incident is
  recorded); the gateway already sends green's listeners to blue, so none of them fails;
- a process that died `max_restarts` times within `restart_window_seconds` is left down and
  reported, never restarted forever;
- an error while the supervisor handles one member (its clean-up, a probe, a restart) stays with
  that member: one line on the console, the traceback in `<data root>/serve/supervisor.log`,
  and it counts as a failed restart (the member is cleaned up again and restarted after the
  backoff); the other members stay supervised and the loop goes on.
Every event is one line through `say` (the console under `make serve`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from deployments.process import ServiceProcess, end_processes, port_holder, wait_port_free
from deployments.rollout.auth import SUPERVISOR_ACTOR
from deployments.rollout.machine import ACTIVE, Phase
from deployments.rollout.store import RolloutStore
from deployments.serve import (
    SLOTS,
    Stack,
    slot_refs,
    start_controller,
    start_gateway,
    start_slot,
    supervisor_log_path,
)

PROBE_TIMEOUT_S = 2.0
PORT_RELEASE_S = 10.0  # a killed process's port is free again well within this


@dataclass
class Member:
    """What the supervisor tracks about one process of the stack."""

    name: str
    status: str = "up"  # up | dying (being cleaned up) | waiting (backoff) | starting | failed
    restarts: deque[float] = field(default_factory=deque)
    next_start: float = 0.0
    deadline: float = 0.0
    unready_since: float | None = None
    dirty: bool = False  # a step failed: clean up (and roll back) again before the restart


class Supervisor:
    """Watches a `Stack` and restarts what dies; see the module docstring."""

    def __init__(
        self,
        stack: Stack,
        say: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.say = say or (lambda line: print(line, flush=True))
        self.clock = clock
        self.store = RolloutStore.from_settings(stack.settings)
        names = [*SLOTS, "gateway"] + (["controller"] if stack.controller is not None else [])
        self.members = {name: Member(name) for name in names}
        self.http = httpx.Client(timeout=PROBE_TIMEOUT_S)
        stack.supervised = True

    # -- the loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Check every process until `stop` is set."""
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception as exc:  # tick guards each member; this is the last resort
                    self._log_error("tick", exc)
                    self.say(f"supervisor: a pass failed ({_brief(exc)}); going on")
                stop.wait(self.settings.gateway.supervise_interval_seconds)
        finally:
            self.http.close()

    def tick(self) -> None:
        """One pass over every process: probe, clean up and restart as needed.

        An error in one member's step is that member's failed restart (`_step_failed`); the
        pass goes on with the others.
        """
        for member in self.members.values():
            try:
                self._step(member)
            except Exception as exc:
                self._step_failed(member, exc)

    def _step(self, member: Member) -> None:
        if member.status == "up":
            why = self._dead(member)
            if why is not None:
                self._on_death(member, why)
        elif member.status == "waiting" and self.clock() >= member.next_start:
            self._start(member)
        elif member.status == "starting":
            self._check_start(member)

    def _step_failed(self, member: Member, exc: Exception) -> None:
        """Count an error in `member`'s step as a failed restart: one console line, the
        traceback in the log file; retry after the backoff unless the budget is spent."""
        probing = member.status == "up"  # a probe or health check failed, not a restart
        log = self._log_error(member.name, exc)
        where = f"{_brief(exc)}; details in {log}"
        if member.status == "failed":  # already given up on (and reported): stays down
            self.say(f"{member.name}: supervisor step failed ({where})")
            return
        now, cfg = self.clock(), self.settings.gateway
        if self._budget_spent(member, now):
            member.status = "failed"
            self.say(
                f"{member.name}: supervisor step failed ({where}); {len(member.restarts)} failed "
                f"restarts in {cfg.restart_window_seconds:.0f} s, NOT supervising it any more: "
                f"see `crossfade release status` and the logs, then `crossfade stop` and "
                f"`make serve`"
            )
            with contextlib.suppress(Exception):
                self.stack.write_manifest()
            return
        backoff = cfg.restart_backoff_seconds * 2 ** len(member.restarts)
        member.restarts.append(now)
        if probing:  # the process may well be healthy: probe it again next pass
            self.say(f"{member.name}: probe failed ({where}); counted as a failed restart")
            return
        member.status, member.next_start, member.dirty = "waiting", now + backoff, True
        self.say(
            f"{member.name}: supervisor step failed ({where}); counted as a failed restart, "
            f"cleaning up and restarting in {backoff:.0f} s"
        )

    def _budget_spent(self, member: Member, now: float) -> bool:
        """Whether `member` used its restarts inside the window (older restarts forgotten)."""
        cfg = self.settings.gateway
        while member.restarts and now - member.restarts[0] > cfg.restart_window_seconds:
            member.restarts.popleft()
        return len(member.restarts) >= cfg.max_restarts

    def _log_error(self, name: str, exc: Exception) -> str:
        """Append `exc`'s traceback to the supervisor log; returns the log's path."""
        path = supervisor_log_path(self.settings)
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            with path.open("a") as out:
                out.write(f"{stamp} stack {self.stack.stack_id} member {name}:\n")
                out.writelines(traceback.format_exception(exc))
        return str(path)

    # -- liveness ----------------------------------------------------------------------------
    def _dead(self, member: Member) -> str | None:
        """Why `member` counts as dead now, or None while it is healthy."""
        if member.name == "controller":
            proc = self.stack.controller
            if proc is None or proc.poll() is None:
                return None
            return f"pid {proc.pid} exited with code {proc.returncode}"
        svc = self.stack.services[member.name]
        if not svc.alive():
            return f"pid {svc.process.pid} exited with code {svc.process.returncode}"
        lost = svc.lost()
        if lost:
            return f"pid {svc.process.pid}: worker(s) {', '.join(map(str, lost))} gone"
        if self._answers(member.name, svc):
            member.unready_since = None
            return None
        now = self.clock()
        if member.unready_since is None:
            member.unready_since = now
        elif now - member.unready_since > self.settings.gateway.unready_grace_seconds:
            return f"pid {svc.process.pid} not answering for {now - member.unready_since:.0f} s"
        return None

    def _answers(self, name: str, svc: ServiceProcess) -> bool:
        # The gateway's /readyz depends on blue: its own liveness is /healthz.
        path = "/healthz" if name == "gateway" else "/readyz"
        try:
            return self.http.get(f"{svc.url}{path}").status_code == 200
        except httpx.HTTPError:
            return False

    # -- death -------------------------------------------------------------------------------
    def _on_death(self, member: Member, why: str) -> None:
        member.status = "dying"
        self._clean_up(member.name)
        rolled = self._roll_back_if_in_use(member.name)
        now, cfg = self.clock(), self.settings.gateway
        if self._budget_spent(member, now):
            member.status = "failed"
            self.say(
                f"{member.name} died ({why}){rolled}; it died {len(member.restarts)} times "
                f"in {cfg.restart_window_seconds:.0f} s, NOT restarting it: see "
                f"`crossfade release status` and the logs, then `crossfade stop` and "
                f"`make serve`"
            )
            self.stack.write_manifest()
            return
        backoff = cfg.restart_backoff_seconds * 2 ** len(member.restarts)
        member.restarts.append(now)
        member.status, member.next_start = "waiting", now + backoff
        self.say(f"{member.name} died ({why}); restarting in {backoff:.0f} s{rolled}")

    def _clean_up(self, name: str) -> None:
        """End every process of member `name`: its tree, recorded workers, tagged orphans."""
        if name == "controller":
            proc = self.stack.controller
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                proc.wait(timeout=10)
        else:
            self.stack.services[name].stop(timeout=5.0)
        end_processes(self.stack.strays(name), timeout=5.0)

    def _roll_back_if_in_use(self, name: str) -> str:
        """Roll back the live rollout if it uses slot `name`; a text for the event line."""
        if name not in ("green", "shadow"):
            return ""
        from deployments.rollout.controller import Controller

        try:
            state = self.store.read_state()
            if Phase(state.phase) not in ACTIVE or not state.slots.get(name):
                return ""
            new, incident = Controller(self.settings, store=self.store).rollback(
                SUPERVISOR_ACTOR, f"{name} slot died"
            )
        except Exception as exc:  # lost a race to another rollback, or the store is down
            with contextlib.suppress(Exception):
                now = self.store.read_state()
                if now.phase == Phase.ROLLED_BACK.value:
                    return f"; rollout {now.rollout_id} already rolled back"
            return f"; rollback FAILED ({type(exc).__name__}: {exc}): roll back by hand"
        return f"; rollout {new.rollout_id} rolled back: {name} slot died (incident {incident})"

    # -- restart -----------------------------------------------------------------------------
    def _start(self, member: Member) -> None:
        name = member.name
        cfg = self.settings.gateway
        if member.dirty:  # an earlier step failed half-way: what it left may still run
            self._clean_up(name)
            rolled = self._roll_back_if_in_use(name)
            member.dirty = False
            if rolled:
                self.say(f"{name}: cleaned up before its restart{rolled}")
        if name == "controller":
            self.stack.controller = start_controller(self.settings, self.stack.env(name))
            member.status = "up"
            self.stack.write_manifest()
            self.say(f"controller restarted (pid {self.stack.controller.pid})")
            return
        port = self.stack.services[name].port
        if not wait_port_free(port, PORT_RELEASE_S):
            holder = port_holder(port) or "an unknown process"
            self._failed_start(member, f"port {port} is held by {holder}")
            return
        try:
            if name == "gateway":
                svc = start_gateway(
                    self.settings, self.stack.ports, port, self.stack.env(name), wait=False
                )
            else:
                refs = slot_refs(self.settings, self.store.read_state().slots)[name]
                svc = start_slot(self.settings, port, name, refs, self.stack.env(name))
        except Exception as exc:
            self._failed_start(member, f"{type(exc).__name__}: {exc}")
            return
        self.stack.services[name] = svc
        member.status, member.unready_since = "starting", None
        member.deadline = self.clock() + cfg.start_timeout_seconds

    def _check_start(self, member: Member) -> None:
        svc = self.stack.services[member.name]
        if not svc.alive():
            tail = svc.stderr_tail(300).strip().splitlines()[-1:] or ["no output"]
            self._failed_start(member, f"exited with code {svc.process.returncode}: {tail[0]}")
        elif self._answers(member.name, svc):
            member.status = "up"
            self.stack.write_manifest()
            self.say(f"{member.name} restarted (pid {svc.process.pid}) on {svc.url}")
        elif self.clock() > member.deadline:
            self._failed_start(member, "not ready in time")

    def _failed_start(self, member: Member, why: str) -> None:
        self._on_death(member, f"restart failed: {why}")


def _brief(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    first = str(exc).strip().splitlines()[:1]
    return f"{type(exc).__name__}: {first[0][:200]}" if first else type(exc).__name__
