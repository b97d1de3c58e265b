"""LightGBM LambdaRank, one booster per tier, each with its tier's label gains.

Rows are (request, candidate) pairs grouped by request; labels are the policy's grades. The
two tiers optimise different things (see `configs/labels.yaml`), so each gets its own booster
trained with its own `label_gain`; a request is scored by the booster of its tier. Early
stopping on a later (temporal) validation set picks the number of trees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossfade.data.lake import atomic_write_text
from crossfade.ranking.labels import LABEL, LabelPolicy

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambdarank_truncation_level": 20,
    "num_threads": 2,
    "verbosity": -1,
}


@dataclass
class RankerModel:
    """Boosters per tier plus the feature list they expect."""

    features: list[str]
    boosters: dict[str, Any]
    best_iterations: dict[str, int] = field(default_factory=dict)

    def predict(self, frame: pd.DataFrame, tier_column: str) -> np.ndarray:
        """Score rows with the booster of each row's tier (unknown tier: the first booster)."""
        scores = np.zeros(len(frame), dtype=np.float64)
        fallback = next(iter(self.boosters))
        tiers = frame[tier_column].where(frame[tier_column].isin(self.boosters), fallback)
        for tier, rows in frame.groupby(tiers).groups.items():
            booster = self.boosters[str(tier)]
            positions = frame.index.get_indexer(rows)
            scores[positions] = booster.predict(
                frame.loc[rows, self.features].to_numpy(dtype=np.float32),
                num_iteration=self.best_iterations.get(str(tier)) or None,
            )
        return scores

    def importance(self) -> pd.DataFrame:
        """Gain importance per feature and tier (for the feature-importance plot)."""
        data = {
            tier: booster.feature_importance(importance_type="gain")
            for tier, booster in self.boosters.items()
        }
        return pd.DataFrame(data, index=self.features)

    def save(self, folder: Path) -> Path:
        """Write each booster as LightGBM text plus a JSON of features and iterations."""
        folder.mkdir(parents=True, exist_ok=True)
        for tier, booster in self.boosters.items():
            atomic_write_text(folder / f"booster_{tier}.txt", booster.model_to_string())
        meta = {
            "features": self.features,
            "best_iterations": self.best_iterations,
            "tiers": list(self.boosters),
        }
        atomic_write_text(folder / "ranker.json", json.dumps(meta))
        return folder

    @classmethod
    def load(cls, folder: Path) -> RankerModel:
        """Read a ranker written by `save`."""
        import lightgbm as lgb

        meta = json.loads((folder / "ranker.json").read_text())
        boosters = {
            tier: lgb.Booster(model_str=(folder / f"booster_{tier}.txt").read_text())
            for tier in meta["tiers"]
        }
        return cls(list(meta["features"]), boosters, dict(meta["best_iterations"]))


def _grouped(frame: pd.DataFrame, group: str) -> tuple[pd.DataFrame, np.ndarray]:
    ordered = frame.sort_values(group, kind="stable")
    sizes = ordered.groupby(group, sort=False).size().to_numpy()
    return ordered, sizes


def fit_ranker(
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    features: list[str],
    group: str,
    tier_column: str,
    policy: LabelPolicy,
    params: dict[str, Any] | None = None,
    num_boost_round: int = 300,
    early_stopping_rounds: int = 30,
) -> RankerModel:
    """Train one LambdaRank booster per tier present in `train` (labels in column `label`)."""
    import lightgbm as lgb

    missing = [c for c in [*features, group, tier_column, LABEL] if c not in train.columns]
    if missing:
        raise ValueError(f"ranker training frame lacks columns {missing}")
    boosters: dict[str, Any] = {}
    best: dict[str, int] = {}
    for tier, rows in train.groupby(tier_column):
        ordered, sizes = _grouped(rows, group)
        config = {**DEFAULT_PARAMS, **(params or {}), "label_gain": policy.label_gain(str(tier))}
        data = lgb.Dataset(
            ordered[features].to_numpy(np.float32),
            ordered[LABEL].to_numpy(),
            group=sizes,
            feature_name=features,
            free_raw_data=False,
        )
        valid_sets: list[Any] = []
        callbacks: list[Any] = []
        if valid is not None and (valid[tier_column] == tier).any():
            v_ordered, v_sizes = _grouped(valid[valid[tier_column] == tier], group)
            valid_sets = [
                lgb.Dataset(
                    v_ordered[features].to_numpy(np.float32),
                    v_ordered[LABEL].to_numpy(),
                    group=v_sizes,
                    reference=data,
                )
            ]
            callbacks = [lgb.early_stopping(early_stopping_rounds, verbose=False)]
        booster = lgb.train(
            config,
            data,
            num_boost_round=num_boost_round,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        boosters[str(tier)] = booster
        best[str(tier)] = int(booster.best_iteration or booster.current_iteration())
    if not boosters:
        raise ValueError(
            "no training rows: the ranker needs at least one tier with labelled requests"
        )
    return RankerModel(list(features), boosters, best)
