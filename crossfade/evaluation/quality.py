"""The "full stack" for offline quality on interactions data: multi-source retrieval, then
either a LightGBM ranker or a blend of the models' per-user z-scores re-orders the union,
scored with the same full-ranking protocol as the baselines.

Retrieval takes, per user, the union of the top-N of EASE, ALS, item kNN and most popular
(training items excluded). The ranker sees, for each (user, candidate), every model's score,
rank and per-user z-score, the item's popularity, the user's activity, and how the candidate
relates to the user's own items (max and mean cosine and conditional co-occurrence with them,
its log popularity against theirs); all from the interactions alone. The blend is a weighted
sum of the models' per-user z-scores, weights on a simplex grid. Both are trained WITHOUT the
test set: the training interactions are split again per user (80/20), once per inner fold
with seeds seed, seed+1, ...; in each fold the base models are fitted on the inner 80% and
candidate rows are built, labelled 1 when the item is in the inner 20%.

Why not inner cross-validation alone: scored on the inner rows, a ranker beat the best base
model by 2-3 %, yet on models refitted on all the training data it gained nothing. The trees
learn thresholds on features whose distribution moves when the models see 25 % more data per
user (raw scores, activity, co-occurrence counts), so what they learn on inner fits does not
carry over; the blend's per-user z-scores do not move that way. So the method (blend, or a
ranker setting and its tree count) is chosen by a transfer check that replays the whole
procedure one level down: the training data is split once more (per user 80/20, seed
seed+1000), the procedure is run on its 80% (inner folds, blend weights, trees) and scored
on its 20% with the base models refitted on that 80%, exactly as the final stack is later
used on test. A ranker's tree count is the best of many checkpoints on those users, so its
best score there flatters it (on ML-100K split seeds 43 and 47 it won the check, 0.2838 vs
0.2774 and 0.2860 vs 0.2854, and lost on test); the number that competes with the blend is
cross-fitted: trees chosen on one random half of the check's users, scored on the other,
both ways (`cross_fitted_trees`). The winner is then trained on the inner folds of all the
training data, the base models are refitted on all of it, and the chosen scorer orders the
candidates of the users being evaluated. The base models' own settings (EASE lambda, ALS factors /
regularization / alpha, kNN size) were chosen on an inner split of the ML-100K training data
(`python -m benchmarks.baselines --tune`), never on its test set. Items outside the union are
never recommended (they rank below every union item), which is why the union's recall is
reported.

When the training interactions carry ratings, or item / user side information is given, the
stack's ALS weighs each interaction by its rating and its EASE is the collective EASE on
rating values with that side information (`ratings.py`, `collective.py`): ratings are
training values only, every test interaction stays a positive. When timestamps order each
user's training interactions, that EASE also learns from listening windows (`sessions.py`:
items taken up within a few steps of each other). The baselines reported beside the stack
stay the plain models; with no ratings, no side information and no order in time the
stack's models are exactly those baselines.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crossfade import columns as C
from crossfade.evaluation.baselines import (
    EASE,
    ALSBaseline,
    ItemKNN,
    MatrixRecommender,
    MostPopular,
)
from crossfade.evaluation.collective import CollectiveEASE
from crossfade.evaluation.protocol import full_ranking_eval, items_by_user
from crossfade.evaluation.ratings import RatingALS, has_ratings
from crossfade.evaluation.sessions import has_sequences
from crossfade.evaluation.side_info import SideInfo
from crossfade.evaluation.splits import ratio_split
from crossfade.ranking.labels import LABEL, LabelPolicy
from crossfade.ranking.ranker import RankerModel, fit_ranker

MODELS: tuple[str, ...] = ("most_popular", "item_knn", "als", "ease")
# how a candidate relates to the user's own items, from the same training matrix. Chosen by
# inner cross-validation (NDCG@10 over 3 inner splits, binary 15 leaves, N=100): 0.2710
# without them, 0.2722 with; user kNN (k=100), EASE at lambda 100 and 2000 and a 64-factor
# ALS as extra scored signals (0.2716), mean z / best rank / reciprocal-rank sum across
# models (0.2715), or everything together (0.2718) did no better, so they are not kept.
HISTORY_FEATURES: tuple[str, ...] = (
    "cosine_max",
    "cosine_mean",
    "conditional_max",
    "conditional_mean",
    "popularity_gap",
    "user_popularity",
)
FEATURES: list[str] = [
    *(f"{m}_{kind}" for m in MODELS for kind in ("score", "rank", "z")),
    "item_popularity",
    "user_activity",
    *HISTORY_FEATURES,
]
GROUP = "_group"
FOLD = "_fold"
TIER = "_tier"
TIER_VALUE = "premium"
BLOCK_USERS = 256
# LambdaRank (listwise) and a pointwise log-loss on the same grouped rows: with one to a few
# dozen positives per user among hundreds of candidates the pointwise loss is often the more
# stable learner, so the objective is tuned like any other setting (on inner validation).
OBJECTIVES: tuple[str, ...] = ("lambdarank", "binary")


@dataclass(frozen=True)
class RankerSetting:
    """One ranker configuration tried on the inner validation users."""

    num_leaves: int = 31
    learning_rate: float = 0.05
    candidates_per_model: int = 200
    objective: str = "lambdarank"
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.9

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"ranker objective {self.objective!r} is not one of {', '.join(OBJECTIVES)}"
            )

    def record(self) -> dict[str, float | str]:
        """This setting as a row of the tuning table."""
        return {
            "num_leaves": float(self.num_leaves),
            "learning_rate": self.learning_rate,
            "candidates_per_model": float(self.candidates_per_model),
            "objective": self.objective,
            "min_data_in_leaf": float(self.min_data_in_leaf),
            "feature_fraction": self.feature_fraction,
        }

    def params(self, seed: int) -> dict[str, Any]:
        """LightGBM parameters (on top of the ranker defaults) for this setting."""
        return {
            "objective": self.objective,
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
        }


# N=200 and LambdaRank lost to N=100 pointwise on inner cross-validation (0.2748 and 0.2716
# vs 0.2760 with the earlier features), so the grid now compares regularisation only
DEFAULT_GRID: tuple[RankerSetting, ...] = (
    RankerSetting(15, 0.05, 100, "binary"),
    RankerSetting(15, 0.03, 100, "binary", min_data_in_leaf=500, feature_fraction=0.5),
)
TREE_STEP = 10  # tree counts compared on the transfer check: TREE_STEP, 2 * TREE_STEP, ...
BLEND = "blend"
RANKER = "ranker"
# the blend's models: on ad-hoc transfer checks inside the ML-100K training data (a
# pseudo-test split with seed 1000, everything learnt on inner splits of the rest) these three
# gave 0.2725 (best base model 0.2685, ranker 0.2680); adding most popular's z raised the
# inner score but fell to 0.2677, an RP3beta z (0.2726) and reciprocal-rank fusion (0.2729)
# were within noise, separate weights for light and heavy users were worse (0.2694), and
# LightGBM boosting on from the blend (as init_score) gave at most 0.2727
BLEND_MODELS: tuple[str, ...] = ("item_knn", "als", "ease")
BLEND_STEP = 0.1
VALIDATION_SEED_OFFSET = 1000  # the transfer check splits the training data with seed + this


# The stack's ALS and EASE learn from what a dataset has beyond its positives: ratings as
# training values and the side files' item / user facts (both degrade to the plain models
# when absent). Chosen on the ML-100K training data only (full-catalogue NDCG@10 of the
# item kNN + ALS + EASE z-score blend, weights on the 0.1 simplex, mean of the three inner
# splits; confirmed on the transfer check's split): plain models 0.2710, rating-confidence
# ALS (1 + log1p(rating / 3)) with collective EASE on 1 + 0.2 (rating - 3) 0.2763, slope
# 0.3 0.2781 (check 0.2764 vs 0.2754 at 0.2 and 0.2708 plain); lambda 300-700, pseudo-row
# weight 1-4, slope 0.1-0.5 all within 0.003. A per-item lambda growing with popularity
# (lambda (pop / mean pop) ** e, e 0.25-0.75, lambda 100-500) did no better: 0.2758-0.2779
# inner, 0.2740 / 0.2754 on the check, so the exponent stays 0.
EASE_RATING_SLOPE = 0.3
EASE_ITEM_ROW_WEIGHT = 2.0
EASE_POPULARITY_EXPONENT = 0.0
# Listening windows in the collective EASE's Gram matrix (windows of 5 consecutive training
# interactions starting at every one, each row counted 0.5 times). Measured on the same
# inner splits of the ML-100K seed-42 training data, the collective EASE alone (NDCG@10,
# mean of inner splits 42 and 43; the transfer check's split in brackets): no windows 0.2706
# (0.2747); 5 / 1 / 0.5 0.2768 (0.2777); 3 / 1 / 1.0 0.2774 (0.2761); 10 / 5 / 1.0 0.2772
# (0.2748); 10 / 1 / 0.2-0.4 0.2761-0.2769; l2 300-1000 with windows within 0.001, so l2
# stays 500. Over all three splits 5 / 1 / 0.5 and 3 / 1 / 1.0 tie (0.2771, 0.2770; 10 / 5 /
# 1.0 0.2764); 5 / 1 / 0.5 has the best check and was the one first tried in the stack
# (seeds 43-47 were looked at too: EASE alone 0.4551 / 0.4529 / 0.4554). Weekly activity
# columns as user inputs instead (the time a user is active, without the order) did nothing
# (0.2679-0.2712). Windows in item kNN's similarity lifted kNN alone (0.2497 to 0.2636
# inner) but not the blend (seeds 43-47 mean 0.4585 against 0.4591 with windows in EASE
# only), so kNN stays plain. Ties in time (70 % of ML-100K's training rows share their
# second with another row of the user) are ordered by item; a seeded random order instead
# gave the same (three-split mean 0.2770 vs 0.2771, seeds 43-47 EASE alone 0.4550 vs
# 0.4551): the windows'
# signal is the sitting, not the item ids.
EASE_SESSION_WEIGHT = 0.5
EASE_SESSION_SIZE = 5
EASE_SESSION_STRIDE = 1
# metric names of the stack's own ALS and EASE when they differ from the plain baselines
ENRICHED: dict[str, str] = {"als": "als_rating", "ease": "ease_collective"}


def baseline_models(seed: int = 42) -> dict[str, MatrixRecommender]:
    """The four baselines the stack must beat, plain (every interaction a binary positive,
    no side information), with the settings that won on an inner 80/20 split of the
    ML-100K training data (benchmarks.baselines --tune): kNN 200 neighbours, ALS defaults,
    EASE lambda 500."""
    return {
        "most_popular": MostPopular(),
        "item_knn": ItemKNN(neighbours=200),
        "als": ALSBaseline(seed=seed),
        "ease": EASE(l2=500.0),
    }


def base_models(seed: int = 42, side: SideInfo | None = None) -> dict[str, MatrixRecommender]:
    """The stack's four retrieval sources: the baselines, except that ALS weighs each
    interaction by its rating and EASE is the collective EASE on rating values with `side`
    and listening windows (both exactly the plain models when there are no ratings, no
    side information and no order in time)."""
    return {
        **baseline_models(seed),
        "als": RatingALS(seed=seed),
        "ease": CollectiveEASE(
            l2=500.0,
            rating_slope=EASE_RATING_SLOPE,
            item_row_weight=EASE_ITEM_ROW_WEIGHT,
            popularity_exponent=EASE_POPULARITY_EXPONENT,
            side=side,
            session_weight=EASE_SESSION_WEIGHT,
            session_size=EASE_SESSION_SIZE,
            session_stride=EASE_SESSION_STRIDE,
        ),
    }


def enriched(train: pd.DataFrame, side: SideInfo | None) -> dict[str, str]:
    """The stack's models that differ from the plain baselines on this data (model name ->
    metric name, ENRICHED): ALS only with ratings, EASE with ratings, side information or
    an order in time. Empty when the stack's models are exactly the baselines."""
    rated = has_ratings(train)
    differs = {
        "als": rated,
        "ease": rated
        or (EASE_SESSION_WEIGHT > 0 and has_sequences(train))
        or (side is not None and not side.empty),
    }
    return {name: label for name, label in ENRICHED.items() if differs[name]}


