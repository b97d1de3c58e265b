"""Start and stop a service (BentoML or plain ASGI) as its own process on a loopback port.

`start_service("deployments.recommender.service:Recommender", env={...})` runs
`bentoml serve` with the caller's environment plus `env`, waits for `/readyz` and returns a
handle with the base URL; a process that exits or is not ready in time raises
`ServiceStartError` with the tail of its stderr. Used for the blue, green and shadow
recommenders, the gateway, the integration tests and the drills. With `server="uvicorn"` the
target is an ASGI app ("module:app") run by uvicorn in one process (the gateway).

Each BentoML service gets a private `BENTOML_HOME` unless `env` names one: `bentoml serve` empties
`$BENTOML_HOME/prometheus_multiproc_dir` at start-up, so a shared home would wipe the metrics
of every BentoML process already running. Stopping walks the process tree (psutil): BentoML's
workers run in sessions of their own, beyond the reach of a signal to the process group.

Every process of a stack carries `STACK_ENV=<stack id>:<member>` in its environment (children
inherit it, BentoML workers included), so `tagged()` finds all of them by data root even when
their parents died and no PID file names them any more.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
Server = Literal["bentoml", "uvicorn"]
STACK_ENV = "XFADE_STACK"  # not CROSSFADE_*: settings refuse unknown variables of that prefix
DATA_ROOT_ENV = "CROSSFADE_DATA_ROOT"
KEEPALIVE_SECONDS = 5  # idle keep-alive of a uvicorn-served app: uvicorn's default, as in BentoML


class ServiceStartError(RuntimeError):
    """A service process died or never became ready; the message carries its stderr tail."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def running(proc: psutil.Process) -> bool:
    """Whether `proc` (the very process, not a reused PID) still runs; a zombie does not."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class ServiceProcess:
    """A running service process (`bentoml serve` or uvicorn)."""

    target: str
    port: int
    process: subprocess.Popen[bytes]
    stderr_path: Path
    _stderr: IO[bytes] = field(repr=False)
    private_home: Path | None = None  # a BENTOML_HOME this handle created and removes at stop
    known: list[psutil.Process] = field(default_factory=list, repr=False)  # see remember()

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:43121."""
        return f"http://{HOST}:{self.port}"

    def stderr_tail(self, chars: int = 4000) -> str:
        """The last `chars` characters the process wrote to stderr."""
        try:
            return self.stderr_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def tree(self) -> list[psutil.Process]:
        """The service process and every descendant (BentoML workers) still running."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def remember(self) -> list[psutil.Process]:
        """Record the current tree (workers included), so they can be found and ended after the
        arbiter died and they were re-parented; returns the processes recorded."""
        seen = {proc.pid for proc in self.known}
        self.known.extend(proc for proc in self.tree() if proc.pid not in seen)
        return self.known

    def lost(self) -> list[int]:
        """PIDs of recorded processes (arbiter or worker) that are gone: a crashed part."""
        return [proc.pid for proc in self.known if not running(proc)]

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group (bentoml stops its workers, uvicorn shuts down gracefully);
        SIGKILL the tree if it lingers.

        The tree is taken before SIGTERM: once the arbiter is gone its workers (in sessions of
        their own) could no longer be found through it.
        """
        strays = [proc for proc in self.known if running(proc)]  # orphans of a dead arbiter
        if self.alive():
            tree = self.tree()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                for proc in [*tree, *self.tree()]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        proc.kill()
                self.process.wait(timeout=timeout)
            _, alive = psutil.wait_procs(tree, timeout=timeout)
            for proc in alive:  # a worker that outlived its arbiter's SIGTERM
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            psutil.wait_procs(alive, timeout=timeout)
        end_processes([proc for proc in strays if running(proc)], timeout)
        self._stderr.close()
        if self.private_home is not None:
            shutil.rmtree(self.private_home, ignore_errors=True)
        return self.process.returncode

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def server_command(target: str, port: int, server: Server = "bentoml") -> list[str]:
    """The command line that serves `target` on loopback `port`."""
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", target, "--host", HOST, "--port", str(port),
            "--no-access-log", "--no-server-header", "--log-level", "warning",
            "--timeout-keep-alive", str(KEEPALIVE_SECONDS), "--lifespan", "on",
        ]  # fmt: skip
    return [
        sys.executable, "-m", "bentoml", "serve", target,
        "--host", HOST, "--port", str(port), "--working-dir", str(REPO_ROOT),
    ]  # fmt: skip


