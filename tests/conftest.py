"""Shared fixtures: every test gets its own data root and settings, never the user's."""

from __future__ import annotations

import os
from pathlib import Path

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