def model_scores(model: MatrixRecommender, rows: np.ndarray) -> np.ndarray:
    """Dense [len(rows), n_items] scores of a fitted base model (the ranker and the blend
    need every candidate's score, not only top-k lists)."""
    return model.scores(rows)


@dataclass(frozen=True)
class History:
    """Item-item statistics of one binary training matrix, behind the
    interaction features (how a candidate relates to the items the user already has)."""

    binary: sp.csr_matrix
    cosine: np.ndarray
    conditional: np.ndarray
    log_popularity: np.ndarray


def history(matrix: sp.csr_matrix) -> History:
    """Cosine and conditional co-occurrence (share of i's users who also have j) between
    items, zero on the diagonal, plus log popularity."""
    binary = sp.csr_matrix((matrix > 0).astype(np.float64))
    gram = np.asarray((binary.T @ binary).todense(), dtype=np.float64)
    counts = np.diag(gram).copy()
    safe = np.where(counts > 0, counts, 1.0)
    cosine = gram / np.sqrt(safe)[:, np.newaxis] / np.sqrt(safe)[np.newaxis, :]
    conditional = gram / safe[:, np.newaxis]
    np.fill_diagonal(cosine, 0.0)
    np.fill_diagonal(conditional, 0.0)
    return History(binary, cosine, conditional, np.log1p(counts))


