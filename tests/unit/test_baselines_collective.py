"""Ratings as training values and the collective EASE: known answers on tiny matrices, the
closed form against an explicitly built augmented design matrix, and the promise that
without ratings and side information both are exactly the plain baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.candidates.weights import WEIGHT
from crossfade.evaluation.baselines import EASE, ALSBaseline
from crossfade.evaluation.collective import CollectiveEASE, ease_weights, item_penalties
from crossfade.evaluation.ratings import (
    MIN_VALUE,
    RatingALS,
    has_ratings,
    linear_values,
    ratings_of,
    ratio_values,
)
from crossfade.evaluation.side_info import (
    SideInfo,
    aligned,
    item_features,
    one_hot,
    release_decades,
    user_features,
)


def frame(pairs: list[tuple[str, str]], ratings: list[float] | None = None) -> pd.DataFrame:
    out = pd.DataFrame(pairs, columns=[C.USER_ID, C.ITEM_ID]).assign(**{WEIGHT: 1.0})
    return out if ratings is None else out.assign(**{C.RATING: ratings})


# --- ratings as values ---------------------------------------------------------------------


def test_rating_values_leave_the_neutral_and_the_unrated_at_one() -> None:
    rated = frame([("u", "a"), ("u", "b"), ("u", "c"), ("v", "a")], [1.0, 3.0, 5.0, np.nan])
    assert np.allclose(linear_values(rated, 0.2), [0.6, 1.0, 1.4, 1.0])
    assert np.allclose(ratio_values(rated), [1 / 3, 1.0, 5 / 3, 1.0])
    # a steep slope never gives a value that would drop the pair
    assert linear_values(rated, 0.6).min() == MIN_VALUE
    plain = frame([("u", "a"), ("v", "b")])
    assert np.isnan(ratings_of(plain)).all() and not has_ratings(plain)
    assert np.array_equal(linear_values(plain, 0.3), [1.0, 1.0])
    assert np.array_equal(ratio_values(plain), [1.0, 1.0])
    assert has_ratings(rated)


def test_rating_als_is_plain_als_without_ratings_and_weighs_by_rating_with_them() -> None:
    pairs = [(f"u{u}", f"i{(u + j) % 7}") for u in range(12) for j in range(3)]
    plain = ALSBaseline(factors=4, iterations=5, seed=3).fit(frame(pairs))
    same = RatingALS(factors=4, iterations=5, seed=3).fit(frame(pairs))
    assert np.array_equal(plain.user_factors, same.user_factors)
    assert np.array_equal(plain.item_factors, same.item_factors)
    ratings = [float(1 + n % 5) for n in range(len(pairs))]
    rated = RatingALS(factors=4, iterations=5, seed=3).fit(frame(pairs, ratings))
    # the ALS weight is rating / 3: confidence 1 + alpha * log1p(rating / 3)
    assert np.allclose(np.sort(rated.matrix.data), np.sort(np.array(ratings) / 3))
    assert not np.allclose(rated.user_factors, plain.user_factors)


# --- side information ----------------------------------------------------------------------


def test_one_hot_tags_skip_unknowns_and_sort_columns() -> None:
    values = pd.Series(["b a", None, "b", "unknown", "a a"], index=list("vwxyz"))
    out = one_hot(values, "tag")
    assert list(out.columns) == ["tag:a", "tag:b"]
    assert out.to_numpy().tolist() == [[1, 1], [0, 0], [0, 1], [0, 0], [1, 0]]
    assert list(out.index) == list("vwxyz")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sets(st.sampled_from(["x", "y", "z", "w"]), max_size=4), max_size=12))
def test_one_hot_rows_count_each_known_value_once(tags: list[set[str]]) -> None:
    values = pd.Series([" ".join(sorted(t)) or None for t in tags], dtype=object)
    out = one_hot(values, "g")
    assert list(out.columns) == sorted(f"g:{t}" for t in set().union(*tags))
    assert out.sum(axis=1).tolist() == [float(len(t)) for t in tags]
    assert set(np.unique(out.to_numpy())) <= {0.0, 1.0}


def test_item_and_user_features_from_side_tables() -> None:
    items = pd.DataFrame(
        {
            C.TAGS: ["comedy drama", None, "drama"],
            C.RELEASE_DATE: [pd.Timestamp("1995-01-01"), pd.Timestamp("1968-05-01"), None],
        },
        index=["i1", "i2", "i3"],
    )
    assert release_decades(items[C.RELEASE_DATE]).tolist() == ["1990", "1960", None]
    f = item_features(items)
    assert list(f.columns) == ["tag:comedy", "tag:drama", "decade:1960", "decade:1990"]
    assert list(f.to_numpy()[2]) == [0, 1, 0, 0]
    users = pd.DataFrame(
        {C.GENDER: ["F", "M"], C.OCCUPATION: ["other", None], C.AGE_BUCKET: ["18-24", "unknown"]},
        index=["u1", "u2"],
    )
    g = user_features(users)
    assert list(g.columns) == ["gender:F", "gender:M", "occupation:other", "age_bucket:18-24"]
    assert list(g.to_numpy()[1]) == [0, 1, 0, 0]
    assert user_features(pd.DataFrame(index=["u1"])).shape == (1, 0)
    assert SideInfo().empty and not SideInfo(items=f).empty


def test_aligned_rows_follow_the_ids_and_drop_unused_columns() -> None:
    features = pd.DataFrame({"a": [1.0, 0.0], "b": [0.0, 1.0]}, index=["x", "y"])
    out = aligned(features, ["y", "q", "y"]).toarray()
    assert out.tolist() == [[1.0], [0.0], [1.0]]  # column "a" (only x has it) dropped
    assert aligned(pd.DataFrame(), ["x"]).shape == (1, 0)


# --- collective EASE ----------------------------------------------------------------------


def test_item_penalties_grow_with_popularity() -> None:
    pop = np.array([1.0, 2.0, 3.0])
    assert np.allclose(item_penalties(pop, 10.0, 0.0), [10.0, 10.0, 10.0])
    assert np.allclose(item_penalties(pop, 10.0, 1.0), [5.0, 10.0, 15.0])
    assert np.allclose(item_penalties(pop, 10.0, 0.5), 10.0 * np.sqrt(pop / 2.0))
    assert np.allclose(item_penalties(np.zeros(2), 10.0, 0.75), [10.0, 10.0])


def test_ease_weights_zero_diagonal_and_exact_fit_without_penalty() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((30, 5)) < 0.4).astype(float)
    b = ease_weights(x.T @ x, np.full(5, 2.0))
    assert np.allclose(np.diag(b), 0.0)
    # each column solves min ||x_j - X b_j||^2 + 2 ||b_j||^2 subject to b_jj = 0
    for j in range(5):
        others = [i for i in range(5) if i != j]
        xo = x[:, others]
        direct = np.linalg.solve(xo.T @ xo + 2.0 * np.eye(4), xo.T @ x[:, j])
        assert np.allclose(b[others, j], direct)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10_000),
    st.floats(1.0, 1000.0),
    st.sampled_from([None, 3.0]),
)
def test_collective_ease_is_plain_ease_without_ratings_or_side_info(
    seed: int, l2: float, rating: float | None
) -> None:
    rng = np.random.default_rng(seed)
    pairs = sorted(
        {(f"u{rng.integers(8)}", f"i{rng.integers(6)}") for _ in range(20)} | {("u0", "i0")}
    )
    data = frame(pairs, None if rating is None else [rating] * len(pairs))
    plain = EASE(l2=l2).fit(data)
    collective = CollectiveEASE(l2=l2, rating_slope=0.3, side=SideInfo()).fit(data)
    assert np.allclose(collective.weights, plain.weights)
    rows = np.arange(len(plain.user_ids))
    assert np.allclose(collective.scores(rows), plain.scores(rows))
    users = plain.user_ids
    assert collective.recommend(users, 3) == plain.recommend(users, 3)


def test_collective_ease_matches_an_explicit_augmented_design_matrix() -> None:
    """Pseudo-user rows counted `item_row_weight` times = those rows repeated; user features
    are extra input columns; per-item lambda from popularity."""
    pairs = [("u1", "a"), ("u1", "b"), ("u2", "b"), ("u2", "c"), ("u3", "a"), ("u3", "d")]
    ratings = [5.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    items = pd.DataFrame({"tag:x": [1.0, 0.0, 1.0, 0.0], "tag:y": [1.0, 1.0, 0.0, 1.0]})
    items.index = pd.Index(["a", "b", "c", "d"])
    users = pd.DataFrame({"gender:F": [1.0, 0.0, 1.0]}, index=["u1", "u2", "u3"])
    model = CollectiveEASE(
        l2=3.0,
        rating_slope=0.25,
        item_row_weight=2.0,
        popularity_exponent=0.5,
        side=SideInfo(items, users),
    ).fit(frame(pairs, ratings))
    x = np.zeros((3, 4))
    for (user, item), r in zip(pairs, ratings, strict=True):
        x[int(user[1]) - 1, "abcd".index(item)] = 1 + 0.25 * (r - 3)
    inputs = np.hstack([x, users.to_numpy()])
    pseudo = np.hstack([items.to_numpy().T, np.zeros((2, 1))])
    design = np.vstack([inputs, pseudo, pseudo])  # weight 2: each pseudo row twice
    pop = (x > 0).sum(axis=0)
    penalties = np.r_[3.0 * np.sqrt(pop / pop.mean()), 3.0]
    p = np.linalg.inv(design.T @ design + np.diag(penalties))
    b = np.eye(5) - p / np.diag(p)[np.newaxis, :]
    assert np.allclose(model.scores(np.arange(3)), inputs @ b[:, :4])


def test_genre_rows_link_items_no_user_has_together() -> None:
    """No two items share a user, so plain EASE learns nothing (all scores 0, ties by id);
    the genre pseudo-rows make a0's genre mate a1 the first pick for a0's user."""
    pairs = [("u1", "b0"), ("u2", "b1"), ("u3", "a0"), ("u4", "a1")]
    genres = pd.DataFrame({"tag:A": [1.0, 1.0, 0.0, 0.0], "tag:B": [0.0, 0.0, 1.0, 1.0]})
    genres.index = pd.Index(["a0", "a1", "b0", "b1"])
    data = frame(pairs)
    plain = EASE(l2=1.0).fit(data)
    assert np.allclose(plain.scores(np.arange(4)), 0.0)
    assert plain.recommend(["u3"], 1, {"u3": {"a0"}}) == {"u3": ["a1"]}  # id order only
    assert plain.recommend(["u1"], 1, {"u1": {"b0"}}) == {"u1": ["a0"]}
    model = CollectiveEASE(l2=1.0, side=SideInfo(items=genres)).fit(data)
    assert model.recommend(["u1"], 1, {"u1": {"b0"}}) == {"u1": ["b1"]}
    assert model.recommend(["u3"], 1, {"u3": {"a0"}}) == {"u3": ["a1"]}
    row = model.scores(np.array([model.user_ids.index("u1")]))[0]
    assert row[model.item_ids.index("b1")] > 0
    assert np.allclose(row[[model.item_ids.index("a0"), model.item_ids.index("a1")]], 0.0)


def test_user_feature_columns_carry_what_users_like_them_have() -> None:
    """f3 shares no item with anyone; its gender column points it to the women's item i9
    (plain EASE falls back to id order: i1, the men's item)."""
    pairs = [("f1", "i9"), ("f2", "i9"), ("f3", "i2"), ("m1", "i1"), ("m2", "i1"), ("m3", "i3")]
    gender = pd.DataFrame(
        {"gender:F": [1.0, 1.0, 1.0, 0.0, 0.0, 0.0], "gender:M": [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]},
        index=["f1", "f2", "f3", "m1", "m2", "m3"],
    )
    data = frame(pairs)
    assert EASE(l2=1.0).fit(data).recommend(["f3"], 1, {"f3": {"i2"}}) == {"f3": ["i1"]}
    model = CollectiveEASE(l2=1.0, side=SideInfo(users=gender)).fit(data)
    assert model.recommend(["f3"], 1, {"f3": {"i2"}}) == {"f3": ["i9"]}
    assert model.recommend(["m3"], 1, {"m3": {"i3"}}) == {"m3": ["i1"]}


def test_a_negative_pseudo_row_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="item_row_weight"):
        CollectiveEASE(item_row_weight=-1.0)
