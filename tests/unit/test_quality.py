"""The full stack (retrieval union + LightGBM ranker) on a small block-structured world: runs
end to end, reports all five models, never recommends training items, chooses between the
z-score blend and the ranker (and the ranker's tree count) on a transfer check inside the
training data, and learns only from the training data (the ranker's rows do not change when
the test set does)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.candidates.weights import WEIGHT
from crossfade.evaluation.baselines import EASE, ALSBaseline
from crossfade.evaluation.collective import CollectiveEASE
from crossfade.evaluation.protocol import _mean_metrics, items_by_user
from crossfade.evaluation.quality import (
    BLEND,
    BLEND_MODELS,
    DEFAULT_GRID,
    ENRICHED,
    FEATURES,
    FOLD,
    GROUP,
    HISTORY_FEATURES,
    MODELS,
    OBJECTIVES,
    RANKER,
    TIER_VALUE,
    TREE_STEP,
    FullStack,
    QualityResult,
    RankerSetting,
    _halves,
    _ndcg,
    _top_lists,
    base_models,
    baseline_models,
    blend_grid,
    blend_scores,
    build_candidates,
    cross_fitted,
    enriched,
    history,
    history_features,
    model_scores,
    run_quality_details,
)
from crossfade.evaluation.ratings import RatingALS
from crossfade.evaluation.side_info import SideInfo
from crossfade.evaluation.splits import ratio_split
from crossfade.ranking.labels import LABEL

GRID = (
    RankerSetting(num_leaves=7, learning_rate=0.1, candidates_per_model=12, min_data_in_leaf=5),
)
K = 5


def block_world(seed: int = 0) -> pd.DataFrame:
    """Three taste blocks of 20 items; each of 30 users per block plays 10 random items of
    their block (more often the block's low-numbered items) and one random other item."""
    rng = np.random.default_rng(seed)
    rows = []
    popularity = 1.0 / np.arange(1, 21)
    popularity /= popularity.sum()
    for b in range(3):
        for u in range(30):
            picks = rng.choice(20, size=10, replace=False, p=popularity)
            rows += [(f"u{b}_{u}", f"i{b}_{n}") for n in picks]
            other = (b + 1 + rng.integers(2)) % 3
            rows.append((f"u{b}_{u}", f"i{other}_{rng.integers(20)}"))
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID]).drop_duplicates()
    return frame.assign(**{WEIGHT: 1.0}).reset_index(drop=True)


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    s = ratio_split(block_world(), 0.2, seed=1)
    return s.train.reset_index(drop=True), s.test.reset_index(drop=True)


@pytest.fixture(scope="module")
def result(split: tuple[pd.DataFrame, pd.DataFrame]) -> QualityResult:
    train, test = split
    return run_quality_details(train, test, k=K, seed=7, grid=GRID)


@pytest.fixture(scope="module")
def ranked(split: tuple[pd.DataFrame, pd.DataFrame]) -> QualityResult:
    """The stack with the blend out of the running: the ranker is the only choice."""
    train, test = split
    return run_quality_details(train, test, k=K, seed=7, grid=GRID, blend=False)


def test_full_stack_reports_all_five_models_with_sane_metrics(result: QualityResult) -> None:
    assert set(result.metrics) == {*MODELS, "full_stack"}
    for metrics in result.metrics.values():
        for name in (f"precision@{K}", f"recall@{K}", f"ndcg@{K}"):
            assert 0.0 <= metrics[name] <= 1.0
    union = [key for key in result.metrics["full_stack"] if key.startswith("union_recall@")]
    assert len(union) == 1 and 0.0 < result.metrics["full_stack"][union[0]] <= 1.0
    # the blocks are learnable: the stack must beat the non-personalised floor
    assert result.metrics["full_stack"][f"ndcg@{K}"] > result.metrics["most_popular"][f"ndcg@{K}"]
    # the transfer check scored the blend and the one ranker setting, and kept the better
    key = f"validation_ndcg@{K}"
    assert [row["method"] for row in result.stack.tuning] == [BLEND, RANKER]
    best = max(result.stack.tuning, key=lambda row: float(row[key]))
    assert result.stack.method == best["method"]
    assert set(result.stack.validation_baselines) == set(MODELS)
    assert 0.0 < result.stack.inner_blend_ndcg <= 1.0 and result.stack.weights


def test_full_stack_never_recommends_training_items(
    split: tuple[pd.DataFrame, pd.DataFrame], result: QualityResult
) -> None:
    train, _ = split
    seen = items_by_user(train)
    users = sorted(seen)
    recs = result.stack.recommend(users, k=50, exclude=seen)
    assert set(recs) == set(users)
    for user in users:
        assert recs[user], user
        assert not set(recs[user]) & seen[user]
        assert len(recs[user]) == len(set(recs[user]))


