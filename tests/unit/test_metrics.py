"""Ranking metrics: hand-computed answers on tiny lists, a pure-Python reference on random data,
and properties (bounds, monotonicity, ideal ordering)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.evaluation import metrics as M

CATALOGUE = [f"i{j}" for j in range(12)]


# --------------------------------------------------------------------------- reference (loops)


def ref_precision(recs: list[str], rel: set[str], k: int) -> float:
    top = list(dict.fromkeys(recs))[:k]
    return sum(i in rel for i in top) / k


def ref_recall(recs: list[str], rel: set[str], k: int) -> float:
    top = list(dict.fromkeys(recs))[:k]
    return sum(i in rel for i in top) / len(rel)


def ref_ndcg(recs: list[str], gains: dict[str, float], k: int) -> float:
    top = list(dict.fromkeys(recs))[:k]
    dcg = sum(gains.get(i, 0.0) / math.log2(r + 2) for r, i in enumerate(top))
    best = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(best))
    return dcg / idcg


def ref_ap(recs: list[str], rel: set[str], k: int) -> float:
    top = list(dict.fromkeys(recs))[:k]
    hits, total = 0, 0.0
    for r, i in enumerate(top, start=1):
        if i in rel:
            hits += 1
            total += hits / r
    return total / min(len(rel), k)


# --------------------------------------------------------------------------- known answers


def test_perfect_list_scores_one() -> None:
    recs = {"u": ["a", "b", "c"]}
    rel = {"u": {"a", "b", "c"}}
    for fn in (M.precision_at_k, M.recall_at_k, M.ndcg_at_k, M.map_at_k, M.hit_rate_at_k):
        assert fn(recs, rel, 3) == pytest.approx(1.0)


def test_single_relevant_at_rank_two() -> None:
    recs = {"u": ["x", "a", "y"]}
    rel = {"u": {"a"}}
    assert M.ndcg_at_k(recs, rel, 3) == pytest.approx(1 / math.log2(3))
    assert M.precision_at_k(recs, rel, 3) == pytest.approx(1 / 3)
    assert M.recall_at_k(recs, rel, 3) == pytest.approx(1.0)
    assert M.map_at_k(recs, rel, 3) == pytest.approx(0.5)
    assert M.hit_rate_at_k(recs, rel, 1) == 0.0
    assert M.hit_rate_at_k(recs, rel, 2) == 1.0


def test_map_normalises_by_min_relevant_k() -> None:
    # hits at ranks 1 and 3 of 3; 5 relevant -> AP = (1/1 + 2/3) / min(5, 3)
    recs = {"u": ["a", "x", "b"]}
    rel = {"u": {"a", "b", "c", "d", "e"}}
    assert M.map_at_k(recs, rel, 3) == pytest.approx((1 + 2 / 3) / 3)
    assert M.recall_at_k(recs, rel, 3) == pytest.approx(2 / 5)


def test_graded_ndcg() -> None:
    recs = {"u": ["b", "a"]}
    gains = {"u": {"a": 3.0, "b": 1.0, "c": 0.0}}
    dcg = 1.0 + 3.0 / math.log2(3)
    idcg = 3.0 + 1.0 / math.log2(3)
    assert M.ndcg_at_k(recs, k=2, gains=gains) == pytest.approx(dcg / idcg)
    with pytest.raises(ValueError):
        M.ndcg_at_k(recs, {"u": {"a"}}, 2, gains=gains)


def test_users_without_relevant_are_skipped_missing_recs_are_zero() -> None:
    recs = {"u": ["a"], "v": ["b"]}
    rel: dict[str, set[str]] = {"u": {"a"}, "v": set(), "w": {"c"}}
    # u: 1, v skipped, w (no recommendations): 0
    assert M.precision_at_k(recs, rel, 1) == pytest.approx(0.5)
    assert M.ndcg_at_k(recs, rel, 1) == pytest.approx(0.5)
    assert math.isnan(M.recall_at_k(recs, {"v": set()}, 1))


def test_duplicates_do_not_count_twice() -> None:
    recs = {"u": ["a", "a", "b"]}
    rel = {"u": {"a"}}
    assert M.precision_at_k(recs, rel, 2) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        M.precision_at_k(recs, rel, 0)


def test_catalogue_coverage() -> None:
    recs = {"u": ["a", "b", "z"], "v": ["a", "c"]}
    assert M.catalogue_coverage(recs, ["a", "b", "c", "d"], 2) == pytest.approx(3 / 4)
    assert M.catalogue_coverage(recs, ["a", "b", "c", "d"], 1) == pytest.approx(1 / 4)


def test_intra_list_diversity_genres_and_vectors() -> None:
    genre = {"a": "rock", "b": "rock", "c": "jazz"}
    # pairs: (a,b)=0, (a,c)=1, (b,c)=1 -> 2/3; second list one pair of differing genres -> 1
    recs = {"u": ["a", "b", "c"], "v": ["a", "c"], "w": ["a"]}
    assert M.intra_list_diversity(recs, 3, item_genre=genre) == pytest.approx((2 / 3 + 1) / 2)
    vectors = {"a": [1.0, 0.0], "b": [2.0, 0.0], "c": [0.0, 1.0]}
    assert M.intra_list_diversity({"u": ["a", "b", "c"]}, 3, item_vectors=vectors) == (
        pytest.approx(2 / 3)
    )
    with pytest.raises(ValueError):
        M.intra_list_diversity(recs, 3)


def test_novelty_and_arp() -> None:
    pop = {"a": 50.0, "b": 25.0, "c": 25.0}
    recs = {"u": ["a", "b"], "v": ["c"]}
    # u: (1 + 2) / 2, v: 2
    assert M.novelty(recs, pop, 2) == pytest.approx((1.5 + 2) / 2)
    assert M.average_recommendation_popularity(recs, pop, 2) == pytest.approx((37.5 + 25) / 2)
    # series input and unknown item (one play floor for novelty, 0 for ARP)
    series = pd.Series(pop)
    assert M.novelty({"u": ["q"]}, series, 1) == pytest.approx(-math.log2(1 / 100))
    assert M.average_recommendation_popularity({"u": ["q"]}, series, 1) == 0.0


def test_head_items_and_long_tail_share() -> None:
    pop = {"a": 60.0, "b": 20.0, "c": 10.0, "d": 10.0}
    assert M.head_items(pop, 0.2) == {"a"}
    assert M.head_items(pop, 0.7) == {"a", "b"}
    recs = {"u": ["a", "b"], "v": ["c", "d"]}
    assert M.long_tail_share(recs, pop, 2) == pytest.approx((0.5 + 1.0) / 2)


def test_serendipity() -> None:
    recs = {"u": ["a", "b", "c", "d"], "v": ["a"], "w": ["x"]}
    rel = {"u": {"a", "b"}, "v": {"a"}, "w": set()}
    # u: b is relevant and unexpected -> 1/4; v: only expected hit -> 0; w skipped
    assert M.serendipity(recs, rel, {"a"}, 4) == pytest.approx((1 / 4 + 0) / 2)


def test_exposure_gini() -> None:
    cat = ["a", "b", "c", "d"]
    assert M.exposure_gini({"u": ["a", "b"], "v": ["c", "d"]}, cat, 2) == pytest.approx(0.0)
    assert M.exposure_gini({"u": ["a"], "v": ["a"]}, cat, 1) == pytest.approx(1.0)
    # exposure (0, 0, 1, 1): G = (1·1 + 3·1) / (4·2) = 0.5 raw, 2/3 after the n/(n-1) scaling
    assert M.exposure_gini({"u": ["a", "b"]}, cat, 2) == pytest.approx(0.5 * 4 / 3)


def test_genre_calibration_kl() -> None:
    genre = {"a": "rock", "b": "jazz", "c": "rock", "d": "jazz"}
    history = {"u": ["a", "b"]}
    assert M.genre_calibration_kl({"u": ["c", "d"]}, history, genre, 2) == pytest.approx(0.0)
    alpha = 0.01
    # p = (.5, .5), q = (1, 0) -> q~ = (.995 + .005, .005)
    q = np.array([(1 - alpha) + alpha * 0.5, alpha * 0.5])
    expected = float(np.sum(0.5 * np.log(0.5 / q)))
    got = M.genre_calibration_kl({"u": ["c", "a"]}, history, genre, 2, alpha=alpha)
    assert got == pytest.approx(expected)
    # listener without history is skipped
    assert M.genre_calibration_kl({"u": ["c", "d"]}, {"u": ["a", "b"], "v": []}, genre, 2) == 0.0


def test_frames_helpers_and_evaluate_all() -> None:
    events = pd.DataFrame({C.USER_ID: ["u", "u", "v"], C.ITEM_ID: ["a", "b", "a"]})
    items = pd.DataFrame({C.ITEM_ID: ["a", "b", "c"], C.GENRE: ["rock", "jazz", "rock"]})
    pop = M.play_counts(events)
    genre = M.item_genres(items)
    assert pop.to_dict() == {"a": 2.0, "b": 1.0}
    out = M.evaluate_all(
        {"u": ["c", "a"], "v": ["b", "c"]},
        {"u": {"c"}, "v": {"c"}},
        2,
        pop,
        genre,
        history={"u": ["a", "b"], "v": ["a"]},
    )
    assert out["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert out["coverage@2"] == pytest.approx(1.0)
    assert out["serendipity@2"] == pytest.approx(0.5)
    assert set(out) >= {"precision@2", "exposure_gini@2", "arp@2", "calibration_kl@2"}
    assert all(np.isfinite(v) for v in out.values())


# --------------------------------------------------------------------------- reference + properties


def random_case(seed: int) -> tuple[dict[str, list[str]], dict[str, dict[str, float]]]:
    rng = np.random.default_rng(seed)
    recs: dict[str, list[str]] = {}
    gains: dict[str, dict[str, float]] = {}
    for u in range(30):
        n = int(rng.integers(0, 15))
        recs[f"u{u}"] = list(rng.choice(CATALOGUE, size=n))  # may repeat
        m = int(rng.integers(0, 6))
        chosen = rng.choice(CATALOGUE, size=m, replace=False)
        gains[f"u{u}"] = {str(i): float(rng.integers(0, 4)) for i in chosen}
    return recs, gains


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 3, 10])
def test_matches_reference(seed: int, k: int) -> None:
    recs, gains = random_case(seed)
    rel = {u: {i for i, g in gs.items() if g > 0} for u, gs in gains.items()}
    users = [u for u in rel if rel[u]]
    assert M.precision_at_k(recs, rel, k) == pytest.approx(
        np.mean([ref_precision(recs[u], rel[u], k) for u in users])
    )
    assert M.recall_at_k(recs, rel, k) == pytest.approx(
        np.mean([ref_recall(recs[u], rel[u], k) for u in users])
    )
    assert M.map_at_k(recs, rel, k) == pytest.approx(
        np.mean([ref_ap(recs[u], rel[u], k) for u in users])
    )
    assert M.ndcg_at_k(recs, rel, k) == pytest.approx(
        np.mean([ref_ndcg(recs[u], dict.fromkeys(rel[u], 1.0), k) for u in users])
    )
    assert M.ndcg_at_k(recs, k=k, gains=gains) == pytest.approx(
        np.mean([ref_ndcg(recs[u], gains[u], k) for u in users])
    )


lists = st.dictionaries(
    st.sampled_from([f"u{j}" for j in range(6)]),
    st.lists(st.sampled_from(CATALOGUE), max_size=10),
    min_size=1,
)
relevants = st.dictionaries(
    st.sampled_from([f"u{j}" for j in range(6)]),
    st.sets(st.sampled_from(CATALOGUE), min_size=1, max_size=6),
    min_size=1,
)
HS = hsettings(max_examples=50, deadline=None)


@HS
@given(lists, relevants, st.integers(1, 12))
def test_accuracy_bounds(recs: dict[str, list[str]], rel: dict[str, set[str]], k: int) -> None:
    for fn in (M.precision_at_k, M.recall_at_k, M.ndcg_at_k, M.map_at_k, M.hit_rate_at_k):
        assert 0.0 <= fn(recs, rel, k) <= 1.0 + 1e-12


@HS
@given(lists, relevants)
def test_recall_non_decreasing_in_k(recs: dict[str, list[str]], rel: dict[str, set[str]]) -> None:
    values = [M.recall_at_k(recs, rel, k) for k in range(1, 12)]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(values))


@HS
@given(
    st.dictionaries(st.sampled_from(CATALOGUE), st.integers(1, 5), min_size=1),
    st.integers(1, 12),
)
def test_ideal_ordering_scores_one(gains: dict[str, int], k: int) -> None:
    ideal = sorted(gains, key=lambda i: -gains[i])
    graded = {"u": {i: float(g) for i, g in gains.items()}}
    assert M.ndcg_at_k({"u": ideal}, k=k, gains=graded) == pytest.approx(1.0)
    assert M.ndcg_at_k({"u": ideal}, {"u": set(gains)}, k) == pytest.approx(1.0)


@HS
@given(
    lists,
    relevants,
    st.integers(1, 12),
    st.dictionaries(st.sampled_from(CATALOGUE), st.integers(1, 100), min_size=1),
)
def test_beyond_accuracy_bounds(
    recs: dict[str, list[str]], rel: dict[str, set[str]], k: int, plays: dict[str, int]
) -> None:
    pop = {i: float(v) for i, v in plays.items()}
    genre = {i: f"g{j % 3}" for j, i in enumerate(CATALOGUE)}
    rng = np.random.default_rng(len(recs))
    vectors = {i: rng.random(4) for i in CATALOGUE}  # non-negative -> distance in [0, 1]
    bounded = [
        M.catalogue_coverage(recs, CATALOGUE, k),
        M.intra_list_diversity(recs, k, item_genre=genre),
        M.intra_list_diversity(recs, k, item_vectors=vectors),
        M.serendipity(recs, rel, M.head_items(pop), k),
        M.exposure_gini(recs, CATALOGUE, k),
        M.long_tail_share(recs, pop, k),
    ]
    for value in bounded:
        assert math.isnan(value) or -1e-12 <= value <= 1.0 + 1e-12
    nov = M.novelty(recs, pop, k)
    assert math.isnan(nov) or nov >= 0.0
    kl = M.genre_calibration_kl(recs, recs, genre, k)
    assert math.isnan(kl) or kl >= -1e-12


# --------------------------------------------------------------------------- graded NDCG


def test_graded_ndcg_by_group_known_answer() -> None:
    frame = pd.DataFrame({"r": [1, 1, 1, 2, 2, 3], "label": [0, 2, 1, 1, 0, 0]})
    scores = np.array([3.0, 2.0, 1.0, 0.0, 1.0, 5.0])
    got = M.graded_ndcg_by_group(frame, scores, "r", "label", k=10)
    # request 1: order labels 0,2,1 -> gains 0,3,1; ideal 3,1,0. request 2: 0,1 vs 1,0.
    dcg1 = 3 / math.log2(3) + 1 / math.log2(4)
    idcg1 = 3 + 1 / math.log2(3)
    assert got[1] == pytest.approx(dcg1 / idcg1)
    assert got[2] == pytest.approx(1 / math.log2(3))
    assert 3 not in got.index  # nothing relevant: left out
    np.testing.assert_allclose(M.exponential_gain([0, 1, 4]), [0, 1, 15])


@hsettings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 4), st.floats(-5, 5, allow_nan=False)),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 12),
)
def test_graded_ndcg_by_group_matches_list_ndcg(rows: list[tuple[int, int, float]], k: int) -> None:
    frame = pd.DataFrame(rows, columns=["r", "label", "s"])
    frame[C.ITEM_ID] = [f"i{j}" for j in range(len(frame))]
    got = M.graded_ndcg_by_group(frame, frame["s"].to_numpy(), "r", "label", k=k)
    assert ((got >= 0) & (got <= 1 + 1e-12)).all()
    ranked = frame.sort_values(["r", "s"], ascending=[True, False], kind="stable")
    recs = {str(r): list(g[C.ITEM_ID]) for r, g in ranked.groupby("r")}
    gains = M.graded_gains(frame, "r", "label")
    for request, value in got.items():
        one = {str(request): recs[str(request)]}
        assert value == pytest.approx(
            M.ndcg_at_k(one, k=k, gains={str(request): gains[str(request)]})
        )
        assert value == pytest.approx(ref_ndcg(recs[str(request)], gains[str(request)], k))
    ideal = M.graded_ndcg_by_group(frame, frame["label"].to_numpy(), "r", "label", k=k)
    np.testing.assert_allclose(ideal.to_numpy(), 1.0)
    assert set(got.index) == set(frame.loc[frame["label"] > 0, "r"])


def test_play_share_above_defines_the_head() -> None:
    plays = pd.Series({"a": 50.0, "b": 30.0, "c": 20.0, "d": 0.0})
    shares = M.play_share_above(plays)
    assert shares.to_dict() == pytest.approx({"a": 0.0, "b": 0.5, "c": 0.8, "d": 1.0})
    assert M.head_items(plays, 0.5) == {"a"} and M.head_items(plays, 0.51) == {"a", "b"}
    assert list(M.in_short_head(np.array([0.0, np.nan, 0.6]), 0.5)) == [True, False, False]
