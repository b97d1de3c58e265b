"""The ranker's trees compiled to native code score what LightGBM scores, and are cached."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from crossfade.ranking.compiled import agree, compile_booster, compile_ranker
from crossfade.ranking.ranker import RankerModel

FEATURES = [f"f{n}" for n in range(6)]


def _booster(seed: int, rounds: int = 25) -> lgb.Booster:
    """A small LambdaRank booster over inputs with missing values, as the ranker sees."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2_000, len(FEATURES)))
    x[rng.random(x.shape) < 0.1] = np.nan
    signal = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2])
    y = np.clip(np.round(signal + rng.normal(size=len(x))), 0, 3).astype(int)
    params = {"objective": "lambdarank", "num_leaves": 15, "verbosity": -1, "seed": seed}
    return lgb.train(params, lgb.Dataset(x, y, group=[20] * 100), num_boost_round=rounds)


@pytest.fixture(scope="module")
def ranker() -> RankerModel:
    return RankerModel(
        FEATURES,
        {"premium": _booster(1), "ad_supported": _booster(2)},
        {"premium": 18},  # early stopping kept 18 of premium's 25 trees
    )


def _inputs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(400, len(FEATURES))).astype(np.float32)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    return rows


def test_compiled_trees_score_like_lightgbm_on_every_tier(
    ranker: RankerModel, tmp_path: Path
) -> None:
    compiled = compile_ranker(ranker, tmp_path)
    assert set(compiled) == {"premium", "ad_supported"}
    inputs = _inputs(7)
    assert agree(compiled, ranker, {tier: inputs for tier in compiled}) < 1e-9
    # the best iteration is honoured: premium is not scored with all 25 trees
    full = ranker.boosters["premium"].predict(inputs, num_threads=1)
    assert np.abs(compiled["premium"].predict(inputs) - full).max() > 1e-6


def test_each_model_compiles_once_per_cache(ranker: RankerModel, tmp_path: Path) -> None:
    first = compile_booster(ranker.boosters["ad_supported"], tmp_path, None)
    object_file = tmp_path / f"{first.key}.o"
    stamp = object_file.stat().st_mtime_ns
    again = compile_booster(ranker.boosters["ad_supported"], tmp_path, None)
    assert again.key == first.key
    assert object_file.stat().st_mtime_ns == stamp  # loaded, not compiled again
    inputs = _inputs(8)
    assert np.array_equal(first.predict(inputs), again.predict(inputs))
    # fewer trees are another model: another key, another object
    fewer = compile_booster(ranker.boosters["ad_supported"], tmp_path, 10)
    assert fewer.key != first.key
    assert sorted(p.name for p in tmp_path.glob("*.o")) == sorted(
        [f"{first.key}.o", f"{fewer.key}.o"]
    )
    assert not list(tmp_path.glob(".*.o"))  # no temporary object left behind


def test_an_unreadable_cached_object_is_compiled_again(ranker: RankerModel, tmp_path: Path) -> None:
    first = compile_booster(ranker.boosters["premium"], tmp_path, None)
    object_file = tmp_path / f"{first.key}.o"
    object_file.write_bytes(b"not an object file")
    again = compile_booster(ranker.boosters["premium"], tmp_path, None)
    inputs = _inputs(9)
    assert np.array_equal(again.predict(inputs), first.predict(inputs))
    assert object_file.read_bytes() != b"not an object file"
