"""The release state machine: random action sequences never reach an illegal position."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.rollout.machine import (
    ACTIVE,
    Action,
    IllegalTransition,
    Phase,
    Plan,
    Position,
    allowed_actions,
    apply,
    candidate_slot,
    describe_next,
    split,
)

PLAN = Plan((1.0, 5.0, 25.0, 50.0), 0.2)
plans = st.lists(st.floats(0.5, 99.5), min_size=1, max_size=6, unique=True).map(
    lambda steps: Plan(tuple(sorted(steps)), 0.1)
)


def _valid(pos: Position, plan: Plan) -> None:
    assert isinstance(pos.phase, Phase)
    if pos.phase == Phase.CANARY:
        assert 0 <= pos.step_index < len(plan.steps)
    else:
        assert pos.step_index == 0
    assert not pos.paused or pos.phase in ACTIVE
    green, shadow = split(pos, plan)
    assert 0 <= green <= 100 and 0 <= shadow <= 1
    if pos.phase != Phase.SHADOW:
        assert shadow == 0
    if pos.phase not in (Phase.CANARY, Phase.SWITCH, Phase.BAKE):
        assert green == 0


@settings(max_examples=300, deadline=None)
@given(plans, st.lists(st.sampled_from(list(Action)), max_size=40))
def test_random_action_sequences_stay_legal(plan: Plan, actions: list[Action]) -> None:
    pos = Position()
    for action in actions:
        legal = action in allowed_actions(pos, plan)
        try:
            after = apply(pos, action, plan)
        except IllegalTransition as exc:
            assert not legal
            assert action.value in str(exc) and "allowed" in str(exc)
            continue
        assert legal
        _valid(after, plan)
        if action == Action.ROLLBACK:
            assert after.phase == Phase.ROLLED_BACK
        if action in (Action.ADVANCE, Action.PROMOTE) and pos.phase == Phase.CANARY:
            assert after.phase == Phase.SWITCH or after.step_index == pos.step_index + 1
        pos = after


@given(plans)
def test_advancing_walks_every_step_in_order(plan: Plan) -> None:
    pos = apply(Position(), Action.START, plan)
    seen = [split(pos, plan)[0]]
    while pos.phase != Phase.PROMOTED:
        pos = apply(pos, Action.ADVANCE, plan)
        seen.append(split(pos, plan)[0])
    # shadow (0 %), each canary step, switch and bake at 100 %, promoted (blue again: 0 %)
    assert seen == [0.0, *plan.steps, 100.0, 100.0, 0.0]


def test_paused_rollout_does_not_advance_but_can_be_rolled_back() -> None:
    pos = apply(apply(Position(), Action.START, PLAN), Action.ADVANCE, PLAN)
    paused = apply(pos, Action.PAUSE, PLAN)
    assert split(paused, PLAN) == split(pos, PLAN)
    with pytest.raises(IllegalTransition, match="cannot advance a rollout in CANARY \\(paused\\)"):
        apply(paused, Action.ADVANCE, PLAN)
    with pytest.raises(IllegalTransition):
        apply(paused, Action.PAUSE, PLAN)
    assert apply(paused, Action.ROLLBACK, PLAN).phase == Phase.ROLLED_BACK
    assert describe_next(paused, PLAN).startswith("paused")


def test_terminal_phases() -> None:
    promoted = apply(apply(Position(), Action.START, PLAN), Action.PROMOTE_FULL, PLAN)
    assert promoted.phase == Phase.PROMOTED
    assert allowed_actions(promoted, PLAN) == {Action.START, Action.ROLLBACK}
    rolled = apply(promoted, Action.ROLLBACK, PLAN)
    assert allowed_actions(rolled, PLAN) == {Action.START}
    with pytest.raises(IllegalTransition):
        apply(Position(), Action.ROLLBACK, PLAN)


def test_candidate_is_measured_in_shadow_then_green() -> None:
    assert candidate_slot(Phase.SHADOW) == "shadow"
    assert candidate_slot(Phase.CANARY) == "green"
    assert describe_next(Position(Phase.SHADOW), PLAN) == "canary 1 % green"
    assert describe_next(Position(Phase.CANARY, 3), PLAN) == "switch: 100 % green"
