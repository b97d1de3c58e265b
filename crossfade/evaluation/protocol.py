"""Full-ranking offline evaluation: rank the whole catalogue per user, minus training items.

This is the protocol behind the MovieLens-100K quality anchors in STACK-NOTES.md (all
ratings as positives, per-user random 80/20 split, seed 42, P/R/NDCG@10). Metrics are
computed here with small private helpers (binary relevance, log2 DCG) so this module has
no dependency on the general metrics module.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.evaluation.splits import ratio_split

if TYPE_CHECKING:
    from crossfade.evaluation.side_info import SideInfo


class Recommender(Protocol):
    """Anything that learns from (user_id, item_id, weight) rows and ranks the catalogue."""

    def fit(self, interactions: pd.DataFrame) -> object:
        """Learn from the training interactions."""
        ...

    def recommend(
        self, user_ids: Iterable[str], k: int, exclude: Mapping[str, set[str]]
    ) -> dict[str, list[str]]:
        """Top-k item ids per user over the whole catalogue, never an excluded item."""
        ...


def ml100k_path() -> Path:
    """MovieLens-100K as shipped inside the recbole wheel (read in place, never copied)."""
    return Path(str(importlib.resources.files("recbole") / "dataset_example" / "ml-100k"))


def ml100k_events() -> pd.DataFrame:
    """ML-100K ratings imported through the recbole importer, as (user_id, item_id, ts,
    weight, rating).

    Every rating counts as a positive (weight 1.0): the anchors ignore `skipped`. The rating
    (1-5) is kept as a column for models that learn from it; it never decides relevance.
    """
    from crossfade.evaluation.datasets import load_dataset

    return load_dataset("recbole", ml100k_path(), side=False).events


def ml100k_side_info() -> SideInfo:
    """One-hot side information of ML-100K from the wheel's own `.item` (genres, release
    year) and `.user` (gender, occupation, age) files."""
    from crossfade.evaluation.datasets import side_info_of

    return side_info_of("recbole", ml100k_path())


def ml100k_split(seed: int = 42, test_share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) of ML-100K with the per-user random 80/20 split used by the anchors."""
    split = ratio_split(ml100k_events(), test_share, seed)
    return split.train.reset_index(drop=True), split.test.reset_index(drop=True)


def items_by_user(frame: pd.DataFrame) -> dict[str, set[str]]:
    """Each user's set of item ids in `frame` (used as exclusions or as relevant items)."""
    pairs = frame[[C.USER_ID, C.ITEM_ID]].drop_duplicates()
    return {str(u): set(map(str, g)) for u, g in pairs.groupby(C.USER_ID)[C.ITEM_ID]}


def full_ranking_topk(
    model: Recommender, train: pd.DataFrame, test: pd.DataFrame, k: int = 10
) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """Top-k lists for every user with test items (training items excluded), and the
    relevant test items per user (test items the user did not already have in training)."""
    seen = items_by_user(train)
    relevant = {u: items - seen.get(u, set()) for u, items in items_by_user(test).items()}
    relevant = {u: items for u, items in relevant.items() if items}
    users = sorted(relevant)
    lists = model.recommend(users, k, {u: seen.get(u, set()) for u in users})
    return lists, relevant


def full_ranking_eval(
    model: Recommender, train: pd.DataFrame, test: pd.DataFrame, k: int = 10
) -> dict[str, float]:
    """Mean precision@k, recall@k and NDCG@k of a fitted `model` over users with test items,
    ranking the full catalogue minus each user's training items."""
    lists, relevant = full_ranking_topk(model, train, test, k)
    return _mean_metrics(lists, relevant, k)


def _mean_metrics(
    lists: Mapping[str, list[str]], relevant: Mapping[str, set[str]], k: int
) -> dict[str, float]:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    precision, recall, ndcg = [], [], []
    for user, items in relevant.items():
        ranked = lists.get(user, [])[:k]
        gains = np.array([1.0 if i in items else 0.0 for i in ranked])
        hits = float(gains.sum())
        precision.append(hits / k)
        recall.append(hits / len(items))
        ideal = float(discounts[: min(len(items), k)].sum())
        ndcg.append(float(gains @ discounts[: len(gains)]) / ideal)
    return {
        f"precision@{k}": float(np.mean(precision)) if precision else 0.0,
        f"recall@{k}": float(np.mean(recall)) if recall else 0.0,
        f"ndcg@{k}": float(np.mean(ndcg)) if ndcg else 0.0,
        "users": float(len(relevant)),
    }
