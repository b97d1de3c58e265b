"""Where safety and privacy data live under the data root (one place, no literal paths)."""

from __future__ import annotations

from pathlib import Path

from crossfade.config import Settings
from crossfade.safety.policy import SafetyPolicy, load_safety_policy


def safety_dir(settings: Settings) -> Path:
    """Bot flags, audit results and creator reports."""
    return settings.data_root / "safety"


def bot_flags_dir(settings: Settings) -> Path:
    """One Parquet of account flags per detection run."""
    return safety_dir(settings) / "bot_flags"


def privacy_dir(settings: Settings) -> Path:
    """The erasure audit log."""
    return settings.data_root / "privacy"


def logs_dir(settings: Settings) -> Path:
    """Serving request and feedback logs (written by the services)."""
    return settings.data_root / "logs"


def experiments_dir(settings: Settings) -> Path:
    """Experiment folders, each with an `exposures/` log."""
    return settings.data_root / "experiments"


def safety_policy(settings: Settings) -> SafetyPolicy:
    """The safety policy file these settings name."""
    return load_safety_policy(settings.config_path / settings.safety.policy_file)
