"""Re-ranking: each rule on tiny frames with known answers, the pipeline, and properties."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossfade.config import Settings, load_settings
from crossfade.data import domains as D
from crossfade.data import lake
from crossfade.data.simulator import simulate
from crossfade.evaluation import metrics as M
from crossfade.reranking import (
    ExposureTracker,
    RequestContext,
    Reranker,
    RerankingConfig,
    RerankingError,
    RerankResult,
    default_reranking_path,
    gini,
    load_reranking,
)
from crossfade.reranking.artist_cap import apply_artist_cap
from crossfade.reranking.fairness import fairness_rerank, position_weight
from crossfade.reranking.freshness import apply_freshness, freshness_bonus
from crossfade.reranking.long_tail import apply_long_tail_quota, is_long_tail, required_long_tail
from crossfade.reranking.mmr import mmr_rerank
from crossfade.reranking.safety import is_minor, safety_filter

NOW = date(2024, 6, 1)
ALL = ",".join(D.MARKETS)


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Candidates with defaults: safe, everywhere, old, head, one genre."""
    defaults = {
        "score": 1.0,
        "artist_id": "a",
        "genre": "pop",
        "explicit": False,
        "play_share_above": 0.0,  # the most played item: short head
        "release_date": NOW - timedelta(days=365),
        "available_markets": ALL,
    }
    return pd.DataFrame([{**defaults, **r} for r in rows])


def ids(df: pd.DataFrame) -> list[str]:
    return [str(i) for i in df["item_id"]]


def config(**sections: Any) -> RerankingConfig:
    return RerankingConfig.model_validate(sections)


@pytest.fixture
def settings_(tmp_path: Path) -> Settings:
    """A small simulated world (the suite's `settings` name is taken by hypothesis here)."""
    from tests.conftest import SMALL_WORLD

    return load_settings("local", data_root=tmp_path / "data", simulator=SMALL_WORLD)


ALL_OFF = {
    name: {"enabled": False} for name in ("freshness", "mmr", "artist_cap", "long_tail", "fairness")
}


# --- safety ------------------------------------------------------------------------------


def test_safety_drops_explicit_for_minors_and_unknown_ages_only() -> None:
    df = frame([{"item_id": "x", "explicit": True}, {"item_id": "c"}])
    for age in ("13-17", "unknown", None):
        kept, removed = safety_filter(df, "US", age)
        assert ids(kept) == ["c"] and removed == {"x": "safety_explicit"}
    kept, removed = safety_filter(df, "US", "25-34")
    assert ids(kept) == ["x", "c"] and removed == {}
    assert is_minor("13-17") and is_minor(None) and not is_minor("55+")


def test_safety_market_and_zz_needs_every_market() -> None:
    df = frame(
        [
            {"item_id": "us", "available_markets": "US, GB"},
            {"item_id": "de", "available_markets": "DE"},
            {"item_id": "all", "available_markets": ALL},
            {"item_id": "none", "available_markets": None},
        ]
    )
    kept, removed = safety_filter(df, "US", "25-34")
    assert ids(kept) == ["us", "all"]
    assert removed == {"de": "safety_market", "none": "safety_market"}
    assert ids(safety_filter(df, "ZZ", "25-34")[0]) == ["all"]
    assert ids(safety_filter(df, "CA", "25-34")[0]) == ["all"]  # unknown country = ZZ
    assert ids(safety_filter(df, "DE", "25-34", enforce_markets=False)[0]) == ids(df)


# --- freshness ---------------------------------------------------------------------------


def test_freshness_bonus_known_values() -> None:
    dates = pd.Series([NOW, NOW - timedelta(days=14), NOW - timedelta(days=61), None])
    bonus = freshness_bonus(dates, NOW, boost=0.2, half_life_days=14, max_age_days=60)
    np.testing.assert_allclose(bonus, [0.2, 0.2 * math.exp(-1), 0.0, 0.0])


