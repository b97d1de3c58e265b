"""Cold start: the content -> CF mapper and the new-listener source."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.candidates.cold_start import ColdStartError, ColdStartMapper, NewListenerSource
from crossfade.candidates.content import ContentModel
from crossfade.candidates.popularity import PopularityTables
from crossfade.config import Settings, SimulatorSettings
from crossfade.data import domains as D
from crossfade.data.lake import read_batch_table
from crossfade.data.simulator import World, simulate

NOW = datetime(2026, 2, 1, 12, tzinfo=UTC)


def _synthetic(seed: int, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Content vectors and CF factors that are a linear function of them plus noise."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(n, 40))
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    mixing = np.random.default_rng(99).normal(size=(40, 16))
    cf = content @ mixing + noise * rng.normal(size=(n, 16))
    return content, cf


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_mapper_predicts_factors_of_unseen_items_better_than_random() -> None:
    content, cf = _synthetic(seed=0, n=800, noise=0.5)
    mapper = ColdStartMapper.fit(content, cf, alpha=1.0, seed=0)
    assert mapper.n_holdout == 80
    assert mapper.holdout_cosine > mapper.random_cosine + 0.5
    assert mapper.holdout_r2 > 0.5
    new_content, new_cf = _synthetic(seed=1, n=200, noise=0.5)
    predicted = mapper.predict(new_content)
    assert predicted.dtype == np.float32 and predicted.shape == (200, 16)
    true = _cosines(predicted, new_cf).mean()
    shuffled = _cosines(predicted, new_cf[np.random.default_rng(2).permutation(200)]).mean()
    assert true > 0.8 and true > shuffled + 0.5
    again = ColdStartMapper.fit(content, cf, alpha=1.0, seed=0)
    np.testing.assert_array_equal(mapper.predict(new_content), again.predict(new_content))


def test_mapper_match_norm_and_round_trip(tmp_path: Path) -> None:
    content, cf = _synthetic(seed=3, n=300, noise=1.0)
    mapper = ColdStartMapper.fit(content, cf, alpha=5.0, seed=0)
    scaled = mapper.predict(content, match_norm=True)
    np.testing.assert_allclose(np.linalg.norm(scaled, axis=1), mapper.mean_norm, rtol=1e-4)
    mapper.save(tmp_path / "cs")
    loaded = ColdStartMapper.load(tmp_path / "cs")
    np.testing.assert_array_equal(loaded.predict(content), mapper.predict(content))
    assert loaded.quality() == mapper.quality()


def test_mapper_rejects_bad_input() -> None:
    content, cf = _synthetic(seed=0, n=20, noise=0.1)
    with pytest.raises(ColdStartError, match="same order"):
        ColdStartMapper.fit(content, cf[:10], alpha=1.0)
    with pytest.raises(ColdStartError, match="NaN"):
        ColdStartMapper.fit(np.full_like(content, np.nan), cf, alpha=1.0)
    mapper = ColdStartMapper.fit(content, cf, alpha=1.0)
    with pytest.raises(ColdStartError, match="width 40"):
        mapper.predict(content[:, :5])
    small = ColdStartMapper.fit(content[:6], cf[:6], alpha=1.0)  # too few rows to hold out
    assert small.n_holdout == 0 and np.isnan(small.holdout_cosine)


# --- on a simulated world -----------------------------------------------------------------

SIM = SimulatorSettings(
    users=300, days=7, artists=60, tracks=600, episodes=40, start_date=date(2026, 1, 5)
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("cold-start-world")
    batch = simulate(SIM, 17, root / "staging", root / "truth")
    frames = {
        t: read_batch_table(batch, t).to_pandas()
        for t in ("events", "users", "items", "onboarding")
    }
    now = datetime.combine(SIM.start_date + timedelta(days=SIM.days), datetime.min.time(), UTC)
    tables = PopularityTables.fit(frames["events"], frames["users"], frames["items"], now)
    return {**frames, "tables": tables, "truth": World.load(root / "truth" / batch.name)}


def test_mapper_recovers_true_factors_of_held_out_simulated_items(world: dict) -> None:
    items: pd.DataFrame = world["items"]
    truth: World = world["truth"]
    factors = truth.latent.item_factors[truth.item_index(items[C.ITEM_ID].to_numpy())]
    model = ContentModel.fit(items, dim=32, seed=0)
    vectors = model.transform(items)
    mapper = ColdStartMapper.fit(vectors, factors, alpha=1.0, seed=0)
    assert mapper.holdout_cosine > mapper.random_cosine + 0.3


def test_new_listener_blends_onboarding_picks_with_cohort(world: dict) -> None:
    tables: PopularityTables = world["tables"]
    items: pd.DataFrame = world["items"].set_index(C.ITEM_ID)
    users: pd.DataFrame = world["users"].set_index(C.USER_ID)
    onboarding: pd.DataFrame = world["onboarding"]
    assert len(onboarding) > 0
    user_id = onboarding[C.USER_ID].iloc[0]
    picks = onboarding.loc[onboarding[C.USER_ID] == user_id, C.ARTIST_ID].tolist()
    user = users.loc[user_id]
    profile = (user[C.COUNTRY], user[C.AGE_BUCKET], user[C.TIER])

    def run(blend: float, chosen: list[str]) -> tuple[list[str], np.ndarray]:
        source = NewListenerSource(tables, cohort_blend=blend)
        return source.candidates(user_id, *profile, picks=chosen, k=40)

    def share_by_picks(ids: list[str]) -> float:
        return float(items.loc[ids, C.ARTIST_ID].isin(picks).mean())

    cohort_only, _ = run(0.5, [])
    assert cohort_only == tables.cohort(*profile, 40)[0]
    blended, scores = run(0.5, picks)
    picks_only, _ = run(1.0, picks)
    assert np.all(np.diff(scores) <= 0) and len(blended) == 40
    assert share_by_picks(cohort_only) < share_by_picks(blended) < share_by_picks(picks_only) + 1e-9
    assert share_by_picks(blended) >= 0.3
    pick_items = tables.by_artists(picks, 40, country=profile[0])[0]
    assert picks_only[: len(pick_items)] == pick_items[:40]
    market = profile[0] if profile[0] in D.MARKETS else None
    for item in blended:
        available = items.loc[item, C.AVAILABLE_MARKETS].split(",")
        assert (market in available) if market else set(D.MARKETS) <= set(available)


def test_new_listener_settings_and_validation(world: dict, settings: Settings) -> None:
    source = NewListenerSource.from_settings(world["tables"], settings.candidates)
    assert source.cohort_blend == settings.candidates.cohort_blend
    assert source.is_new(settings.candidates.new_user_max_plays - 1)
    assert not source.is_new(settings.candidates.new_user_max_plays)
    with pytest.raises(ColdStartError, match="cohort_blend"):
        NewListenerSource(world["tables"], cohort_blend=1.5)
    ids, scores = source.candidates("u-new", "ZZ", "unknown", "ad_supported", ["no-such"], k=5)
    assert len(ids) == len(scores) <= 5
