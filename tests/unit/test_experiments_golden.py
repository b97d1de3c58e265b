"""Golden cases: STACK-NOTES published numbers and spotify-confidence as an oracle."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from crossfade.experiments.corrections import adjust
from crossfade.experiments.cuped import cuped
from crossfade.experiments.planning import detectable_effect, sample_size_total
from crossfade.experiments.sequential import boundaries, inflation_factor, information_fractions
from crossfade.experiments.srm import srm_check
from crossfade.experiments.stats import non_inferiority, proportion_test, ratio_test, welch_test

P = [0.01, 0.02, 0.03, 0.04, 0.05]


def test_lan_demets_bounds_match_published() -> None:
    t = np.arange(1, 6) / 5
    obf = boundaries(t, 0.05, "obrien_fleming").bounds
    np.testing.assert_allclose(obf, [4.8769, 3.3570, 2.6803, 2.2898, 2.0310], atol=1e-3)
    power = boundaries(t, 0.05, "power", rho=2).bounds
    np.testing.assert_allclose(power, [3.0902, 2.7141, 2.4728, 2.2799, 2.1140], atol=1e-3)


def test_overrun_spends_all_alpha_at_the_final_look() -> None:
    fractions = information_fractions([100, 200, 330], planned_max=300)
    assert fractions[-1] == 1.0
    b = boundaries(fractions, 0.05, "obrien_fleming")
    assert b.cumulative_alpha[-1] == pytest.approx(0.05)
    under = information_fractions([100, 200], planned_max=300)
    assert under[-1] < 1


def test_inflation_factor_obf_five_looks() -> None:
    # Jennison & Turnbull table 7.6: R = 1.026 for OBF-type spending, K = 5, power 0.8
    assert inflation_factor(5, 0.05, 0.8) == pytest.approx(1.026, abs=2e-3)


def test_corrections_match_published() -> None:
    np.testing.assert_allclose(adjust(P, "bonferroni"), [0.05, 0.10, 0.15, 0.20, 0.25])
    np.testing.assert_allclose(adjust(P, "holm"), [0.05, 0.08, 0.09, 0.09, 0.09])
    np.testing.assert_allclose(adjust(P, "bh"), [0.05] * 5)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=20))
@settings(max_examples=50, deadline=None)
def test_corrections_agree_with_statsmodels(p: list[float]) -> None:
    from statsmodels.stats.multitest import multipletests

    for ours, theirs in (("bonferroni", "bonferroni"), ("holm", "holm"), ("bh", "fdr_bh")):
        np.testing.assert_allclose(adjust(p, ours), multipletests(p, method=theirs)[1], atol=1e-12)  # type: ignore[arg-type]


def _confidence_ztest(x: list[int], n: list[int], nim: float | None = None) -> pd.Series:
    warnings.filterwarnings("ignore")
    import spotify_confidence as sc

    frame = pd.DataFrame({"variant": ["control", "treatment"], "success": x, "total": n})
    z = sc.ZTest(
        frame,
        numerator_column="success",
        numerator_sum_squares_column="success",
        denominator_column="total",
        categorical_group_columns="variant",
    )
    kwargs = {"non_inferiority_margins": (nim, "increase")} if nim is not None else {}
    return z.difference(level_1="control", level_2="treatment", absolute=True, **kwargs).iloc[0]


@pytest.mark.parametrize(("x", "n"), [([500, 560], [5000, 5000]), ([120, 90], [1000, 1100])])
def test_two_proportion_z_test_matches_confidence(x: list[int], n: list[int]) -> None:
    ours = proportion_test(x[0], n[0], x[1], n[1])
    theirs = _confidence_ztest(x, n)
    assert ours.difference == pytest.approx(theirs["difference"])
    assert ours.p_value == pytest.approx(theirs["p-value"], rel=1e-6)
    assert ours.ci_low == pytest.approx(theirs["ci_lower"], rel=1e-6)
    assert ours.ci_high == pytest.approx(theirs["ci_upper"], rel=1e-6)


def test_non_inferiority_matches_confidence() -> None:
    ours = non_inferiority(proportion_test(500, 5000, 560, 5000), 0.02, "higher_is_better")
    theirs = _confidence_ztest([500, 560], [5000, 5000], nim=0.02)
    assert ours.null_difference == pytest.approx(theirs["null_hypothesis"])
    assert ours.p_value == pytest.approx(theirs["p-value"], rel=1e-6)
    assert ours.bound == pytest.approx(theirs["ci_lower"], rel=1e-6)


def test_sample_size_matches_confidence() -> None:
    warnings.filterwarnings("ignore")
    import spotify_confidence as sc

    ours = sample_size_total(0.3, 0.01, 0.05, 0.8, (0.5, 0.5))
    theirs = sc.SampleSize.continuous(
        average_absolute_mde=0.01, baseline_variance=0.09, alpha=0.05, power=0.8, treatments=2
    )
    total = theirs[0] if isinstance(theirs, tuple) else theirs
    assert ours == pytest.approx(float(np.asarray(total).sum()), rel=0.01)
    assert detectable_effect(0.3, ours, 0.05, 0.8, (0.5, 0.5)) == pytest.approx(0.01)


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 50), rng.normal(0.3, 2, 80)
    ours = welch_test(a, b)
    theirs = stats.ttest_ind(b, a, equal_var=False)
    assert ours.statistic == pytest.approx(theirs.statistic)
    assert ours.p_value == pytest.approx(theirs.pvalue)


def test_delta_method_ratio_against_bootstrap_free_identity() -> None:
    # With every denominator 1 the ratio is a mean: the delta-method z equals the unpooled z.
    rng = np.random.default_rng(1)
    a, b = rng.poisson(3, 400).astype(float), rng.poisson(3.3, 400).astype(float)
    ones = np.ones(400)
    r = ratio_test(a, ones, b, ones)
    w = welch_test(a, b)
    assert r.difference == pytest.approx(w.difference)
    assert r.se == pytest.approx(w.se)


def test_srm_chi_square() -> None:
    res = srm_check({"control": 5000, "treatment": 5200}, {"control": 0.5, "treatment": 0.5})
    expected = stats.chisquare([5000, 5200]).pvalue
    assert res.p_value == pytest.approx(expected)
    assert not res.flagged
    assert srm_check({"control": 5000, "treatment": 5400}, {"control": 1, "treatment": 1}).flagged


def test_cuped_reduces_variance_by_rho_squared_and_keeps_the_effect() -> None:
    rng = np.random.default_rng(2)
    n = 20_000
    x = rng.normal(10, 2, 2 * n)
    y = 0.8 * x + rng.normal(0, 1, 2 * n)
    y[n:] += 0.1
    res = cuped(y[:n], x[:n], y[n:], x[n:])
    rho2 = np.corrcoef(x, y)[0, 1] ** 2
    assert res.variance_reduction == pytest.approx(rho2, abs=0.01)
    assert res.treatment.mean() - res.control.mean() == pytest.approx(0.1, abs=0.03)
