"""Lineage tags: which data, validation and code a model version was trained on."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from crossfade.config import Settings
from crossfade.data.lake import manifests

REPO = Path(__file__).resolve().parents[1]


def git_sha() -> str:
    """The commit the code was at (or 'unknown' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def lineage_tags(settings: Settings, feature_service: str | None = None) -> dict[str, Any]:
    """Tags recorded on every run and model version (data snapshot, validation, code)."""
    published = manifests(settings.lake_dir)
    latest = published[-1] if published else {}
    tags = {
        "crossfade.data_snapshot": ",".join(m["batch_id"] for m in published) or "none",
        "crossfade.data_window_end": latest.get("window_end", "none"),
        "crossfade.validation": "passed" if published else "no published data",
        "crossfade.git_sha": git_sha(),
        "crossfade.profile": settings.profile,
        "crossfade.seed": str(settings.seed),
    }
    if feature_service:
        tags["crossfade.feature_service"] = feature_service
    return tags
