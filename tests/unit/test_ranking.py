"""Label policy and the per-tier LambdaRank ranker on synthetic data with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.evaluation.metrics import graded_ndcg_by_group
from crossfade.ranking.labels import LABEL, LabelPolicy, LabelPolicyError, load_label_policy
from crossfade.ranking.ranker import RankerModel, fit_ranker


@pytest.fixture
def policy(settings: Settings) -> LabelPolicy:
    return load_label_policy(settings.config_path / "labels.yaml")


def test_grades_take_the_strongest_signal(policy: LabelPolicy) -> None:
    events = pd.DataFrame(
        {
            C.MS_PLAYED: [5_000, 60_000, 200_000, 200_000, 40_000, 200_000],
            C.SKIPPED: [True, False, False, False, False, True],
            C.REASON_END: ["fwdbtn", "fwdbtn", "trackdone", "trackdone", "fwdbtn", "fwdbtn"],
            C.REPLAY: [False, False, False, True, False, False],
            C.SAVED: [False, False, False, False, True, False],
            C.ADDED_TO_PLAYLIST: [False] * 6,
        }
    )
    assert policy.grade(events).tolist() == [0, 1, 2, 3, 4, 0]


def test_policy_rejects_inconsistent_grades(tmp_path: Path) -> None:
    bad = tmp_path / "labels.yaml"
    bad.write_text(
        "grades: {skip: 0, partial: 2, complete: 1, repeat: 3, save: 4}\n"
        "gains: {premium: [0, 1, 2, 3, 4], ad_supported: [0, 1, 2, 3, 4]}\n"
    )
    with pytest.raises(LabelPolicyError, match="increase"):
        load_label_policy(bad)


def _requests(n_requests: int, seed: int) -> pd.DataFrame:
    """Candidates whose label follows a hidden score of two features, plus noise features."""
    rng = np.random.default_rng(seed)
    rows = n_requests * 20
    frame = pd.DataFrame(
        {
            "request": np.repeat(np.arange(n_requests), 20),
            "tier": np.repeat(rng.choice(["premium", "ad_supported"], n_requests), 20),
            "affinity": rng.normal(size=rows),
            "popularity": rng.random(rows),
            "noise": rng.normal(size=rows),
        }
    )
    hidden = 1.5 * frame["affinity"] + frame["popularity"] + rng.normal(scale=0.5, size=rows)
    frame[LABEL] = np.digitize(hidden, [-1.0, 0.5, 1.5, 2.5]).astype(int)
    return frame


def _ndcg10(frame: pd.DataFrame, scores: np.ndarray) -> float:
    return float(graded_ndcg_by_group(frame, scores, "request", LABEL, k=10).mean())


def test_ranker_learns_the_hidden_order_and_round_trips(
    policy: LabelPolicy, tmp_path: Path
) -> None:
    train, valid, test = _requests(300, 1), _requests(60, 2), _requests(100, 3)
    features = ["affinity", "popularity", "noise"]
    model = fit_ranker(train, valid, features, "request", "tier", policy, num_boost_round=150)
    assert set(model.boosters) == {"premium", "ad_supported"}
    scores = model.predict(test, "tier")
    random = np.random.default_rng(0).random(len(test))
    assert _ndcg10(test, scores) > _ndcg10(test, random) + 0.2
    importance = model.importance()
    assert importance.loc["affinity"].min() > importance.loc["noise"].max()
    again = RankerModel.load(model.save(tmp_path / "ranker"))
    np.testing.assert_allclose(again.predict(test, "tier"), scores)


def test_missing_columns_are_named(policy: LabelPolicy) -> None:
    with pytest.raises(ValueError, match="affinity"):
        fit_ranker(
            pd.DataFrame({"request": [1], "tier": ["premium"], LABEL: [1]}),
            None,
            ["affinity"],
            "request",
            "tier",
            policy,
        )
