"""Shared fixtures: every test gets its own data root and settings, never the user's."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Prefect reads PREFECT_HOME when first imported: give the test session its own, so nothing
# touches the user's home or the project's data root.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="crossfade-prefect-")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

from crossfade.config import Settings, load_settings

# A small world keeps the suite fast; benchmarks scale it up.
SMALL_WORLD = {
    "users": 200,
    "days": 7,
    "artists": 60,
    "tracks": 600,
    "episodes": 40,
}


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop CROSSFADE_* variables of the caller and point every store at tmp_path."""
    for key in list(os.environ):
        if key.startswith("CROSSFADE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CROSSFADE_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Local-profile settings with a private data root and a small simulated world."""
    return load_settings("local", data_root=tmp_path / "data", simulator=SMALL_WORLD)


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def require_service(name: str, port: int) -> None:
    """Skip (with the reason) when a machine service is down; in CI that is a failure instead."""
    if _reachable("127.0.0.1", port):
        return
    message = f"{name} on 127.0.0.1:{port} is unreachable"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: services-profile tests may not skip in CI")
    pytest.skip(message)


@pytest.fixture
def services_settings(tmp_path: Path) -> Settings:
    """`services` profile settings against the machine's real PostgreSQL and Redis."""
    require_service("PostgreSQL", 5432)
    require_service("Redis", 6379)
    return load_settings("services", data_root=tmp_path / "data", simulator=SMALL_WORLD)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server for the whole session (starting one takes ~25 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield None
