"""Ranking baselines and the full-ranking protocol: known answers on a block-structured
matrix, exclusions, EASE against a direct numpy computation, determinism, ML-100K anchors."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.candidates.weights import WEIGHT
from crossfade.evaluation.baselines import (
    EASE,
    ALSBaseline,
    ItemKNN,
    MatrixRecommender,
    MostPopular,
)
from crossfade.evaluation.protocol import _mean_metrics, full_ranking_eval, ml100k_split
from crossfade.evaluation.splits import ratio_split

BLOCKS = 2
USERS_PER_BLOCK = 8
ITEMS_PER_BLOCK = 6


def item(block: int, n: int) -> str:
    return f"i{block}{n}"


def block_world() -> tuple[pd.DataFrame, dict[str, set[str]]]:
    """Two taste blocks: users of block b only ever play items of block b. Each user played
    all block items but one (rotating), and the probe users u0x miss items 4 and 5."""
    rows = []
    for b in range(BLOCKS):
        for u in range(USERS_PER_BLOCK):
            missing = u % ITEMS_PER_BLOCK
            rows += [(f"u{b}{u}", item(b, n)) for n in range(ITEMS_PER_BLOCK) if n != missing]
    # a probe user per block who played only items 0..3 of their block
    for b in range(BLOCKS):
        rows += [(f"probe{b}", item(b, n)) for n in range(4)]
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID]).assign(**{WEIGHT: 1.0})
    seen = {str(u): set(g) for u, g in frame.groupby(C.USER_ID)[C.ITEM_ID]}
    return frame, seen


def models() -> list[MatrixRecommender]:
    return [
        ItemKNN(neighbours=3),
        EASE(l2=1.0),
        ALSBaseline(factors=4, regularization=0.1, alpha=5.0, iterations=20),
    ]


@pytest.mark.parametrize("model", models(), ids=lambda m: type(m).__name__)
def test_personalised_baselines_recommend_the_unseen_in_block_items_first(
    model: MatrixRecommender,
) -> None:
    frame, seen = block_world()
    model.fit(frame)
    recs = model.recommend(["probe0", "probe1"], 2, seen)
    assert set(recs["probe0"]) == {item(0, 4), item(0, 5)}
    assert set(recs["probe1"]) == {item(1, 4), item(1, 5)}


@pytest.mark.parametrize("model", [MostPopular(), *models()], ids=lambda m: type(m).__name__)
def test_excluded_items_are_never_recommended_even_when_k_covers_the_catalogue(
    model: MatrixRecommender,
) -> None:
    frame, seen = block_world()
    model.fit(frame)
    catalogue = set(frame[C.ITEM_ID])
    recs = model.recommend(sorted(seen), k=100, exclude=seen)
    for user, items in recs.items():
        assert not set(items) & seen[user]
        assert set(items) == catalogue - seen[user]  # the full ranking, nothing else
        assert len(items) == len(set(items))


def test_most_popular_orders_by_user_count_and_breaks_ties_by_item_id() -> None:
    frame = pd.DataFrame(
        {C.USER_ID: ["a", "b", "c", "a", "b", "c"], C.ITEM_ID: ["x", "x", "x", "z", "z", "y"]}
    ).assign(**{WEIGHT: 1.0})
    model = MostPopular().fit(frame)
    assert model.recommend(["nobody"], 3, {})["nobody"] == ["x", "z", "y"]
    assert model.recommend(["c"], 3, {"c": {"x", "y"}})["c"] == ["z"]
    tied = pd.DataFrame({C.USER_ID: ["a", "a", "a"], C.ITEM_ID: ["q", "b", "m"], WEIGHT: 1.0})
    assert MostPopular().fit(tied).recommend(["z"], 3, {})["z"] == ["b", "m", "q"]


def test_ease_has_a_zero_diagonal_and_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 12)) < 0.3).astype(float)
    users, items = np.nonzero(dense)
    frame = pd.DataFrame(
        {C.USER_ID: [f"u{u:02d}" for u in users], C.ITEM_ID: [f"i{i:02d}" for i in items]}
    ).assign(**{WEIGHT: 1.0})
    lam = 7.0
    model = EASE(l2=lam).fit(frame)
    kept = sorted({f"i{i:02d}" for i in items})
    x = dense[:, [int(i[1:]) for i in kept]]
    x = x[x.sum(axis=1) > 0]
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    expected = np.eye(x.shape[1]) - p @ np.diag(1.0 / np.diag(p))
    assert np.allclose(np.diag(model.weights), 0.0)
    assert np.allclose(model.weights, expected, atol=1e-10)


def test_item_knn_keeps_at_most_k_neighbours_per_item() -> None:
    frame, _ = block_world()
    model = ItemKNN(neighbours=2).fit(frame)
    per_item = np.diff(model.similarity.tocsc().indptr)  # columns = candidate items
    assert per_item.max() <= 2
    assert np.allclose(model.similarity.diagonal(), 0.0)


@pytest.mark.parametrize(
    "make",
    [MostPopular, lambda: ItemKNN(3), lambda: EASE(1.0), lambda: ALSBaseline(4, 0.1, 5.0, 10)],
    ids=["MostPopular", "ItemKNN", "EASE", "ALS"],
)
def test_baselines_are_deterministic_and_block_size_does_not_matter(make: object) -> None:
    frame, seen = block_world()
    users = sorted(seen)
    first = make().fit(frame).recommend(users, 5, seen)  # type: ignore[operator]
    again = make()  # type: ignore[operator]
    again.block_users = 3
    assert again.fit(frame).recommend(users, 5, seen) == first


def test_metrics_on_a_hand_computed_ranking() -> None:
    lists = {"a": ["x", "y", "z"], "b": ["p", "q", "r"]}
    relevant = {"a": {"y"}, "b": {"p", "r", "s", "t"}}
    got = _mean_metrics(lists, relevant, 3)
    assert got["precision@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert got["recall@3"] == pytest.approx((1 / 1 + 2 / 4) / 2)
    ndcg_a = (1 / np.log2(3)) / 1.0
    ndcg_b = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3) + 1 / np.log2(4))
    assert got["ndcg@3"] == pytest.approx((ndcg_a + ndcg_b) / 2)


def test_full_ranking_eval_scores_only_new_test_items() -> None:
    frame, _ = block_world()
    test = pd.DataFrame(
        {C.USER_ID: ["probe0", "probe0"], C.ITEM_ID: [item(0, 4), item(0, 0)], WEIGHT: 1.0}
    )
    result = full_ranking_eval(EASE(1.0).fit(frame), frame, test, k=2)
    # item 0 was already in training: only item 4 is relevant, and EASE ranks it top-2
    assert result["users"] == 1.0
    assert result["recall@2"] == 1.0
    assert result["precision@2"] == 0.5


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 60), min_size=1, max_size=12),
    share=st.sampled_from(["0.1", "0.2", "0.25", "0.5"]),
    seed=st.integers(0, 2**16),
)
def test_ratio_split_holds_out_floor_share_of_each_users_items(
    counts: list[int], share: str, seed: int
) -> None:
    rows = [(f"u{u}", f"i{n}") for u, count in enumerate(counts) for n in range(count)]
    events = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID]).assign(**{WEIGHT: 1.0})
    split = ratio_split(events, float(share), seed)
    # a partition of the events, deterministic in the seed
    assert len(split.train) + len(split.test) == len(events)
    assert not set(split.train.index) & set(split.test.index)
    again = ratio_split(events, float(share), seed)
    assert list(again.test.index) == list(split.test.index)
    held = split.test.groupby(C.USER_ID).size()
    for u, count in enumerate(counts):
        # the 80/20 rounding: floor(share * n) held out, computed exactly (no float error)
        assert held.get(f"u{u}", 0) == math.floor(Fraction(share) * count)


@pytest.fixture(scope="module")
def ml100k() -> tuple[pd.DataFrame, pd.DataFrame]:
    return ml100k_split(42)


@pytest.mark.parametrize(
    ("model", "anchor"), [(MostPopular(), 0.220), (EASE(500.0), 0.454)], ids=["pop", "ease"]
)
def test_ml100k_ndcg_is_within_002_of_the_stack_notes_anchor(
    ml100k: tuple[pd.DataFrame, pd.DataFrame], model: MatrixRecommender, anchor: float
) -> None:
    train, test = ml100k
    assert len(train) + len(test) == 100_000
    result = full_ranking_eval(model.fit(train), train, test, k=10)
    assert result["users"] == 943
    assert result["ndcg@10"] == pytest.approx(anchor, abs=0.02)