def test_unknown_users_get_the_popular_list_and_unfitted_stack_refuses(
    result: QualityResult,
) -> None:
    recs = result.stack.recommend(["nobody"], k=3, exclude={})
    assert recs["nobody"] == result.stack.models["most_popular"].recommend(["x"], 3)["x"]
    with pytest.raises(RuntimeError):
        FullStack().recommend(["u0_0"], 3)


def test_ranker_training_rows_come_only_from_the_training_data(
    split: tuple[pd.DataFrame, pd.DataFrame], result: QualityResult
) -> None:
    train, test = split
    # a very different test set: half the rows dropped, and every user "plays" every item
    everything = pd.MultiIndex.from_product(
        [sorted(set(test[C.USER_ID])), sorted(set(train[C.ITEM_ID]))],
        names=[C.USER_ID, C.ITEM_ID],
    ).to_frame(index=False)
    mutated = pd.concat([test.iloc[::2], everything.assign(**{WEIGHT: 1.0})], ignore_index=True)
    other = run_quality_details(train, mutated, k=K, seed=7, grid=GRID)
    frame = result.stack.training_frame
    pd.testing.assert_frame_equal(frame, other.stack.training_frame)
    assert set(frame.columns) >= {*FEATURES, LABEL}
    # every labelled pair is a training interaction; test-only pairs never appear as positives
    train_pairs = set(zip(train[C.USER_ID], train[C.ITEM_ID], strict=True))
    positives = frame[frame[LABEL] == 1]
    assert len(positives) > 0
    assert set(zip(positives[C.USER_ID], positives[C.ITEM_ID], strict=True)) <= train_pairs