def _row_max(matrix: np.ndarray, binary: sp.csr_matrix) -> np.ndarray:
    """Per user row of `binary`, the column-wise max of `matrix` over the user's items."""
    out = np.zeros((binary.shape[0], matrix.shape[1]))
    for n in range(binary.shape[0]):
        cols = binary.indices[binary.indptr[n] : binary.indptr[n + 1]]
        if len(cols):
            out[n] = matrix[cols].max(axis=0)
    return out


def history_features(h: History, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Dense [len(rows), n_items] candidate-vs-history features for the users at `rows`."""
    x = h.binary[rows]
    activity = np.maximum(np.asarray(x.sum(axis=1)), 1.0)
    user_pop = np.asarray(x @ h.log_popularity).reshape(-1, 1) / activity
    return {
        "cosine_max": _row_max(h.cosine, x),
        "cosine_mean": np.asarray(x @ h.cosine) / activity,
        "conditional_max": _row_max(h.conditional, x),
        "conditional_mean": np.asarray(x @ h.conditional) / activity,
        "popularity_gap": h.log_popularity[np.newaxis, :] - user_pop,
        "user_popularity": np.broadcast_to(user_pop, x.shape),
    }


def _ranks(scores: np.ndarray) -> np.ndarray:
    """0-based position of every column in each row's descending order (ties by index)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[np.newaxis, :], axis=1)
    return ranks


def _standardised(scores: np.ndarray, banned: np.ndarray) -> np.ndarray:
    """Per-user z-score over the allowed items: comparable across users and across the
    inner (smaller) and full training fits, unlike raw scores."""
    allowed = np.where(banned, np.nan, scores)
    mean = np.nanmean(allowed, axis=1, keepdims=True)
    std = np.nanstd(allowed, axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


def _banned(
    block: Sequence[str], exclude: Mapping[str, set[str]], index: Mapping[str, int], n_items: int
) -> np.ndarray:
    """[len(block), n_items] mask of each user's excluded items."""
    banned = np.zeros((len(block), n_items), dtype=bool)
    for n, user in enumerate(block):
        banned[n, [index[i] for i in exclude.get(user, ()) if i in index]] = True
    return banned


def _block_frame(
    models: Mapping[str, MatrixRecommender],
    h: History,
    block: Sequence[str],
    rows: np.ndarray,
    banned: np.ndarray,
    n_per_model: int,
) -> pd.DataFrame:
    """Candidate rows of one block of users: union of the models' top-N, every feature."""
    first = next(iter(models.values()))
    scores = {name: model_scores(model, rows) for name, model in models.items()}
    ranks = {name: _ranks(np.where(banned, -np.inf, s)) for name, s in scores.items()}
    union = np.zeros_like(banned)
    for r in ranks.values():
        union |= r < n_per_model
    union &= ~banned
    u_pos, i_pos = np.nonzero(union)
    data: dict[str, Any] = {
        C.USER_ID: np.asarray(block, dtype=object)[u_pos],
        C.ITEM_ID: np.asarray(first.item_ids, dtype=object)[i_pos],
    }
    for name, s in scores.items():
        data[f"{name}_score"] = s[u_pos, i_pos]
        data[f"{name}_rank"] = ranks[name][u_pos, i_pos].astype(np.float64)
        data[f"{name}_z"] = _standardised(s, banned)[u_pos, i_pos]
    data["item_popularity"] = first.popularity[i_pos] / max(float(first.matrix.shape[0]), 1.0)
    data["user_activity"] = np.asarray(h.binary[rows].sum(axis=1)).ravel()[u_pos]
    for name, values in history_features(h, rows).items():
        data[name] = values[u_pos, i_pos]
    return pd.DataFrame(data)


def build_candidates(
    models: Mapping[str, MatrixRecommender],
    users: Sequence[str],
    exclude: Mapping[str, set[str]],
    n_per_model: int,
    h: History | None = None,
) -> pd.DataFrame:
    """Candidate rows (user, item, features) for users known to the fitted models: the union
    of each model's top-`n_per_model` over the catalogue minus exclude[user]; `h` is the
    models' training history when the caller already has it."""
    first = next(iter(models.values()))
    for model in models.values():
        if model.item_ids != first.item_ids or model.user_ids != first.user_ids:
            raise ValueError("base models must be fitted on the same interactions")
    user_index = {u: i for i, u in enumerate(first.user_ids)}
    item_index = {t: i for i, t in enumerate(first.item_ids)}
    h = h if h is not None else history(first.matrix)
    known = [u for u in users if u in user_index]
    frames: list[pd.DataFrame] = []
    for start in range(0, len(known), BLOCK_USERS):
        block = known[start : start + BLOCK_USERS]
        rows = np.array([user_index[u] for u in block], dtype=np.int64)
        banned = _banned(block, exclude, item_index, len(first.item_ids))
        frames.append(_block_frame(models, h, block, rows, banned, n_per_model))
    if not frames:
        return pd.DataFrame(columns=[C.USER_ID, C.ITEM_ID, *FEATURES])
    return pd.concat(frames, ignore_index=True)


def _restrict(frame: pd.DataFrame, n_per_model: int) -> pd.DataFrame:
    """Rows of a candidate frame that are in the union of the top-`n_per_model` lists."""
    best = frame[[f"{m}_rank" for m in MODELS]].min(axis=1)
    return frame[best < n_per_model]


def _label(frame: pd.DataFrame, positives: Mapping[str, set[str]]) -> pd.DataFrame:
    pairs = zip(frame[C.USER_ID], frame[C.ITEM_ID], strict=True)
    labels = np.fromiter(
        (1 if i in positives.get(u, ()) else 0 for u, i in pairs), dtype=np.int32, count=len(frame)
    )
    out = frame.copy()
    out[LABEL] = labels
    out[GROUP] = frame[C.USER_ID]
    out[TIER] = TIER_VALUE
    return out


def _with_positives(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of the requests with at least one positive (the others teach LambdaRank nothing)."""
    return rows[rows.groupby(GROUP)[LABEL].transform("max") > 0]


def _top_lists(
    frame: pd.DataFrame, scores: np.ndarray, k: int, key: str = C.USER_ID
) -> dict[str, list[str]]:
    """Best k items per `key` (user, or inner request) by score (ties by the EASE rank,
    then item id)."""
    ordered = frame.assign(_s=scores).sort_values(
        [key, "_s", "ease_rank", C.ITEM_ID], ascending=[True, False, True, True]
    )
    top = ordered.groupby(key, sort=False).head(k)
    return {str(u): list(map(str, g)) for u, g in top.groupby(key, sort=False)[C.ITEM_ID]}


def _ndcg(frame: pd.DataFrame, scores: np.ndarray, held: Mapping[str, set[str]], k: int) -> float:
    """Mean NDCG@k over the requests in `held` (GROUP ids) of ordering `frame` by `scores`,
    ties by EASE rank then item id as in `_top_lists`; vectorised, since the blend search
    calls it once per weighting. Requests in `held` without rows count as 0."""
    codes, requests = pd.factorize(frame[GROUP])
    items = pd.factorize(frame[C.ITEM_ID], sort=True)[0]
    order = np.lexsort((items, frame["ease_rank"].to_numpy(), -np.asarray(scores), codes))
    ordered = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    position = np.arange(len(ordered)) - np.repeat(starts, np.diff(np.r_[starts, len(ordered)]))
    top = position < k
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = frame[LABEL].to_numpy(dtype=np.float64)[order][top] * discounts[position[top]]
    dcg = np.bincount(ordered[top], weights=gains, minlength=len(requests))
    at = {str(r): n for n, r in enumerate(requests)}
    ideal = np.r_[0.0, np.cumsum(discounts)]
    values = [dcg[at[r]] / ideal[min(len(s), k)] if r in at else 0.0 for r, s in held.items()]
    return float(np.mean(values)) if values else 0.0


def blend_grid(
    models: Sequence[str] = BLEND_MODELS, step: float = BLEND_STEP
) -> list[dict[str, float]]:
    """Every weighting of `models` on a `step` grid of the simplex (weights sum to 1)."""
    n = round(1.0 / step)
    return [
        {m: c / n for m, c in zip(models, combo, strict=True)}
        for combo in itertools.product(range(n + 1), repeat=len(models))
        if sum(combo) == n
    ]


def blend_scores(frame: pd.DataFrame, weights: Mapping[str, float]) -> np.ndarray:
    """Weighted sum of the models' per-user z-scores: scale-free, so weights chosen on inner
    fits carry over to models refitted on more data (tree thresholds on raw features do not)."""
    total = np.zeros(len(frame))
    for model, weight in weights.items():
        total += weight * frame[f"{model}_z"].to_numpy(dtype=np.float64)
    return total


def best_blend(
    frame: pd.DataFrame, held: Mapping[str, set[str]], k: int
) -> tuple[dict[str, float], float]:
    """The grid weighting with the best NDCG@k on labelled candidate rows, and that NDCG."""
    scored = [(_ndcg(frame, blend_scores(frame, w), held, k), w) for w in blend_grid()]
    ndcg, weights = max(scored, key=lambda pair: pair[0])
    return weights, ndcg


def _policy() -> LabelPolicy:
    from crossfade.config import default_config_dir
    from crossfade.ranking.labels import load_label_policy

    return load_label_policy(default_config_dir() / "labels.yaml")


def _request(fold: int, user: str) -> str:
    """Id of one inner request (a user in one inner split), as in the GROUP column."""
    return f"{fold}:{user}"


def _new_items(test: pd.DataFrame, seen: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Each user's held-out items that they do not already have, users with none dropped."""
    held = {u: s - seen.get(u, set()) for u, s in items_by_user(test).items()}
    return {u: s for u, s in held.items() if s}


def _train_ranker(
    rows: pd.DataFrame, setting: RankerSetting, policy: LabelPolicy, trees: int, seed: int
) -> RankerModel:
    """One pointwise or LambdaRank booster on labelled candidate rows with positives."""
    return fit_ranker(
        _with_positives(rows),
        None,
        FEATURES,
        GROUP,
        TIER,
        policy,
        params=setting.params(seed),
        num_boost_round=trees,
    )


def _tree_curves(
    ranker: RankerModel, valid: pd.DataFrame, helds: Sequence[Mapping[str, set[str]]], k: int
) -> list[dict[int, float]]:
    """For each of `helds` (requests and their held-out items), NDCG@k on `valid` after
    TREE_STEP, 2 * TREE_STEP, ... trees of the ranker; the trees predict once for all."""
    booster = ranker.boosters[TIER_VALUE]
    x = valid[FEATURES].to_numpy(dtype=np.float32)
    total = np.zeros(len(x))
    curves: list[dict[int, float]] = [{} for _ in helds]
    done = 0
    for t in range(TREE_STEP, booster.current_iteration() + 1, TREE_STEP):
        # raw scores add up tree by tree: predict each new slice of trees once
        total = total + booster.predict(
            x, start_iteration=done, num_iteration=t - done, raw_score=True
        )
        for curve, held in zip(curves, helds, strict=True):
            curve[t] = _ndcg(valid, total, held, k)
        done = t
    return curves


def _best_checkpoint(curve: Mapping[int, float]) -> int:
    """The tree count with the best NDCG on a curve (ties to fewer trees)."""
    return max(curve, key=lambda t: (curve[t], -t))


def _halves(users: Sequence[str], seed: int) -> tuple[set[str], set[str]]:
    """Users split at random into two halves (sizes differ by at most one)."""
    order = np.random.default_rng(seed).permutation(sorted(users))
    middle = len(order) // 2
    return set(order[:middle]), set(order[middle:])


def cross_fitted_trees(
    ranker: RankerModel, valid: pd.DataFrame, held: Mapping[str, set[str]], k: int, seed: int
) -> tuple[int, float, float]:
    """(tree count, fair NDCG@k, best-checkpoint NDCG@k) of a ranker on the transfer check.

    The tree count is the best checkpoint over all the check's users. Its NDCG there is
    optimistic (the best of many noisy checkpoints), so the number that competes with the
    blend is cross-fitted: the tree count chosen on one half of the users is scored on the
    other half, both ways, weighted by the halves' sizes."""
    half_a, half_b = _halves(list(held), seed)
    # NDCG averages over the requests in `held` only, so a half's curve needs no row filter
    curve, curve_a, curve_b = _tree_curves(
        ranker, valid, [held, {u: held[u] for u in half_a}, {u: held[u] for u in half_b}], k
    )
    trees = _best_checkpoint(curve)
    return trees, cross_fitted(curve_a, len(half_a), curve_b, len(half_b)), curve[trees]


def cross_fitted(
    curve_a: Mapping[int, float], n_a: int, curve_b: Mapping[int, float], n_b: int
) -> float:
    """Mean NDCG over both halves' users when each half is scored at the checkpoint that
    did best on the OTHER half (ties to fewer trees): half b at a's pick, half a at b's."""
    pick_a, pick_b = _best_checkpoint(curve_a), _best_checkpoint(curve_b)
    return (n_b * curve_b[pick_a] + n_a * curve_a[pick_b]) / max(n_a + n_b, 1)


@dataclass
class FullStack:
    """Retrieval union + LightGBM ranker or z-score blend, fitted on training interactions only.

    `fit` leaves `tuning` (the transfer check's NDCG of the blend and of every ranker setting,
    cross-fitted over its tree count, beside the flattering best-checkpoint NDCG), `method`
    (BLEND or RANKER, the winner), `setting` and `trees` (the ranker's, when it wins),
    `weights` (the blend's, chosen on the final inner rows), `validation_baselines` (each
    base model's NDCG in the transfer check),
    `training_frame` (the labelled rows of every inner fold of the training data; column
    `_fold` says which), `inner_baselines` (each base model's NDCG on those rows) and
    `inner_blend_ndcg` (the chosen weights' NDCG on them).
    """

    k: int = 10
    seed: int = 42
    grid: Sequence[RankerSetting] = DEFAULT_GRID
    inner_share: float = 0.2
    inner_folds: int = 3
    num_boost_round: int = 300
    blend: bool = True
    side: SideInfo = field(default_factory=SideInfo)
    models: dict[str, MatrixRecommender] = field(default_factory=dict)
    ranker: RankerModel | None = None
    method: str = RANKER
    setting: RankerSetting = field(default_factory=RankerSetting)
    trees: int = 0
    weights: dict[str, float] = field(default_factory=dict)
    training_frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    tuning: list[dict[str, float | str]] = field(default_factory=list)
    inner_baselines: dict[str, float] = field(default_factory=dict)
    validation_baselines: dict[str, float] = field(default_factory=dict)
    inner_blend_ndcg: float = 0.0
    _history: History | None = field(default=None, repr=False)

    @property
    def candidates_per_model(self) -> int:
        """N of the chosen method: the ranker setting's, or the largest in the grid (100 with
        an empty grid, as the inner rows use)."""
        if self.method == RANKER:
            return self.setting.candidates_per_model
        return max([s.candidates_per_model for s in self.grid], default=100)

    def fit_models(self, interactions: pd.DataFrame) -> dict[str, MatrixRecommender]:
        """The stack's base models (with its side information) fitted on `interactions`."""
        return {name: m.fit(interactions) for name, m in base_models(self.seed, self.side).items()}

    def fit(self, interactions: pd.DataFrame) -> Self:
        """Choose the method on the transfer check, train it on inner splits of
        `interactions`, then refit the base models on all of `interactions` for serving."""
        if self.inner_folds < 1:
            raise ValueError(f"inner_folds must be at least 1, got {self.inner_folds}")
        if not self.grid and not self.blend:
            raise ValueError("nothing to choose from: the ranker grid is empty and blend is off")
        policy = _policy()
        self.choose(interactions, policy)
        frame, held = self.inner_rows(interactions)
        self.training_frame = frame
        self.inner_baselines = {
            m: _ndcg(frame, -frame[f"{m}_rank"].to_numpy(), held, self.k) for m in MODELS
        }
        if self.blend:
            self.weights, self.inner_blend_ndcg = best_blend(frame, held, self.k)
        self.ranker = None
        if self.method == RANKER:
            rows = _restrict(frame, self.setting.candidates_per_model)
            self.ranker = _train_ranker(rows, self.setting, policy, self.trees, self.seed)
        self.models = self.fit_models(interactions)
        # item-item statistics of the refitted models, once for every later candidates() call
        self._history = history(next(iter(self.models.values())).matrix)
        return self

    def choose(self, interactions: pd.DataFrame, policy: LabelPolicy) -> None:
        """Transfer check: run the procedure on a per-user 80% of `interactions` (inner folds,
        blend weights, trees) and score it on the other 20% with the base models refitted on
        that 80%, as the final stack is used; record `tuning` and keep the best method."""
        split = ratio_split(interactions, self.inner_share, self.seed + VALIDATION_SEED_OFFSET)
        frame, held = self.inner_rows(split.train)
        models = self.fit_models(split.train)
        seen = items_by_user(split.train)
        valid_held = _new_items(split.test, seen)
        n_max = max([s.candidates_per_model for s in self.grid], default=100)
        valid = _label(build_candidates(models, sorted(valid_held), seen, n_max), valid_held)
        self.validation_baselines = {
            m: _ndcg(valid, -valid[f"{m}_rank"].to_numpy(), valid_held, self.k) for m in MODELS
        }
        key = f"validation_ndcg@{self.k}"
        self.tuning = []
        best: tuple[float, str, RankerSetting, int] | None = None
        if self.blend:
            weights, inner = best_blend(frame, held, self.k)
            score = _ndcg(valid, blend_scores(valid, weights), valid_held, self.k)
            self.tuning.append(
                {
                    "method": BLEND,
                    "weights": weights_text(weights),
                    f"inner_ndcg@{self.k}": inner,
                    key: score,
                }
            )
            best = (score, BLEND, self.setting, 0)
        for setting in self.grid:
            rows = _restrict(frame, setting.candidates_per_model)
            ranker = _train_ranker(rows, setting, policy, self.num_boost_round, self.seed)
            trees, fair, optimistic = cross_fitted_trees(
                ranker,
                _restrict(valid, setting.candidates_per_model),
                valid_held,
                self.k,
                self.seed + VALIDATION_SEED_OFFSET,
            )
            self.tuning.append(
                {
                    "method": RANKER,
                    **setting.record(),
                    "trees": float(trees),
                    key: fair,
                    f"best_checkpoint_ndcg@{self.k}": optimistic,
                }
            )
            if best is None or fair > best[0]:
                best = (fair, RANKER, setting, trees)
        assert best is not None  # fit() refuses an empty grid with the blend off
        _, self.method, self.setting, self.trees = best

    def inner_rows(self, interactions: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, set[str]]]:
        """Labelled candidate rows of every inner split (seeds seed, seed+1, ...) and the
        held-out items of each inner request ("fold:user")."""
        n_max = max([s.candidates_per_model for s in self.grid], default=100)
        folds: list[pd.DataFrame] = []
        held_all: dict[str, set[str]] = {}
        for fold in range(self.inner_folds):
            # each fold is another seeded per-user split of the training data: more labelled
            # requests, all from training interactions
            inner = ratio_split(interactions, self.inner_share, self.seed + fold)
            inner_models = self.fit_models(inner.train)
            seen = items_by_user(inner.train)
            held = _new_items(inner.test, seen)
            part = _label(build_candidates(inner_models, sorted(held), seen, n_max), held)
            part[FOLD] = fold
            part[GROUP] = part[FOLD].astype(str) + ":" + part[C.USER_ID].astype(str)
            held_all.update({_request(fold, u): s for u, s in held.items()})
            folds.append(part)
        return pd.concat(folds, ignore_index=True), held_all

    def candidates(self, user_ids: Iterable[str], exclude: Mapping[str, set[str]]) -> pd.DataFrame:
        """Candidate rows (with features) of the refitted base models for these users."""
        return build_candidates(
            self.models,
            [str(u) for u in user_ids],
            exclude,
            self.candidates_per_model,
            self._history,
        )

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """The chosen method's score of every candidate row (higher ranks first)."""
        if self.method == BLEND:
            return blend_scores(frame, self.weights)
        if self.ranker is None:
            raise RuntimeError("fit the full stack before asking for recommendations")
        return self.ranker.predict(frame.assign(**{TIER: TIER_VALUE}), TIER)

    def recommend(
        self, user_ids: Iterable[str], k: int, exclude: Mapping[str, set[str]] | None = None
    ) -> dict[str, list[str]]:
        """Top-k per user: the chosen method's order of the union candidates, never an
        excluded item; users unknown to training get the most-popular list."""
        if not self.models:
            raise RuntimeError("fit the full stack before asking for recommendations")
        exclude = exclude or {}
        users = [str(u) for u in user_ids]
        frame = self.candidates(users, exclude).reset_index(drop=True)
        out = _top_lists(frame, self.score(frame), k) if len(frame) else {}
        cold = [u for u in users if u not in out]
        if cold:
            out.update(self.models["most_popular"].recommend(cold, k, exclude))
        return {u: out.get(u, []) for u in users}


def weights_text(weights: Mapping[str, float]) -> str:
    """Blend weights as "item_knn 0.3, als 0.4, ease 0.3", for the tuning record and reports."""
    return ", ".join(f"{m} {w:g}" for m, w in weights.items())


@dataclass
class QualityResult:
    """Metrics per model, the union's recall, and the fitted full stack (for inspection)."""

    metrics: dict[str, dict[str, float]]
    stack: FullStack


def union_recall(stack: FullStack, train: pd.DataFrame, test: pd.DataFrame) -> float:
    """Mean share of each test user's new test items that the candidate union contains."""
    seen = items_by_user(train)
    relevant = {u: s - seen.get(u, set()) for u, s in items_by_user(test).items()}
    relevant = {u: s for u, s in relevant.items() if s}
    frame = stack.candidates(sorted(relevant), seen)
    got = {str(u): set(map(str, g)) for u, g in frame.groupby(C.USER_ID)[C.ITEM_ID]}
    return float(np.mean([len(s & got.get(u, set())) / len(s) for u, s in relevant.items()]))


def run_quality_details(
    train: pd.DataFrame,
    test: pd.DataFrame,
    k: int = 10,
    seed: int = 42,
    grid: Sequence[RankerSetting] = DEFAULT_GRID,
    blend: bool = True,
    side: SideInfo | None = None,
) -> QualityResult:
    """Fit the four plain baselines and the full stack on `train` only (the stack also on
    `train`'s ratings and the side information `side`), and score them with full ranking on
    `test` (training items excluded; every test interaction a positive, whatever its rating);
    `blend` False leaves the ranker grid as the stack's only choice. The stack's ALS or
    EASE, when it differs from its baseline (`enriched`), is scored alone too."""
    side = side if side is not None else SideInfo()
    metrics: dict[str, dict[str, float]] = {}
    for name, model in baseline_models(seed).items():
        metrics[name] = full_ranking_eval(model.fit(train), train, test, k)
    stack = FullStack(k=k, seed=seed, grid=grid, blend=blend, side=side).fit(train)
    for name, label in enriched(train, side).items():
        metrics[label] = full_ranking_eval(stack.models[name], train, test, k)
    metrics["full_stack"] = full_ranking_eval(stack, train, test, k)
    n = stack.candidates_per_model
    metrics["full_stack"][f"union_recall@{n}x{len(MODELS)}"] = union_recall(stack, train, test)
    return QualityResult(metrics, stack)


def run_quality(
    train: pd.DataFrame,
    test: pd.DataFrame,
    k: int = 10,
    seed: int = 42,
    side: SideInfo | None = None,
) -> dict[str, dict[str, float]]:
    """precision@k, recall@k, ndcg@k of most_popular, item_knn, als, ease and full_stack
    (plus als_rating when `train` has ratings, ease_collective when it has ratings, an order
    in time or `side` features)."""
    return run_quality_details(train, test, k, seed, side=side).metrics