def wait_ready(service: ServiceProcess, timeout: float) -> None:
    """Poll `/readyz` until 200; raise with the stderr tail if the process dies or times out."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not service.alive():
                raise ServiceStartError(
                    f"{service.target} exited with code {service.process.returncode} before "
                    f"it was ready; stderr tail:\n{service.stderr_tail()}"
                )
            try:
                response = client.get(f"{service.url}/readyz")
                if response.status_code == 200:
                    return
                last = f"/readyz answered {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
    service.stop()
    raise ServiceStartError(
        f"{service.target} was not ready on {service.url} within {timeout:.0f} s ({last}); "
        f"stderr tail:\n{service.stderr_tail()}"
    )


def start_service(
    target: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
    ready_timeout: float = 120.0,
    wait: bool = True,
    server: Server = "bentoml",
) -> ServiceProcess:
    """Run `target` on loopback; by default wait until `/readyz` says 200.

    `target` is "module.path:ServiceClass" for `bentoml serve` (the default) or
    "module.path:app" for `server="uvicorn"`; the process runs from the repository root with
    the current environment plus `env` (e.g. CROSSFADE_DATA_ROOT, CROSSFADE_SERVING__SLOT).
    A BentoML service without `BENTOML_HOME` in `env` gets a private one (a temporary
    directory, removed by `stop()`), so its start-up cannot wipe other services' metrics.
    """
    port = port or free_port()
    stderr_path = Path(tempfile.mkstemp(prefix="crossfade-service-", suffix=".log")[1])
    stderr = stderr_path.open("wb")
    # BENTOML_DO_NOT_TRACK: no usage-statistics thread in the arbiter (nothing leaves the host).
    full_env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "BENTOML_DO_NOT_TRACK": "True",
        **(env or {}),
    }
    private_home = None
    if server == "bentoml" and "BENTOML_HOME" not in (env or {}):
        private_home = Path(tempfile.mkdtemp(prefix="crossfade-bentoml-"))
        full_env["BENTOML_HOME"] = str(private_home)
    if server == "uvicorn":  # one process: in-memory metrics, never a multiprocess directory
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p
    )
    command = server_command(target, port, server)
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=full_env,
        stdout=stderr,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    service = ServiceProcess(target, port, process, stderr_path, stderr, private_home)
    if wait:
        wait_ready(service, ready_timeout)
    return service


@dataclass(frozen=True)
class Tagged:
    """A running process that carries a stack's tag: which stack, which member, which root."""

    process: psutil.Process
    stack_id: str
    member: str
    data_root: str


def _same_path(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def tagged(data_root: Path | str) -> list[Tagged]:
    """Every process of this user whose environment tags it as part of a stack on `data_root`."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
        tag, root = env.get(STACK_ENV), env.get(DATA_ROOT_ENV)
        if not tag or not root or not _same_path(root, str(data_root)):
            continue
        stack_id, _, member = tag.partition(":")
        found.append(Tagged(proc, stack_id, member, root))
    return found


def end_processes(procs: list[psutil.Process], timeout: float = 10.0) -> list[int]:
    """SIGTERM `procs`, SIGKILL whatever is left after `timeout`; returns the PIDs ended."""
    live = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
            live.append(proc)
    _, alive = psutil.wait_procs(live, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)
    return [proc.pid for proc in live]


def port_holder(port: int) -> str | None:
    """Who listens on loopback `port`: "PID n (command line)", or None when it cannot be told."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "a process of another user"
            try:
                command = " ".join(psutil.Process(conn.pid).cmdline())[:200]
            except psutil.Error:
                command = "?"
            return f"PID {conn.pid} ({command})"
    return None


def wait_port_free(port: int, timeout: float) -> bool:
    """Poll until nothing listens on loopback `port`; False if still taken after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
                return True
            except OSError:
                pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