def test_candidates_are_the_union_of_each_models_top_n_minus_exclusions(
    split: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, _ = split
    models = {name: m.fit(train) for name, m in base_models(3).items()}
    seen = items_by_user(train)
    users = sorted(seen)[:10]
    frame = build_candidates(models, users, seen, n_per_model=5)
    for user, rows in frame.groupby(C.USER_ID):
        items = set(rows[C.ITEM_ID])
        expected = set().union(
            *(m.recommend([str(user)], 5, seen)[str(user)] for m in models.values())
        )
        assert items == expected
        assert not items & seen[str(user)]
        assert 5 <= len(items) <= 5 * len(MODELS)
    assert set(frame[C.USER_ID]) == set(users)


def test_ranker_rows_come_from_every_inner_fold_and_trees_are_chosen_on_the_transfer_check(
    ranked: QualityResult,
) -> None:
    result = ranked
    frame = result.stack.training_frame
    assert set(frame[FOLD]) == set(range(result.stack.inner_folds))
    assert result.stack.inner_folds >= 2
    # one request per (fold, user): the same user in two folds is two LambdaRank groups
    per_group = frame.groupby(GROUP)[[FOLD, C.USER_ID]].nunique()
    assert (per_group == 1).all().all()
    assert frame[GROUP].nunique() == frame.groupby([FOLD, C.USER_ID]).ngroups
    # the folds are different inner splits, so their labelled positives differ
    pos = frame[frame[LABEL] == 1]
    by_fold = [set(zip(g[C.USER_ID], g[C.ITEM_ID], strict=True)) for _, g in pos.groupby(FOLD)]
    assert by_fold[0] != by_fold[1]
    tuned = result.stack.tuning[0]
    assert tuned["objective"] == GRID[0].objective
    assert result.stack.method == RANKER and result.stack.setting == GRID[0]
    assert 0.0 < float(tuned[f"validation_ndcg@{K}"]) <= 1.0
    # the cross-fitted number can never beat the best checkpoint it is the fair version of
    fair, optimistic = tuned[f"validation_ndcg@{K}"], tuned[f"best_checkpoint_ndcg@{K}"]
    assert float(fair) <= float(optimistic) + 1e-12
    # the tree count is one of the transfer check's checkpoints, and the final ranker uses it
    trees = int(tuned["trees"])
    assert trees % TREE_STEP == 0 and 0 < trees <= result.stack.num_boost_round
    assert result.stack.ranker is not None
    assert result.stack.ranker.boosters[TIER_VALUE].current_iteration() == trees


def test_cross_fitting_scores_each_half_at_the_other_halfs_pick() -> None:
    """Half a (1 user) peaks at 10 trees, half b (3 users) at 20: b is scored at 10 (0.2),
    a at 20 (0.5), weighted by users; the best checkpoint overall would claim 0.65."""
    curve_a = {10: 0.9, 20: 0.5}
    curve_b = {10: 0.2, 20: 0.7}
    assert cross_fitted(curve_a, 1, curve_b, 3) == pytest.approx((3 * 0.2 + 1 * 0.5) / 4)
    assert cross_fitted(curve_b, 3, curve_a, 1) == pytest.approx((1 * 0.5 + 3 * 0.2) / 4)
    # when both halves agree it is the plain score at that checkpoint; ties go to fewer trees
    assert cross_fitted({10: 0.4, 20: 0.4}, 2, {10: 0.3, 20: 0.1}, 2) == pytest.approx(0.35)


@settings(max_examples=30, deadline=None)
@given(st.sets(st.text("abc", min_size=1, max_size=4), max_size=12), st.integers(0, 99))
def test_the_check_users_split_into_two_disjoint_halves(users: set[str], seed: int) -> None:
    a, b = _halves(sorted(users), seed)
    assert a | b == users and not a & b and abs(len(a) - len(b)) <= 1
    assert (a, b) == _halves(sorted(users), seed)


def test_the_objective_is_a_tuned_setting_and_a_bad_one_is_named() -> None:
    assert set(OBJECTIVES) == {"lambdarank", "binary"}
    assert {s.objective for s in DEFAULT_GRID} <= set(OBJECTIVES)
    assert RankerSetting(objective="binary").params(3)["objective"] == "binary"
    with pytest.raises(ValueError, match="'pointwise'"):
        RankerSetting(objective="pointwise")
    with pytest.raises(ValueError, match="inner_folds"):
        FullStack(inner_folds=0).fit(block_world())
    with pytest.raises(ValueError, match="nothing to choose"):
        FullStack(grid=(), blend=False).fit(block_world())


def test_a_pointwise_stack_learns_the_blocks_too(split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, test = split
    grid = (RankerSetting(7, 0.1, 12, "binary", min_data_in_leaf=5),)
    got = run_quality_details(train, test, k=K, seed=7, grid=grid, blend=False)
    assert got.stack.method == RANKER and got.stack.setting.objective == "binary"
    ndcg = {name: m[f"ndcg@{K}"] for name, m in got.metrics.items()}
    assert ndcg["full_stack"] > ndcg["most_popular"]


def test_history_features_relate_each_item_to_the_users_own_items() -> None:
    # users x items: u0 has items 0 and 1, u1 has 1 and 2, u2 has 0, 1 and 2
    matrix = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0]], dtype=float))
    h = history(matrix)
    assert np.allclose(np.diag(h.cosine), 0.0) and np.allclose(np.diag(h.conditional), 0.0)
    got = history_features(h, np.array([0]))
    assert set(got) == set(HISTORY_FEATURES)
    # item 2 co-occurs with item 0 once (u2) and with item 1 twice (u1, u2)
    assert got["cosine_max"][0, 2] == pytest.approx(2 / np.sqrt(3 * 2))
    assert got["cosine_mean"][0, 2] == pytest.approx((1 / np.sqrt(2 * 2) + 2 / np.sqrt(3 * 2)) / 2)
    # share of item 0's users (u0, u2) who also have item 2: 1/2; of item 1's (3 users): 2/3
    assert got["conditional_max"][0, 2] == pytest.approx(2 / 3)
    assert got["conditional_mean"][0, 2] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # item 3 never co-occurs; its popularity gap is log1p(0) minus the user's mean log1p
    assert got["cosine_max"][0, 3] == 0.0
    user = (np.log1p(2) + np.log1p(3)) / 2
    assert got["user_popularity"][0, 3] == pytest.approx(user)
    assert got["popularity_gap"][0, 3] == pytest.approx(-user)


def test_blend_weights_cover_the_simplex_and_score_by_z() -> None:
    grid = blend_grid(("a", "b", "c"), step=0.5)
    assert len(grid) == 6 and all(abs(sum(w.values()) - 1.0) < 1e-12 for w in grid)
    assert {"a": 0.5, "b": 0.0, "c": 0.5} in grid
    assert all(set(w) == set(BLEND_MODELS) for w in blend_grid())
    frame = pd.DataFrame({"als_z": [1.0, -1.0], "ease_z": [0.0, 2.0]})
    assert np.allclose(blend_scores(frame, {"als": 0.25, "ease": 0.75}), [0.25, 1.25])


