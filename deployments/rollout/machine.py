"""The release state machine, pure: phases, legal actions, the next step, the split per phase.

IDLE -> SHADOW -> CANARY (one position per configured step) -> SWITCH (100 % green) -> BAKE ->
PROMOTED, and from any active phase -> ROLLED_BACK. PROMOTED can still be rolled back (the
instant rollback to `previous_champion`). A paused rollout holds its position: the controller
neither advances it nor evaluates it, but people can still promote or roll it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    """Where a rollout is."""

    IDLE = "IDLE"
    SHADOW = "SHADOW"
    CANARY = "CANARY"
    SWITCH = "SWITCH"
    BAKE = "BAKE"
    PROMOTED = "PROMOTED"
    ROLLED_BACK = "ROLLED_BACK"


class Action(StrEnum):
    """What can happen to a rollout (people or the controller)."""

    START = "start"
    ADVANCE = "advance"  # the controller, after enough passing windows
    PROMOTE = "promote"  # a person approves the current step now
    PROMOTE_FULL = "promote_full"  # a person skips the remaining steps
    PAUSE = "pause"
    RESUME = "resume"
    ROLLBACK = "rollback"


ACTIVE = frozenset({Phase.SHADOW, Phase.CANARY, Phase.SWITCH, Phase.BAKE})
READY = frozenset({Phase.IDLE, Phase.PROMOTED, Phase.ROLLED_BACK})


class IllegalTransition(ValueError):
    """The action is not allowed from the current position; the message says what is."""


@dataclass(frozen=True)
class Plan:
    """The configured path: canary percentages and the shadow share."""

    steps: tuple[float, ...]
    shadow_share: float


@dataclass(frozen=True)
class Position:
    """Phase, canary step index (0 outside CANARY) and whether the rollout is paused."""

    phase: Phase = Phase.IDLE
    step_index: int = 0
    paused: bool = False


def _forward(pos: Position, plan: Plan) -> Position:
    if pos.phase == Phase.SHADOW:
        return Position(Phase.CANARY, 0)
    if pos.phase == Phase.CANARY:
        if pos.step_index + 1 < len(plan.steps):
            return Position(Phase.CANARY, pos.step_index + 1)
        return Position(Phase.SWITCH)
    if pos.phase == Phase.SWITCH:
        return Position(Phase.BAKE)
    if pos.phase == Phase.BAKE:
        return Position(Phase.PROMOTED)
    raise IllegalTransition(f"nothing follows {pos.phase}")


def apply(pos: Position, action: Action, plan: Plan) -> Position:
    """The position after `action`, or IllegalTransition naming what is allowed instead."""
    allowed = allowed_actions(pos, plan)
    if action not in allowed:
        where = f"{pos.phase}{' (paused)' if pos.paused else ''}"
        options = ", ".join(sorted(a.value for a in allowed)) or "none"
        raise IllegalTransition(f"cannot {action.value} a rollout in {where}; allowed: {options}")
    if action == Action.START:
        return Position(Phase.SHADOW)
    if action in (Action.ADVANCE, Action.PROMOTE):
        return _forward(pos, plan)
    if action == Action.PROMOTE_FULL:
        return Position(Phase.PROMOTED)
    if action == Action.PAUSE:
        return Position(pos.phase, pos.step_index, True)
    if action == Action.RESUME:
        return Position(pos.phase, pos.step_index, False)
    return Position(Phase.ROLLED_BACK)


def allowed_actions(pos: Position, plan: Plan) -> frozenset[Action]:
    """Every action legal from `pos`."""
    if pos.phase in ACTIVE:
        actions = {Action.PROMOTE, Action.PROMOTE_FULL, Action.ROLLBACK}
        actions |= {Action.RESUME} if pos.paused else {Action.PAUSE, Action.ADVANCE}
        return frozenset(actions)
    if pos.phase == Phase.PROMOTED:
        return frozenset({Action.START, Action.ROLLBACK})
    return frozenset({Action.START})


def split(pos: Position, plan: Plan) -> tuple[float, float]:
    """(percent of listeners on green, share of blue's requests mirrored to shadow)."""
    if pos.phase == Phase.SHADOW:
        return 0.0, plan.shadow_share
    if pos.phase == Phase.CANARY:
        return float(plan.steps[pos.step_index]), 0.0
    if pos.phase in (Phase.SWITCH, Phase.BAKE):
        return 100.0, 0.0
    return 0.0, 0.0


def candidate_slot(phase: Phase) -> str:
    """The slot the candidate is measured in: shadow while mirrored, green afterwards."""
    return "shadow" if phase == Phase.SHADOW else "green"


def describe_next(pos: Position, plan: Plan) -> str:
    """What happens next, for people ("canary 5 % after 1 passing window")."""
    if pos.phase in READY:
        return "start a rollout (`crossfade release start`)"
    if pos.paused:
        return "paused: resume, promote or roll back"
    after = _forward(pos, plan)
    if after.phase == Phase.CANARY:
        return f"canary {plan.steps[after.step_index]:g} % green"
    if after.phase == Phase.SWITCH:
        return "switch: 100 % green"
    if after.phase == Phase.BAKE:
        return "bake at 100 % green"
    return "promote: `champion` moves to the candidate"