def test_freshness_reorders_and_breaks_ties_by_item_id() -> None:
    df = frame(
        [
            {"item_id": "old", "score": 1.0},
            {"item_id": "new", "score": 0.95, "release_date": NOW},
            {"item_id": "b", "score": 0.5},
            {"item_id": "a", "score": 0.5},
        ]
    )
    out = apply_freshness(df, NOW, boost=0.1, half_life_days=7, max_age_days=30)
    assert ids(out) == ["new", "old", "a", "b"]
    assert out.loc[0, "score"] == pytest.approx(1.05)


# --- MMR ---------------------------------------------------------------------------------


def test_mmr_known_answer() -> None:
    df = frame(
        [
            {"item_id": "a1", "score": 1.0, "artist_id": "A", "genre": "pop"},
            {"item_id": "a2", "score": 0.9, "artist_id": "A", "genre": "pop"},
            {"item_id": "b1", "score": 0.5, "artist_id": "B", "genre": "rock"},
            {"item_id": "c1", "score": 0.6, "artist_id": "C", "genre": "pop"},
        ]
    )
    # relevance a1=1, a2=0.8, c1=0.2, b1=0. After a1: a2 = .4-.5, c1 = .1-.25, b1 = 0;
    # then a2 = -.1 beats c1 = -.15.
    assert ids(mmr_rerank(df, lambda_=0.5, genre_similarity=0.5)) == ["a1", "b1", "a2", "c1"]
    assert ids(mmr_rerank(df, lambda_=1.0, genre_similarity=0.5)) == ["a1", "a2", "c1", "b1"]


# --- artist cap --------------------------------------------------------------------------


def test_artist_cap_pushes_extra_items_below_k() -> None:
    df = frame(
        [{"item_id": f"A{i}", "artist_id": "A"} for i in range(3)]
        + [{"item_id": "B", "artist_id": "B"}, {"item_id": "C", "artist_id": "C"}]
    )
    assert ids(apply_artist_cap(df, 3, max_per_artist=2)) == ["A0", "A1", "B", "A2", "C"]
    assert ids(apply_artist_cap(df, 5, max_per_artist=1)) == ["A0", "B", "C", "A1", "A2"]


def test_artist_cap_fills_when_too_few_artists() -> None:
    df = frame([{"item_id": f"A{i}", "artist_id": "A"} for i in range(4)])
    assert ids(apply_artist_cap(df, 3, max_per_artist=1)) == ["A0", "A1", "A2", "A3"]


# --- long tail ---------------------------------------------------------------------------


def test_long_tail_quota_swaps_best_tail_for_lowest_head() -> None:
    df = frame(
        [{"item_id": f"h{i}", "artist_id": f"h{i}"} for i in range(4)]
        + [{"item_id": f"t{i}", "artist_id": f"t{i}", "play_share_above": 0.5} for i in range(3)]
    )
    out = apply_long_tail_quota(df, 4, min_long_tail_share=0.5)
    assert ids(out) == ["h0", "h1", "t0", "t1", "h2", "h3", "t2"]
    assert required_long_tail(4, 7, 0.5) == 2 and required_long_tail(10, 3, 0.2) == 1
    # the metric's line: head while the plays above an item are under 20 % of all plays;
    # an item of unknown popularity is long tail, as in `long_tail_share`
    shares = [None, 0.0, 0.1999, 0.2, 1.0]
    tail = is_long_tail(frame([{"play_share_above": v} for v in shares]))
    assert list(tail) == [True, False, False, True, True]


def test_long_tail_quota_respects_artist_cap() -> None:
    df = frame(
        [
            {"item_id": "h0", "artist_id": "X"},
            {"item_id": "t0", "artist_id": "T", "play_share_above": 0.5},
            {"item_id": "h1", "artist_id": "Y"},
            {"item_id": "t1", "artist_id": "T", "play_share_above": 0.5},
            {"item_id": "t2", "artist_id": "U", "play_share_above": 0.5},
        ]
    )
    out = apply_long_tail_quota(df, 3, min_long_tail_share=1.0, max_per_artist=1)
    assert ids(out)[:3] == ["h0", "t0", "t2"]  # t1 would give T two slots


