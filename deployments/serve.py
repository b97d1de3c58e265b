"""`make serve`: the gateway, blue, green and shadow as separate processes on loopback.

    python -m deployments.serve [--profile local] [--no-controller]

starts the three recommender slots (each a `bentoml serve` process) and the gateway (a
uvicorn process), through deployments/process.py, plus the release controller loop
(`crossfade release watch`) unless told not to; writes `<data root>/serve/stack.json` with
every address and PID (workers, process groups and sessions included), and supervises each
process on its own (deployments/supervisor.py: a dead one is cleaned up and restarted, the
others keep serving) until Ctrl-C or SIGTERM stops every child. The same start-up is a library
call, `start_stack(settings) -> Stack`, for the integration tests, drills and benchmarks.

Every child carries the stack's tag in its environment (deployments/process.py, `STACK_ENV`),
so a start finds and ends the orphans of an earlier stack on the same data root that died
without cleaning up, and `crossfade stop` finds every process even when stack.json's PIDs died.

Which models each slot loads at start (documented in docs/gateway.md):
- blue: `serving.candidates_ref` / `serving.ranker_ref` (default alias `champion`), or the
  versions a rollout in progress assigns to blue;
- green and shadow: the versions the rollout in progress assigns to them; with no rollout they
  start on blue's refs, so they are ready at once, and the gateway reloads them
  (`/admin/reload`) to the candidate as soon as a rollout assigns one (shadow during SHADOW,
  green from CANARY on). Shadow thus serves the very version green will serve next.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import psutil
from pydantic import BaseModel, SecretStr

from crossfade.config import ENV_PREFIX, Settings, load_settings
from deployments.process import (
    HOST,
    REPO_ROOT,
    STACK_ENV,
    ServiceProcess,
    end_processes,
    free_port,
    port_holder,
    running,
    start_service,
    tagged,
    wait_ready,
)
from deployments.rollout.store import RolloutStore

RECOMMENDER = "deployments.recommender.service:Recommender"
GATEWAY = "deployments.gateway.service:app"  # an ASGI app, served by uvicorn
SLOTS = ("blue", "green", "shadow")


def _plain(value: Any) -> Any:
    """A settings value as JSON-ready data, secrets revealed (they go to a child's env only)."""
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def settings_env(settings: Settings) -> dict[str, str]:
    """CROSSFADE_* variables that make a child's `load_settings()` equal `settings`.

    Sections travel as JSON (pydantic-settings parses them), so keyword overrides the caller
    passed to `load_settings` (a test's data root and small world) reach the child too.
    """
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        plain = _plain(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = (
            json.dumps(plain) if isinstance(plain, dict | list) else str(plain)
        )
    return env


@dataclass(frozen=True)
class Ports:
    """The concrete ports of one stack (settings' 0 = a free port chosen at start)."""

    gateway: int
    blue: int
    green: int
    shadow: int

    @classmethod
    def resolve(cls, settings: Settings) -> Ports:
        """Settings' ports, with every 0 replaced by a free loopback port."""
        gw = settings.gateway
        chosen = [gw.port, gw.blue_port, gw.green_port, gw.shadow_port]
        fixed = [p for p in chosen if p]
        if len(fixed) != len(set(fixed)):
            raise ValueError(f"gateway ports must differ, got {chosen}; set distinct ports or 0")
        taken = [p for p in fixed if not port_is_free(p)]
        if taken:
            held = ", ".join(
                f"{p} (held by {port_holder(p) or 'an unknown process'})" for p in taken
            )
            raise PortInUseError(
                f"port(s) {held} on {HOST} already in use: another crossfade stack "
                "(`crossfade stop` with its data root) or another program holds them; free them "
                "or set CROSSFADE_GATEWAY__PORT / __BLUE_PORT / __GREEN_PORT / __SHADOW_PORT "
                "(0 = any)"
            )
        ports = [p or free_port() for p in chosen]
        while len(set(ports)) < len(ports):  # two free-port picks collided
            ports = [p or free_port() for p in chosen]
        return cls(*ports)


class PortInUseError(RuntimeError):
    """A configured stack port is already bound on loopback."""


def port_is_free(port: int) -> bool:
    """Whether nothing listens on `port` on loopback right now (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as servers bind: connections of a stopped stack still in TIME_WAIT do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def slot_refs(
    settings: Settings, assigned: dict[str, dict[str, str] | None]
) -> dict[str, dict[str, str]]:
    """The model refs each slot starts with (see the module docstring)."""
    blue = assigned.get("blue") or {
        "candidates": settings.serving.candidates_ref,
        "ranker": settings.serving.ranker_ref,
    }
    return {slot: dict(assigned.get(slot) or blue) for slot in SLOTS}


def with_admin_token(settings: Settings) -> Settings:
    """Settings whose recommender admin token is set: the gateway needs it to reload slots.

    Without a configured token the stack makes one up for its own processes (it lives only in
    their environment), so `/admin/reload` is never open without authentication.
    """
    if settings.serving.admin_token is not None:
        return settings
    serving = settings.serving.model_copy(
        update={"admin_token": SecretStr(secrets.token_urlsafe(24))}
    )
    return settings.model_copy(update={"serving": serving})


@dataclass
class Stack:
    """A running stack: one process per slot, the gateway, optionally the controller."""

    settings: Settings
    ports: Ports
    services: dict[str, ServiceProcess]
    manifest: Path
    controller: subprocess.Popen[bytes] | None = None
    stack_id: str = field(default_factory=lambda: secrets.token_hex(6))
    supervised: bool = False  # main() supervises; a library caller may (deployments/supervisor.py)
    _stopped: bool = field(default=False, repr=False)

    @property
    def gateway_url(self) -> str:
        """Where listeners (and the admin API) talk to the stack."""
        return self.services["gateway"].url

    def url(self, name: str) -> str:
        """Base URL of `gateway`, `blue`, `green` or `shadow`."""
        return self.services[name].url

    def describe(self) -> dict[str, Any]:
        """What stack.json holds: the stack's tag, who owns it, every process with its workers,
        process group and session (so `crossfade stop` can end them all)."""
        out: dict[str, Any] = {
            name: {"url": svc.url, "port": svc.port, **_procinfo(svc.process.pid, svc.known)}
            for name, svc in self.services.items()
        }
        if self.controller is not None:
            out["controller"] = _procinfo(self.controller.pid, [])
        out["stack_id"] = self.stack_id
        out["tag"] = f"{STACK_ENV}={self.stack_id}:<member>"
        out["owner"] = _procinfo(os.getpid(), [])
        out["supervised"] = self.supervised
        out["data_root"] = str(self.settings.data_root)
        out["profile"] = self.settings.profile
        return out

    def write_manifest(self) -> None:
        """Rewrite stack.json atomically from the processes running now."""
        for svc in self.services.values():
            svc.remember()
        _write_manifest(self.manifest, self.describe())

    def env(self, name: str) -> dict[str, str]:
        """The tag every process of member `name` carries (its children inherit it)."""
        return {STACK_ENV: f"{self.stack_id}:{name}"}

    def strays(self, name: str | None = None) -> list[psutil.Process]:
        """Running processes tagged with this stack (and member `name`), orphans included."""
        return [
            t.process
            for t in tagged(self.settings.data_root)
            if t.stack_id == self.stack_id and (name is None or t.member == name)
        ]

    def signal(self, name: str, signum: int) -> list[int]:
        """Send `signum` to a process of the stack and every descendant; returns their PIDs.

        BentoML's workers run in sessions of their own, so signalling the `bentoml serve`
        process (or its process group) alone leaves the worker that holds the socket running.
        """
        root = psutil.Process(self.services[name].process.pid)
        tree = [root, *root.children(recursive=True)]
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signum)
        return [proc.pid for proc in tree]

    def kill(self, name: str) -> None:
        """SIGKILL a process and its workers, as a crash would (drills: `stack.kill("green")`)."""
        svc = self.services[name]
        if not svc.alive():
            return
        pids = self.signal(name, signal.SIGKILL)
        svc.process.wait(timeout=15)
        psutil.wait_procs([p for p in _existing(pids)], timeout=15)

    def stop(self) -> None:
        """Stop the controller, the gateway, then the slots, then any process still carrying
        this stack's tag (orphaned workers); remove stack.json. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.controller is not None and self.controller.poll() is None:
            self.controller.terminate()
            try:
                self.controller.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.controller.kill()
                self.controller.wait(timeout=10)
        if "gateway" in self.services:
            self.services["gateway"].stop()
        _stop_all(svc for name, svc in self.services.items() if name != "gateway")
        end_processes(self.strays())
        self.manifest.unlink(missing_ok=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _procinfo(pid: int, known: list[psutil.Process]) -> dict[str, Any]:
    """PID, create time, process group, session and command of `pid`, plus its workers."""
    info: dict[str, Any] = {"pid": pid}
    try:
        proc = psutil.Process(pid)
        info.update(
            create_time=proc.create_time(),
            pgid=os.getpgid(pid),
            sid=os.getsid(pid),
            cmdline=" ".join(proc.cmdline())[:300],
        )
        tree = {p.pid: p for p in [*known, *proc.children(recursive=True)] if running(p)}
    except (psutil.Error, OSError):
        tree = {p.pid: p for p in known if running(p)}
    tree.pop(pid, None)
    workers = []
    for child in tree.values():
        with contextlib.suppress(psutil.Error, OSError):
            workers.append(
                {"pid": child.pid, "create_time": child.create_time(),
                 "pgid": os.getpgid(child.pid), "sid": os.getsid(child.pid)}
            )  # fmt: skip
    info["workers"] = workers
    return info


def _existing(pids: list[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.append(psutil.Process(pid))
    return found


def _stop_all(services: Iterable[ServiceProcess]) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda s: s.stop(), services))


def bentoml_home(settings: Settings, name: str) -> Path:
    """A private BENTOML_HOME per process of the stack.

    `bentoml serve` empties `$BENTOML_HOME/prometheus_multiproc_dir` when it starts; with the
    default (shared) home, every process started later wipes the metrics of those already
    running, here and in any other stack on the machine.
    """
    return settings.data_root / "serve" / "bentoml" / name


def start_gateway(
    settings: Settings,
    ports: Ports,
    port: int,
    extra_env: dict[str, str] | None = None,
    wait: bool = True,
) -> ServiceProcess:
    """Start a gateway process on `port` in front of the slots at `ports`; ready on return
    unless `wait` is false.

    The stack starts one; a benchmark may start more in front of the same slots, with
    `extra_env` changing their settings (e.g. the idle shadow share)."""
    env = {
        **settings_env(settings),
        f"{ENV_PREFIX}GATEWAY__BLUE_PORT": str(ports.blue),
        f"{ENV_PREFIX}GATEWAY__GREEN_PORT": str(ports.green),
        f"{ENV_PREFIX}GATEWAY__SHADOW_PORT": str(ports.shadow),
        f"{ENV_PREFIX}GATEWAY__PORT": str(port),
        **(extra_env or {}),
    }
    return start_service(
        GATEWAY,
        env=env,
        port=port,
        ready_timeout=settings.gateway.start_timeout_seconds,
        wait=wait,
        server="uvicorn",
    )


def start_slot(
    settings: Settings, port: int, slot: str, refs: dict[str, str], tag: dict[str, str]
) -> ServiceProcess:
    """Start recommender `slot` on `port` serving `refs`; returns at once (not yet ready)."""
    env = {
        **settings_env(settings),
        **tag,
        "BENTOML_HOME": str(bentoml_home(settings, slot)),
        f"{ENV_PREFIX}SERVING__SLOT": slot,
        f"{ENV_PREFIX}SERVING__CANDIDATES_REF": refs["candidates"],
        f"{ENV_PREFIX}SERVING__RANKER_REF": refs["ranker"],
    }
    return start_service(RECOMMENDER, env=env, port=port, wait=False)


def start_controller(settings: Settings, tag: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the release controller loop (`crossfade release watch`) in a session of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "crossfade.cli", "release", "watch"],
        cwd=REPO_ROOT,
        env={**os.environ, **settings_env(settings), **tag},
        start_new_session=True,
    )


def manifest_path(settings: Settings) -> Path:
    """Where a running stack records its addresses and PIDs."""
    return settings.data_root / "serve" / "stack.json"


def supervisor_log_path(settings: Settings) -> Path:
    """Where the supervisor appends the details (tracebacks) of the errors it survived."""
    return settings.data_root / "serve" / "supervisor.log"


def _write_manifest(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".stack-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(doc, handle, indent=2)
    Path(tmp).replace(path)


def read_manifest(settings: Settings) -> dict[str, Any] | None:
    """stack.json of this data root, or None when absent or unreadable."""
    try:
        doc = json.loads(manifest_path(settings).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def owner_alive(doc: dict[str, Any]) -> bool:
    """Whether the process that started (and owns) the stack of a manifest still runs."""
    owner = doc.get("owner") or {}
    try:
        proc = psutil.Process(int(owner["pid"]))
        same = abs(proc.create_time() - float(owner["create_time"])) < 1.0
    except (KeyError, TypeError, ValueError, psutil.Error):
        return False
    return same and running(proc)


def sweep_orphans(settings: Settings) -> list[str]:
    """End the processes of earlier stacks on this data root whose owner is gone (a stack
    that was killed and left workers holding its ports); returns one line per process."""
    doc = read_manifest(settings)
    live = doc.get("stack_id") if doc and owner_alive(doc) else None
    orphans = [t for t in tagged(settings.data_root) if t.stack_id != live]
    lines = []
    for t in orphans:
        with contextlib.suppress(psutil.Error):
            lines.append(f"PID {t.process.pid} ({t.member} of stack {t.stack_id})")
    end_processes([t.process for t in orphans])
    return lines


def start_stack(settings: Settings, *, controller: bool = False) -> Stack:
    """Start blue, green, shadow, then the gateway (and the controller loop if asked).

    Every process gets `settings` through its environment and is ready (`/readyz` 200) when
    this returns. Orphans of an earlier stack on this data root are ended first. If any
    process fails to start, the ones already running are stopped and the error (with that
    process's stderr tail) is raised.
    """
    if settings.gateway.host != HOST:
        raise ValueError(
            f"gateway.host is {settings.gateway.host!r}; the local stack binds {HOST} only"
        )
    settings = with_admin_token(settings)
    sweep_orphans(settings)
    ports = Ports.resolve(settings)
    timeout = settings.gateway.start_timeout_seconds
    assigned = RolloutStore.from_settings(settings).read_state().slots
    refs = slot_refs(settings, assigned)
    stack = Stack(settings, ports, {}, manifest_path(settings))
    started = stack.services
    try:
        for slot in SLOTS:  # start all three, then wait: their model loads overlap
            started[slot] = start_slot(
                settings, getattr(ports, slot), slot, refs[slot], stack.env(slot)
            )
        _wait_all([started[slot] for slot in SLOTS], timeout)
        started["gateway"] = start_gateway(
            settings, ports, ports.gateway, extra_env=stack.env("gateway")
        )
    except BaseException:
        stack.stop()
        raise
    if controller:
        stack.controller = start_controller(settings, stack.env("controller"))
    stack.write_manifest()
    return stack


def _wait_all(services: list[ServiceProcess], timeout: float) -> None:
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        for future in [pool.submit(wait_ready, svc, timeout) for svc in services]:
            future.result()


def main(argv: list[str] | None = None) -> int:
    """Run the stack in the foreground, supervised, until Ctrl-C / SIGTERM."""
    from deployments.supervisor import Supervisor

    parser = argparse.ArgumentParser(prog="python -m deployments.serve", description=__doc__)
    parser.add_argument("--profile", default=None, help="settings profile (default: local)")
    parser.add_argument(
        "--no-controller", action="store_true", help="do not run `crossfade release watch`"
    )
    args = parser.parse_args(argv)
    settings = load_settings(args.profile)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    for line in sweep_orphans(settings):
        print(f"ended an orphan of an earlier stack: {line}", flush=True)
    print("starting blue, green, shadow and the gateway (models load first) ...", flush=True)
    try:
        stack = start_stack(settings, controller=not args.no_controller)
    except PortInUseError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    stack.supervised = True
    try:
        stack.write_manifest()
        for name in ("gateway", *SLOTS):
            print(f"  {name:<8} {stack.url(name)}", flush=True)
        print(f"addresses and PIDs: {stack.manifest}\nCtrl-C stops everything.", flush=True)
        Supervisor(stack).run(stop)
        return 0
    finally:
        stack.stop()
        print("stack stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