def test_vectorised_ndcg_matches_the_protocols_metric() -> None:
    rng = np.random.default_rng(0)
    rows = 400
    frame = pd.DataFrame(
        {
            GROUP: rng.choice([f"r{n}" for n in range(20)], size=rows),
            C.USER_ID: "u",
            C.ITEM_ID: [f"i{n:03d}" for n in rng.permutation(rows)],
            "ease_rank": rng.integers(0, 50, size=rows).astype(float),
            LABEL: rng.integers(0, 2, size=rows),
        }
    )
    held = {
        str(g): set(rows_[C.ITEM_ID][rows_[LABEL] == 1]) | {"elsewhere"}
        for g, rows_ in frame.groupby(GROUP)
    }
    held["no rows"] = {"x"}
    scores = rng.integers(0, 5, size=rows).astype(float)  # many ties: EASE rank, then item id
    expected = _mean_metrics(_top_lists(frame, scores, K, GROUP), held, K)[f"ndcg@{K}"]
    assert _ndcg(frame, scores, held, K) == pytest.approx(expected)


def test_a_blend_stack_orders_the_candidates_by_its_weights(result: QualityResult) -> None:
    stack = result.stack
    stack_blend = FullStack(
        k=K, seed=7, grid=GRID, models=stack.models, method=BLEND, weights={"ease": 1.0}
    )
    stack_blend._history = stack._history
    users = sorted(set(stack.training_frame[C.USER_ID]))[:5]
    seen = {u: set() for u in users}
    frame = stack_blend.candidates(users, seen).reset_index(drop=True)
    by_ease = _top_lists(frame, frame["ease_z"].to_numpy(), K)
    assert stack_blend.recommend(users, K, seen) == {u: by_ease[u] for u in users}


def test_the_stacks_als_and_ease_learn_from_ratings_and_side_info_the_baselines_do_not() -> None:
    side = SideInfo(items=pd.DataFrame({"tag:x": [1.0]}, index=["i0_0"]))
    plain = baseline_models(3)
    stack = base_models(3, side)
    assert set(plain) == set(stack) == set(MODELS)
    assert type(plain["als"]) is ALSBaseline and type(plain["ease"]) is EASE
    assert isinstance(stack["als"], RatingALS)
    assert isinstance(stack["ease"], CollectiveEASE) and stack["ease"].side is side
    assert type(stack["item_knn"]) is type(plain["item_knn"])
    world = block_world()
    assert not enriched(world, None) and not enriched(world, SideInfo())
    assert enriched(world, side) == {"ease": ENRICHED["ease"]}
    assert enriched(world.assign(**{C.RATING: 4.0}), None) == ENRICHED


def test_a_stack_with_ratings_and_side_info_scores_its_own_als_and_ease_too() -> None:
    """Ratings say the in-block items are liked (5) and the stray item is not (1); side
    information names each item's and user's block. Every test row stays a positive."""
    world = block_world(seed=3)
    in_block = world[C.USER_ID].str[1] == world[C.ITEM_ID].str[1]
    rated = world.assign(**{C.RATING: np.where(in_block, 5.0, 1.0)})
    items = sorted(set(world[C.ITEM_ID]))
    users = sorted(set(world[C.USER_ID]))
    side = SideInfo(
        items=pd.DataFrame(
            {f"tag:{b}": [float(i[1] == str(b)) for i in items] for b in range(3)}
        ).set_axis(items),
        users=pd.DataFrame(
            {f"block:{b}": [float(u[1] == str(b)) for u in users] for b in range(3)}
        ).set_axis(users),
    )
    s = ratio_split(rated, 0.2, seed=1)
    train, test = s.train.reset_index(drop=True), s.test.reset_index(drop=True)
    result = run_quality_details(train, test, k=K, seed=7, grid=(), side=side)
    assert set(result.metrics) == {*MODELS, *ENRICHED.values(), "full_stack"}
    stack = result.stack
    assert stack.method == BLEND and stack.side is side
    assert isinstance(stack.models["ease"], CollectiveEASE)
    ease = stack.models["ease"]
    rows = np.arange(len(ease.user_ids))
    assert np.allclose(model_scores(ease, rows), ease.inputs @ ease.weights)
    assert sorted(set(ease.matrix.data)) == pytest.approx([1 - 2 * 0.3, 1 + 2 * 0.3])
    for name in (*ENRICHED.values(), "full_stack"):
        assert result.metrics[name][f"ndcg@{K}"] > result.metrics["most_popular"][f"ndcg@{K}"]
    # every test user with new items is scored, whatever the rating of those items
    assert result.metrics["full_stack"]["users"] == result.metrics["ease"]["users"]
