"""Live/shadow agreement measures against hand-computed answers and scipy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from deployments.gateway.pairing import (
    compare,
    kendall_tau,
    overlap_at_k,
    score_drift,
    spearman_rho,
)


def test_identical_lists_agree_fully() -> None:
    items = ["a", "b", "c", "d"]
    out = compare(items, [4, 3, 2, 1], items, [4, 3, 2, 1], k=4)
    assert out.overlap == 1.0 and out.shared == 4
    assert out.kendall_tau == 1.0 and out.spearman_rho == 1.0
    assert out.score_drift == 0.0


def test_reversed_lists_are_perfectly_discordant() -> None:
    items = ["a", "b", "c", "d"]
    assert kendall_tau(items, items[::-1]) == -1.0
    assert spearman_rho(items, items[::-1]) == -1.0


def test_known_partial_overlap() -> None:
    live = ["a", "b", "c", "d", "e"]
    shadow = ["b", "a", "x", "c", "y"]
    assert overlap_at_k(live, shadow, 5) == pytest.approx(3 / 5)
    assert overlap_at_k(live, shadow, 2) == 1.0
    # Shared a, b, c: live order a<b<c, shadow order b<a<c -> pairs (a,b) discordant,
    # (a,c) and (b,c) concordant: tau = (2 - 1) / 3.
    assert kendall_tau(live, shadow) == pytest.approx(1 / 3)
    # Ranks among shared: live 0,1,2; shadow 1,0,2 -> d^2 = 2 -> rho = 1 - 6*2/(3*8) = 0.5.
    assert spearman_rho(live, shadow) == pytest.approx(0.5)


def test_score_drift_is_rms_over_shared_items() -> None:
    drift = score_drift(["a", "b", "c"], [1.0, 2.0, 3.0], ["c", "a", "z"], [6.0, 0.0, 9.0])
    # shared a (0 - 1 = -1), c (6 - 3 = 3): sqrt((1 + 9) / 2)
    assert drift == pytest.approx(math.sqrt(5))


def test_undefined_measures_are_none() -> None:
    out = compare(["a", "b"], [1.0, 0.5], ["x", "y"], [1.0, 0.5], k=2)
    assert out.overlap == 0.0 and out.shared == 0
    assert out.kendall_tau is None and out.spearman_rho is None and out.score_drift is None
    assert kendall_tau(["a"], ["a"]) is None


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="k must be"):
        overlap_at_k(["a"], ["a"], 0)
    with pytest.raises(ValueError, match="duplicate"):
        compare(["a", "a"], [1, 1], ["a"], [1], k=2)
    with pytest.raises(ValueError, match="one score per item"):
        score_drift(["a", "b"], [1.0], ["a"], [1.0])


@given(st.permutations(list("abcdefghij")), st.integers(min_value=2, max_value=10))
def test_rank_correlations_match_scipy(shadow: list[str], n: int) -> None:
    live = list("abcdefghij")[:n]
    shared = [item for item in live if item in shadow]
    live_rank = [live.index(i) for i in shared]
    shadow_rank = [shadow.index(i) for i in shared]
    assert kendall_tau(live, shadow) == pytest.approx(
        stats.kendalltau(live_rank, shadow_rank).statistic
    )
    assert spearman_rho(live, shadow) == pytest.approx(
        stats.spearmanr(live_rank, shadow_rank).statistic
    )
