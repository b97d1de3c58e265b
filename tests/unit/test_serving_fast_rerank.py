"""The array re-ranker (`serving.fast_rerank`) against the DataFrame one (`reranking`).

Generated candidate lists (ties, duplicates, missing artists, genres, flags, dates and
markets), listeners, k and rule settings go through both, request after request, each with
its own exposure tracker: the top k, every reason tag, the removed items and the fairness
state must stay identical.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.reranking import (
    RequestContext,
    Reranker,
    RerankingConfig,
    default_reranking_path,
    load_reranking,
)
from crossfade.reranking.frame import PLAY_SHARE_ABOVE, SCORE
from crossfade.serving.fast_rerank import FastReranker, RerankInput, label_codes

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    """A scored candidate list with the re-ranker's columns, awkward values included."""
    n = draw(st.integers(0, 45))
    pool = [f"t{i:03d}" for i in range(60)]
    ids = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))  # duplicates too
    scores = draw(
        st.lists(
            st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(-3, 3, allow_nan=False)),
            min_size=n,
            max_size=n,
        )
    )
    artists = draw(
        st.lists(st.sampled_from(["a1", "a2", "a3", "a4", "a5", None]), min_size=n, max_size=n)
    )
    genres = draw(st.lists(st.sampled_from(["pop", "rock", "jazz", None]), min_size=n, max_size=n))
    explicit = draw(st.lists(st.sampled_from([True, False, None]), min_size=n, max_size=n))
    above = draw(
        st.lists(
            st.one_of(st.floats(0, 1), st.sampled_from([0.1, 0.2, float("nan")])),
            min_size=n,
            max_size=n,
        )
    )
    ages = draw(st.lists(st.one_of(st.integers(-5, 90), st.none()), min_size=n, max_size=n))
    markets = draw(
        st.lists(
            st.one_of(
                st.just(",".join(D.MARKETS)),
                st.lists(st.sampled_from(D.MARKETS), max_size=4).map(",".join),
                st.none(),
            ),
            min_size=n,
            max_size=n,
        )
    )
    released = [
        pd.NaT if a is None else pd.Timestamp(NOW.date()) - pd.Timedelta(days=a) for a in ages
    ]
    return pd.DataFrame(
        {
            C.ITEM_ID: ids,
            SCORE: scores,
            C.ARTIST_ID: artists,
            C.GENRE: genres,
            C.EXPLICIT: pd.Series(explicit, dtype=object),
            PLAY_SHARE_ABOVE: above,
            C.RELEASE_DATE: pd.to_datetime(pd.Series(released, dtype=object)),
            C.AVAILABLE_MARKETS: pd.Series(markets, dtype=object),
        }
    )


@st.composite
def configs(draw: st.DrawFn) -> RerankingConfig:
    """Rule switches and parameters around the shipped configuration."""
    raw: dict[str, Any] = {
        "safety": {
            "enforce_markets": draw(st.booleans()),
            "block_explicit_for_adults": draw(st.booleans()),
        },
        "freshness": {
            "enabled": draw(st.booleans()),
            "boost": draw(st.sampled_from([0.0, 0.1, 2.0])),
            "half_life_days": draw(st.sampled_from([1.0, 14.0])),
            "max_age_days": draw(st.sampled_from([0, 30, 60])),
        },
        "mmr": {
            "enabled": draw(st.booleans()),
            "lambda": draw(st.sampled_from([0.0, 0.5, 0.7, 1.0])),
            "genre_similarity": draw(st.sampled_from([0.0, 0.5, 1.0])),
        },
        "artist_cap": {"enabled": draw(st.booleans()), "max_per_artist": draw(st.integers(1, 3))},
        "long_tail": {
            "enabled": draw(st.booleans()),
            "min_long_tail_share": draw(st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0])),
        },
        "fairness": {
            "enabled": draw(st.booleans()),
            "fairness_weight": draw(st.sampled_from([0.0, 1.0, 5.0])),
            "decay": draw(st.sampled_from([0.5, 0.98, 1.0])),
            "target_share": draw(st.sampled_from([None, 0.0, 0.1])),
        },
    }
    return RerankingConfig.model_validate(raw)