# --- fairness ----------------------------------------------------------------------------


def test_exposure_tracker_weights_decay_and_round_trip() -> None:
    tracker = ExposureTracker(decay=0.5)
    tracker.record(["A", "B"])
    tracker.record(["B"])
    assert position_weight(0) == 1.0 and position_weight(2) == pytest.approx(0.5)
    assert tracker.exposure["A"] == pytest.approx(0.5)
    assert tracker.exposure["B"] == pytest.approx(0.5 / math.log2(3) + 1.0)
    again = ExposureTracker.from_dict(tracker.to_dict())
    assert again == tracker and again.shares() == tracker.shares()
    assert gini([1, 1, 1]) == 0.0 and gini([0, 0, 3]) == pytest.approx(2 / 3)


def test_fairness_moves_over_exposed_artist_down_within_top_k() -> None:
    df = frame([{"item_id": i, "artist_id": i.upper()} for i in "abcd"])
    shares = {"A": 0.7, "B": 0.1, "C": 0.1, "D": 0.1}
    # rank scores 1, 2/3, 1/3: a pays 2 * (.7 - .25) = .9 and falls below c; d stays out.
    out = fairness_rerank(df, 3, shares=shares, target_share=0.25, fairness_weight=2.0)
    assert ids(out) == ["b", "c", "a", "d"]
    out = fairness_rerank(df, 3, shares=shares, target_share=0.25, fairness_weight=1.0)
    assert ids(out) == ["b", "a", "c", "d"]
    same = fairness_rerank(df, 3, shares=shares, target_share=0.25, fairness_weight=0.0)
    assert ids(same) == ids(df)


# --- config ------------------------------------------------------------------------------


def test_repository_config_loads() -> None:
    cfg = load_reranking(default_reranking_path())
    assert cfg.mmr.lambda_ == 0.7 and cfg.artist_cap.max_per_artist == 2


def test_config_rejects_unknown_keys_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "reranking.yaml"
    path.write_text("mmr:\n  lamda: 0.5\n")
    with pytest.raises(RerankingError, match=r"reranking\.yaml.*mmr\.lamda"):
        load_reranking(path)
    path.write_text("safety:\n  enabled: false\n")  # no switch for the minors' filter
    with pytest.raises(RerankingError, match=r"safety\.enabled"):
        load_reranking(path)
    with pytest.raises(RerankingError, match=r"missing\.yaml"):
        load_reranking(tmp_path / "missing.yaml")


# --- pipeline ----------------------------------------------------------------------------


def test_all_optional_rules_off_returns_safety_filtered_input_order() -> None:
    df = frame(
        [
            {"item_id": "z", "score": 0.1},
            {"item_id": "x", "score": 0.9, "explicit": True},
            {"item_id": "y", "score": 0.5, "available_markets": "DE"},
            {"item_id": "w", "score": 0.7},
        ]
    )
    result = Reranker(config(**ALL_OFF)).rerank(df, RequestContext("US", "13-17", NOW), k=10)
    assert result.item_ids == ["z", "w"]
    assert result.removed == {"x": "safety_explicit", "y": "safety_market"}
    assert result.reasons == {"z": [], "w": []}


def test_pipeline_tags_the_rule_that_moved_an_item() -> None:
    df = frame(
        [{"item_id": f"A{i}", "artist_id": "A", "score": 1 - i / 10} for i in range(3)]
        + [{"item_id": "B", "artist_id": "B", "score": 0.1}]
    )
    sections = {**ALL_OFF, "artist_cap": {"enabled": True, "max_per_artist": 2}}
    result = Reranker(config(**sections)).rerank(df, RequestContext("US", "25-34", NOW), k=3)
    assert result.item_ids == ["A0", "A1", "B"]
    assert result.reasons["B"] == ["artist_cap"] and result.reasons["A2"] == ["artist_cap"]
    assert result.tag_counts()["artist_cap"] == 2


