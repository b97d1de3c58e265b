"""Assignment properties, decision rule and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfade.evaluation.metric_tree import load_metric_tree
from crossfade.experiments.analysis import analyze
from crossfade.experiments.assignment import assign, check_layers, in_layer, unit_hash
from crossfade.experiments.decision import Decision, MetricVerdict, decide
from crossfade.experiments.definition import ExperimentDefinition, ExperimentError, RampStep
from crossfade.experiments.metrics import SIGNALS
from crossfade.experiments.stats import StatsError, proportion_test, ratio_test, welch_test


def _definition(**kw: object) -> ExperimentDefinition:
    base: dict[str, object] = {"name": "t", "salt": "s", "success_metrics": ["completion_rate"]}
    return ExperimentDefinition.model_validate({**base, **kw})


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=50, unique=True))
@settings(max_examples=30, deadline=None)
def test_assignment_is_deterministic_and_sticky_through_the_ramp(ids: list[str]) -> None:
    d = _definition(ramp=[RampStep(share=0.1, days=1), RampStep(share=0.5, days=1)])
    early, late = assign(d, ids, 0), assign(d, ids, 1)
    assert early == assign(d, ids, 0)
    for a, b in zip(early, late, strict=True):
        if a is not None:
            assert b == a


def test_split_holdout_and_layers() -> None:
    ids = [f"u{i}" for i in range(20_000)]
    d = _definition(holdout_share=0.1)
    variants = pd.Series(assign(d, ids, 0))
    assert variants.isna().mean() == pytest.approx(0.1, abs=0.01)
    assert (variants == "control").mean() == pytest.approx(0.45, abs=0.015)
    a = _definition(name="a", layer="l", layer_range=(0.0, 0.5))
    b = _definition(name="b", salt="t", layer="l", layer_range=(0.5, 1.0))
    check_layers([a, b])
    assert not (in_layer(a, ids) & in_layer(b, ids)).any()
    with pytest.raises(ValueError, match="overlap"):
        check_layers([a, _definition(name="c", layer="l", layer_range=(0.4, 0.9))])
    h = unit_hash("x", ids)
    assert ((h >= 0) & (h < 1)).all()


def _verdict(role: str, **kw: bool) -> MetricVerdict:
    flags = {"better": False, "worse": False, "non_inferior": False, **kw}
    return MetricVerdict("m", role, summary="", **flags)  # type: ignore[arg-type]


def test_decision_rule() -> None:
    ship = [_verdict("success", better=True), _verdict("guardrail", non_inferior=True)]
    assert decide(ship, False, 0.5, False).decision == Decision.SHIP
    assert decide(ship, True, 1e-5, False).decision == Decision.INVALID
    harm = [_verdict("success", better=True), _verdict("guardrail", worse=True)]
    assert decide(harm, False, 0.5, False).decision == Decision.ABORT
    wait = [_verdict("success", better=True), _verdict("guardrail")]
    assert decide(wait, False, 0.5, False).decision == Decision.CONTINUE
    assert decide(wait, False, 0.5, True).decision == Decision.INCONCLUSIVE


def test_bad_inputs_get_clear_errors() -> None:
    with pytest.raises(StatsError, match="at least 2"):
        welch_test(np.array([]), np.array([1.0, 2.0]))
    with pytest.raises(StatsError, match="non-negative"):
        proportion_test(-1, 10, 3, 10)
    with pytest.raises(StatsError, match="exceed"):
        proportion_test(11, 10, 3, 10)
    with pytest.raises(StatsError, match="numerator has 3 units but denominator 2"):
        ratio_test(np.ones(3), np.ones(2), np.ones(3), np.ones(3))
    tree = load_metric_tree()
    with pytest.raises(ExperimentError, match="not measured online"):
        _definition(success_metrics=["ndcg_magic"]).check_metrics(tree)


def test_analyze_rejects_mismatched_units_and_negative_counts() -> None:
    tree = load_metric_tree()
    d = _definition()
    units = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "variant": ["control", "treatment"] * 2,
            "exposure_day": 0,
            "country": "US",
            "platform": "ios",
            "tier": "premium",
        }
    )
    daily = pd.DataFrame({"user_id": ["a", "zz"], "day": 0, **{s: 1 for s in SIGNALS}})
    with pytest.raises(ExperimentError, match="no exposure"):
        analyze(d, tree, units, daily)
    daily = pd.DataFrame({"user_id": ["a", "b"], "day": 0, **{s: 1 for s in SIGNALS}})
    daily.loc[0, "plays"] = -2
    with pytest.raises(ExperimentError, match="negative"):
        analyze(d, tree, units, daily)
    with pytest.raises(ExperimentError, match="empty"):
        analyze(d, tree, units.iloc[:0], daily.iloc[:0])


def test_a_constant_ratio_equal_in_both_arms_is_no_difference_despite_rounding() -> None:
    """Serving cost is a fixed price per request: both arms' ratio is 0.003 up to the last bit
    of a float; that rounding must not read as a significant harm."""
    from crossfade.experiments.stats import ratio_test

    rng = np.random.default_rng(3)
    requests_c, requests_t = rng.integers(1, 40, 500), rng.integers(1, 40, 480)
    cost_c, cost_t = 0.003 * requests_c, requests_t * 3 / 1000  # same price, other rounding
    result = ratio_test(cost_c, requests_c.astype(float), cost_t, requests_t.astype(float))
    assert result.difference == 0.0 and result.p_value == 1.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)
