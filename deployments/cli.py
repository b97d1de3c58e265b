"""Release commands (`crossfade release ...`), added to the CLI through an entry point."""

from __future__ import annotations

from typing import Any


def register(groups: dict[str, Any]) -> None:
    """Add the release commands to the root `crossfade` app."""