def assert_same(slow: Reranker, fast: FastReranker, frame: pd.DataFrame, ctx: Any, k: int) -> None:
    expected = slow.rerank(frame, ctx, k)
    got = fast.rerank(RerankInput.from_frame(frame, ctx.country), ctx, k)
    assert got.item_ids == expected.item_ids
    assert got.reasons == expected.reasons
    assert list(got.reasons) == list(expected.reasons)
    assert got.removed == expected.removed
    assert fast.reranker.tracker.to_dict() == slow.tracker.to_dict()


@hsettings(max_examples=80, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            frames(),
            st.sampled_from([*D.MARKETS, "ZZ", "AR"]),
            st.sampled_from([*D.AGE_BUCKETS, None]),
            st.integers(1, 15),
        ),
        min_size=1,
        max_size=4,
    ),
    config=configs(),
)
def test_the_array_rules_answer_as_the_frame_rules(
    requests: list[tuple[pd.DataFrame, str, str | None, int]], config: RerankingConfig
) -> None:
    slow, fast = Reranker(config), FastReranker(Reranker(config))
    for frame, country, age, k in requests:
        assert_same(slow, fast, frame, RequestContext(country, age, NOW), k)


@hsettings(max_examples=30, deadline=None)
@given(
    requests=st.lists(
        st.tuples(frames(), st.sampled_from(["US", "DE", "ZZ"]), st.integers(1, 12)),
        min_size=2,
        max_size=6,
    )
)
def test_the_shipped_configuration_stays_identical_over_a_session(
    requests: list[tuple[pd.DataFrame, str, int]],
) -> None:
    config = load_reranking(default_reranking_path())
    slow, fast = Reranker(config), FastReranker(Reranker(config))
    for frame, country, k in requests:
        assert_same(slow, fast, frame, RequestContext(country, "25-34", NOW.date()), k)


def test_k_below_one_is_refused_as_by_the_reranker() -> None:
    frame = pd.DataFrame(columns=list(frames_columns()))
    with pytest.raises(ValueError, match="k must be at least 1"):
        FastReranker(Reranker()).rerank(
            RerankInput.from_frame(frame, "US"), RequestContext("US", "25-34", NOW), 0
        )


def frames_columns() -> tuple[str, ...]:
    return (
        C.ITEM_ID,
        SCORE,
        C.ARTIST_ID,
        C.GENRE,
        C.EXPLICIT,
        PLAY_SHARE_ABOVE,
        C.RELEASE_DATE,
        C.AVAILABLE_MARKETS,
    )


def test_arrays_of_unequal_length_are_refused_naming_the_array() -> None:
    with pytest.raises(ValueError, match="scores"):
        RerankInput(
            item_ids=["a", "b"],
            scores=np.zeros(1),
            artist_keys=["x", "y"],
            artist_codes=np.zeros(2, dtype=np.int64),
            genre_codes=np.zeros(2, dtype=np.int64),
            explicit=np.zeros(2, dtype=bool),
            play_share_above=np.zeros(2),
            release_day=np.zeros(2),
            available=np.ones(2, dtype=bool),
        )


@given(st.lists(st.one_of(st.sampled_from(["pop", "rock", "", "jazz"]), st.none())))
def test_label_codes_match_pandas_factorize(values: list[str | None]) -> None:
    expected, _ = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    assert label_codes(values).tolist() == list(expected)


def test_fresh_items_move_up_on_both_paths_with_the_same_tags() -> None:
    """A concrete case the generated ones cover too: a new release overtakes by its boost."""
    old = pd.Timestamp(NOW.date()) - timedelta(days=400)
    frame = pd.DataFrame(
        {
            C.ITEM_ID: ["x", "y", "z"],
            SCORE: [1.0, 0.98, 0.5],
            C.ARTIST_ID: ["a", "b", "c"],
            C.GENRE: ["pop", "pop", "rock"],
            C.EXPLICIT: [False, False, False],
            PLAY_SHARE_ABOVE: [0.5, 0.5, 0.5],
            C.RELEASE_DATE: [old, pd.Timestamp(NOW.date()), old],
            C.AVAILABLE_MARKETS: ["US", "US", "US"],
        }
    )
    config = RerankingConfig.model_validate({"mmr": {"enabled": False}})
    ctx = RequestContext("US", "25-34", NOW)
    expected = Reranker(config).rerank(frame, ctx, 2)
    got = FastReranker(Reranker(config)).rerank(RerankInput.from_frame(frame, "US"), ctx, 2)
    assert expected.item_ids[0] == "y" and "freshness_boost" in expected.reasons["y"]
    assert got == expected