# --- properties --------------------------------------------------------------------------


@st.composite
def requests(draw: st.DrawFn) -> tuple[pd.DataFrame, RequestContext, int]:
    n = draw(st.integers(0, 30))
    n_artists = draw(st.integers(1, 8))
    rows = []
    for i in range(n):
        markets = draw(st.sets(st.sampled_from(D.MARKETS), max_size=len(D.MARKETS)))
        rows.append(
            {
                "item_id": f"i{i:02d}",
                "score": draw(st.floats(-1, 1, allow_nan=False)),
                "artist_id": f"a{draw(st.integers(0, n_artists - 1))}",
                "genre": draw(st.sampled_from(["pop", "rock", "jazz"])),
                "explicit": draw(st.booleans()),
                "play_share_above": draw(st.one_of(st.floats(0, 0.2), st.floats(0, 1))),
                "release_date": NOW - timedelta(days=draw(st.integers(-2, 120))),
                "available_markets": ALL if draw(st.booleans()) else ",".join(sorted(markets)),
            }
        )
    df = frame(rows) if rows else frame([{"item_id": "x"}]).iloc[:0]
    ctx = RequestContext(
        draw(st.sampled_from(D.COUNTRIES)), draw(st.sampled_from([*D.AGE_BUCKETS, None])), NOW
    )
    return df, ctx, draw(st.integers(1, 12))


def capped_count(artists: pd.Series, cap: int) -> int:
    return int(artists.value_counts().clip(upper=cap).sum())


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_pipeline_properties(request: tuple[pd.DataFrame, RequestContext, int]) -> None:
    df, ctx, k = request
    cfg = RerankingConfig()
    reranker = Reranker(cfg)
    reranker.tracker.record(sorted(set(df["artist_id"]))[:3])  # some history for fairness
    result = reranker.rerank(df, ctx, k)
    eligible, _ = safety_filter(df, ctx.country, ctx.age_bucket)
    shown = df.set_index("item_id").loc[result.item_ids]

    assert len(result.item_ids) == len(set(result.item_ids)) == min(k, len(eligible))
    if is_minor(ctx.age_bucket):
        assert not shown["explicit"].any()
    assert set(result.item_ids) <= set(eligible["item_id"])
    assert set(result.removed) == set(df["item_id"]) - set(eligible["item_id"])

    cap = cfg.artist_cap.max_per_artist
    top_n = min(k, len(eligible))
    if capped_count(eligible["artist_id"], cap) >= top_n:
        assert (shown["artist_id"].value_counts() <= cap).all()
        tail = eligible[is_long_tail(eligible)]
        needed = required_long_tail(k, len(eligible), cfg.long_tail.min_long_tail_share)
        if capped_count(tail["artist_id"], cap) >= needed:
            assert int(is_long_tail(shown).sum()) >= needed


@settings(max_examples=20, deadline=None)
@given(requests())
def test_pipeline_is_deterministic(request: tuple[pd.DataFrame, RequestContext, int]) -> None:
    df, ctx, k = request
    runs: list[tuple[list[RerankResult], dict[str, Any]]] = []
    for _ in range(2):
        reranker = Reranker(RerankingConfig())
        results = [reranker.rerank(df, ctx, k) for _ in range(3)]
        runs.append((results, reranker.tracker.to_dict()))
    assert runs[0] == runs[1]
    shuffled = df.sample(frac=1.0, random_state=0)  # input order only matters for ties
    sections = {"fairness": {"enabled": False}}
    a = Reranker(config(**sections)).rerank(df, ctx, k)
    b = Reranker(config(**sections)).rerank(shuffled, ctx, k)
    assert a.item_ids == b.item_ids


