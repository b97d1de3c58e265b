"""Guardrail checks as a scheduled flow: one controller tick (evaluate the window if due, then
advance, hold, pause or roll back). A no-op when no rollout is in progress, so the schedule
can run every few minutes all week; `crossfade release watch` is the same loop in a process.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from crossfade.config import load_settings
from deployments.rollout.controller import Controller


@flow(name="rollout-guardrails")
def rollout_tick_flow(profile: str | None = None, tick_seconds: float = 1.0) -> dict[str, Any]:
    """Tick the rollout controller once and report what it did; `tick_seconds` is the
    schedule's interval (prefect.yaml passes it), which the heartbeat is judged against."""
    outcome = Controller(load_settings(profile), tick_seconds=tick_seconds).tick()
    state = outcome.state
    result = {"action": outcome.action, "phase": state.phase, "paused": state.paused}
    if outcome.window is not None:
        result["window"] = outcome.window.summary()
        create_markdown_artifact(
            f"# Guardrails: {outcome.action}\n\nphase {state.phase}; "
            f"window: {outcome.window.summary()}\n",
            key="rollout-guardrails",
        )
    return result
