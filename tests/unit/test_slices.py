"""Metrics by slice: bootstrap CI coverage in simulation, determinism, degenerate slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.evaluation import metrics as M
from crossfade.evaluation import slices as S


def test_per_user_metrics_skips_empty_relevant() -> None:
    recs = {"u": ["a", "b"], "v": ["c"], "w": ["d"]}
    rel: dict[str, set[str]] = {"u": {"b"}, "v": set(), "w": {"x"}}
    table = S.per_user_metrics(recs, rel, 2)
    assert list(table[C.USER_ID]) == ["u", "w"]
    assert list(table.columns) == [C.USER_ID, *M.ACCURACY_METRICS]
    u = table.set_index(C.USER_ID).loc["u"]
    assert u[M.PRECISION] == pytest.approx(0.5)
    assert u[M.RECALL] == pytest.approx(1.0)
    assert u[M.HIT] == 1.0


def test_activity_level() -> None:
    events = pd.DataFrame({C.USER_ID: ["a"] * 3 + ["b"] * 10 + ["c"] * 11 + ["d"] * 60})
    levels = S.activity_level(events).set_index(C.USER_ID)[S.ACTIVITY_LEVEL]
    assert levels.astype(str).to_dict() == {
        "a": "light",
        "b": "light",
        "c": "medium",
        "d": "heavy",
    }
    with pytest.raises(ValueError):
        S.activity_level(events, bins=(0, 1), labels=("a", "b"))


def frames(seed: int, n: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    users = [f"u{j}" for j in range(n)]
    per_user = pd.DataFrame(
        {
            C.USER_ID: users,
            M.PRECISION: rng.random(n),
            M.HIT: (rng.random(n) < 0.3).astype(float),
        }
    )
    tiers = pd.DataFrame({C.USER_ID: users, C.TIER: rng.choice(["free", "premium"], size=n)})
    return per_user, tiers


def test_by_slice_shape_and_determinism() -> None:
    per_user, users = frames(0)
    users = users.assign(**{C.COUNTRY: "SE"})
    a = S.by_slice(per_user, users, [C.TIER, C.COUNTRY], n_boot=200, seed=3)
    b = S.by_slice(per_user, users, [C.TIER, C.COUNTRY], n_boot=200, seed=3)
    c = S.by_slice(per_user, users, [C.TIER, C.COUNTRY], n_boot=200, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a[S.LOW].equals(c[S.LOW])
    assert len(a) == (2 + 1) * 2  # (free, premium, SE) x (precision, hit)
    assert (a[S.LOW] <= a[S.MEAN]).all() and (a[S.MEAN] <= a[S.HIGH]).all()
    se = a[(a[S.SLICE] == C.COUNTRY) & (a[S.METRIC] == M.PRECISION)].iloc[0]
    assert se[S.N_USERS] == 200
    assert se[S.MEAN] == pytest.approx(per_user[M.PRECISION].mean())
    free = a[(a[S.VALUE] == "free") & (a[S.METRIC] == M.HIT)].iloc[0]
    mask = users[C.TIER] == "free"
    assert free[S.N_USERS] == mask.sum()
    assert free[S.MEAN] == pytest.approx(per_user.loc[mask.to_numpy(), M.HIT].mean())


def test_single_user_slice_is_degenerate_and_missing_users_kept() -> None:
    per_user = pd.DataFrame({C.USER_ID: ["u", "v", "w"], M.RECALL: [0.25, 0.5, 1.0]})
    users = pd.DataFrame({C.USER_ID: ["u", "v"], C.TIER: ["free", "premium"]})
    out = S.by_slice(per_user, users, [C.TIER], n_boot=100)
    free = out[out[S.VALUE] == "free"].iloc[0]
    assert free[S.LOW] == free[S.MEAN] == free[S.HIGH] == 0.25
    assert free[S.N_USERS] == 1
    assert out[S.VALUE].isna().sum() == 1  # w has no users row: NaN slice, not dropped


def test_bootstrap_ci_covers_true_mean() -> None:
    # 50 simulated evaluations of 100 listeners with a known mean hit rate of 0.3
    rng = np.random.default_rng(11)
    covered = 0
    for rep in range(50):
        hits = (rng.random(100) < 0.3).astype(float)
        per_user = pd.DataFrame({C.USER_ID: [f"u{j}" for j in range(100)], M.HIT: hits})
        users = per_user[[C.USER_ID]].assign(**{C.TIER: "free"})
        row = S.by_slice(per_user, users, [C.TIER], n_boot=500, seed=rep).iloc[0]
        covered += row[S.LOW] <= 0.3 <= row[S.HIGH]
    assert covered >= 45


def test_end_to_end_from_recommendations() -> None:
    recs = {"u": ["a", "b"], "v": ["c", "d"], "w": ["e", "f"]}
    rel = {"u": {"a"}, "v": {"x"}, "w": {"f"}}
    users = pd.DataFrame({C.USER_ID: ["u", "v", "w"], C.PLATFORM: ["ios", "ios", "web"]})
    out = S.by_slice(S.per_user_metrics(recs, rel, 2), users, [C.PLATFORM], n_boot=50)
    ios = out[(out[S.VALUE] == "ios") & (out[S.METRIC] == M.HIT)].iloc[0]
    assert ios[S.MEAN] == pytest.approx(0.5)
    assert ios[S.N_USERS] == 2
    with pytest.raises(ValueError):
        S.by_slice(S.per_user_metrics(recs, rel, 2), users, [C.PLATFORM], ci=1.5)