def test_fairness_lowers_exposure_gini_over_repeated_requests() -> None:
    rng = np.random.default_rng(7)
    df = frame(
        [
            {
                "item_id": f"i{i:02d}",
                "artist_id": f"a{i % 10}",
                "genre": ["pop", "rock", "jazz"][i % 3],
                "score": float(s),
                "play_share_above": float(p),
            }
            for i, (s, p) in enumerate(zip(rng.random(40), rng.random(40), strict=True))
        ]
    ).sort_values("score", ascending=False)
    ctx = RequestContext("US", "25-34", NOW)

    def exposure_gini(enabled: bool) -> float:
        cfg = config(fairness={"enabled": enabled, "decay": 1.0, "fairness_weight": 2.0})
        reranker = Reranker(cfg)
        for _ in range(30):
            reranker.rerank(df, ctx, k=10)
        exposure = reranker.tracker.exposure
        return gini([exposure.get(f"a{a}", 0.0) for a in range(10)])

    assert exposure_gini(True) < exposure_gini(False)


# --- one long-tail definition --------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.floats(0.05, 0.95))
def test_quota_and_metric_share_one_long_tail(plays: list[int], head_share: float) -> None:
    popularity = pd.Series({f"i{j:02d}": float(p) for j, p in enumerate(plays)})
    head = M.head_items(popularity, head_share)
    shares = M.play_share_above(popularity)
    df = frame([{"item_id": i, "play_share_above": shares[i]} for i in popularity.index])
    tail = is_long_tail(df, head_share)
    assert [str(i) for i in df["item_id"][~tail]] == sorted(head)
    # the head is the most played items, and it holds at least `head_share` of all plays
    if popularity.sum() > 0:
        assert popularity[list(head)].sum() >= head_share * popularity.sum() - 1e-9
        rest = popularity.drop(list(head))
        assert popularity[list(head)].min() >= (rest.max() if len(rest) else 0.0)


def test_quota_raises_the_metrics_long_tail_share_on_the_simulated_world(
    settings_: Settings,
) -> None:
    """Popularity-ordered shelves on a simulated world: the quota alone lifts the offline
    metric's long-tail share to at least the quota, and the configured re-ranker
    (`configs/reranking.yaml`) raises it too."""
    batch = simulate(
        settings_.simulator, settings_.seed, settings_.staging_dir, settings_.truth_dir
    )
    events = lake.read_batch_table(batch, "events").to_pandas()
    items = lake.read_batch_table(batch, "items").to_pandas().drop_duplicates("item_id")
    plays = M.play_counts(events)
    shares = M.play_share_above(plays)
    rng = np.random.default_rng(0)
    users = sorted(set(events["user_id"]))[:40]
    base = items.assign(
        play_share_above=shares.reindex(items["item_id"]).to_numpy(),
        popularity_score=np.log1p(plays.reindex(items["item_id"]).fillna(0.0).to_numpy()),
        release_date=NOW - timedelta(days=365),
        available_markets=ALL,
        explicit=False,
    )
    k = 10
    quota = config(**{**ALL_OFF, "long_tail": {"min_long_tail_share": 0.9}})
    lists: dict[str, dict[str, list[str]]] = {"off": {}, "quota": {}, "default": {}}
    default = Reranker(load_reranking(default_reranking_path()))
    for user in users:
        noise = rng.normal(0, 0.3, len(base))
        pool = (
            base.assign(score=base["popularity_score"] + noise)
            .sort_values("score", ascending=False)
            .head(100)
        )
        ctx = RequestContext("US", "25-34", NOW)
        lists["off"][user] = [str(i) for i in pool["item_id"].head(k)]
        lists["quota"][user] = Reranker(quota).rerank(pool, ctx, k).item_ids
        lists["default"][user] = default.rerank(pool, ctx, k).item_ids
    share = {name: M.long_tail_share(recs, plays, k) for name, recs in lists.items()}
    # popularity order puts the few short-head hits on top of every shelf
    assert share["quota"] >= 0.9 > share["off"], share
    # the shipped configuration meets its own quota and never lowers the share
    floor = load_reranking(default_reranking_path()).long_tail.min_long_tail_share
    assert share["default"] >= max(share["off"], floor), share
