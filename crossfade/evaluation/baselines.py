"""Ranking baselines for offline evaluation: most popular, item kNN, ALS-only and EASE.

Each baseline learns from (user_id, item_id, weight) rows and ranks the WHOLE catalogue
for a user, minus the items given in `exclude` (normally their training items). Scoring is
vectorised over blocks of users so the dense score matrix never exceeds
`block_users x n_items`. Users unseen in training fall back to the popularity order.
Ties are broken by item id order, so every ranking is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crossfade import columns as C
from crossfade.candidates.weights import WEIGHT

BLOCK_USERS = 1024


class MatrixRecommender:
    """Shared plumbing: id maps, the user x item matrix and blockwise top-k ranking."""

    def __init__(self, block_users: int = BLOCK_USERS) -> None:
        self.block_users = block_users
        self.user_ids: list[str] = []
        self.item_ids: list[str] = []
        self.matrix: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float64)
        self.popularity: np.ndarray = np.zeros(0)
        self._user_index: dict[str, int] = {}
        self._item_index: dict[str, int] = {}

    def fit(self, interactions: pd.DataFrame) -> Self:
        """Index users and items, build the (summed) weight matrix, then fit the model."""
        if interactions.empty:
            raise ValueError("no interactions to fit a baseline on")
        users, user_codes = np.unique(interactions[C.USER_ID].astype(str), return_inverse=True)
        items, item_codes = np.unique(interactions[C.ITEM_ID].astype(str), return_inverse=True)
        weights = self._values(interactions)
        matrix = sp.csr_matrix((weights, (user_codes, item_codes)), shape=(len(users), len(items)))
        matrix.sum_duplicates()
        self.user_ids, self.item_ids = [str(u) for u in users], [str(i) for i in items]
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self._item_index = {t: i for i, t in enumerate(self.item_ids)}
        self.matrix = matrix
        self.popularity = np.asarray((matrix > 0).sum(axis=0), dtype=np.float64).ravel()
        self._observe(interactions)
        self._fit()
        return self

    def _observe(self, interactions: pd.DataFrame) -> None:
        """Read what the model needs from the raw rows beyond the matrix (their order in
        time, say), once the ids are indexed and before `_fit`; nothing by default."""

    def _values(self, interactions: pd.DataFrame) -> np.ndarray:
        """The matrix value of each interaction row: its weight (1 without a weight column);
        models that learn from other values (ratings) override this."""
        if WEIGHT in interactions:
            return interactions[WEIGHT].to_numpy(dtype=np.float64)
        return np.ones(len(interactions))

    def _fit(self) -> None:
        """Model-specific training on `self.matrix` (nothing to do by default)."""

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        """Dense [len(rows), n_items] scores for the known users at matrix rows `rows`."""
        return np.broadcast_to(self.popularity, (len(rows), len(self.item_ids))).copy()

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Dense [len(rows), n_items] float64 scores of the fitted model for the users at
        matrix rows `rows` (indices into `user_ids`), training items included."""
        if not self.item_ids:
            raise RuntimeError("fit the baseline before asking for scores")
        return np.asarray(self._scores(np.asarray(rows, dtype=np.int64)), dtype=np.float64)

    def recommend(
        self, user_ids: Iterable[str], k: int, exclude: Mapping[str, set[str]] | None = None
    ) -> dict[str, list[str]]:
        """Top-k item ids per user over the full catalogue, never an item in exclude[user]."""
        if not self.item_ids:
            raise RuntimeError("fit the baseline before asking for recommendations")
        exclude = exclude or {}
        users = [str(u) for u in user_ids]
        rows = np.array([self._user_index.get(u, -1) for u in users], dtype=np.int64)
        out: dict[str, list[str]] = {}
        for start in range(0, len(users), self.block_users):
            block_users = users[start : start + self.block_users]
            block_rows = rows[start : start + self.block_users]
            known = block_rows >= 0
            scores = np.empty((len(block_users), len(self.item_ids)), dtype=np.float64)
            scores[~known] = self.popularity
            if known.any():
                scores[known] = self._scores(block_rows[known])
            for n, user in enumerate(block_users):
                banned = [
                    self._item_index[i] for i in exclude.get(user, ()) if i in self._item_index
                ]
                if banned:
                    scores[n, banned] = -np.inf
            top = _top_k(scores, k)
            for n, user in enumerate(block_users):
                picks = top[n][np.isfinite(scores[n, top[n]])]
                out[user] = [self.item_ids[j] for j in picks]
        return out


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best scores per row, best first, ties by lower index."""
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # widen to every column tied with the k-th score, so ties resolve by index
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        result = np.empty((scores.shape[0], k), dtype=np.int64)
        for n in range(scores.shape[0]):
            cand = np.flatnonzero(scores[n] >= kth[n, 0])
            order = np.lexsort((cand, -scores[n, cand]))
            result[n] = cand[order[:k]]
        return result
    return np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores))


class MostPopular(MatrixRecommender):
    """Rank items by how many training users interacted with them: the floor to beat."""


class ItemKNN(MatrixRecommender):
    """Item-based kNN: cosine similarity between binary item columns; each candidate item j
    keeps its top-`neighbours` most similar items N(j), and
    score(u, j) = sum of sim(i, j) over the items i in N(j) that u has interacted with."""

    def __init__(self, neighbours: int = 100, block_users: int = BLOCK_USERS) -> None:
        super().__init__(block_users)
        self.neighbours = neighbours
        self.similarity: sp.csr_matrix = sp.csr_matrix((0, 0))

    def _fit(self) -> None:
        binary = (self.matrix > 0).astype(np.float64).tocsc()
        norms = np.sqrt(np.asarray(binary.multiply(binary).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        normed = binary @ sp.diags(1.0 / norms)
        normed_t = sp.csr_matrix(normed.T)
        n_items = normed.shape[1]
        keep = min(self.neighbours, n_items - 1)
        data, indices, indptr = [], [], [0]
        step = max(1, 2**22 // max(n_items, 1))  # ~32 MiB dense block of similarities
        for start in range(0, n_items, step):
            stop = min(start + step, n_items)
            block = np.asarray((normed_t[start:stop] @ normed).todense())
            block[np.arange(stop - start), np.arange(start, stop)] = 0.0  # no self-similarity
            top = _top_k(block, keep) if keep > 0 else np.zeros((stop - start, 0), np.int64)
            for n in range(stop - start):
                cols = top[n][block[n, top[n]] > 0]
                cols.sort()
                indices.append(cols)
                data.append(block[n, cols])
                indptr.append(indptr[-1] + len(cols))
        pruned = sp.csr_matrix(
            (
                np.concatenate(data) if data else np.zeros(0),
                np.concatenate(indices) if indices else np.zeros(0, np.int64),
                np.array(indptr),
            ),
            shape=(n_items, n_items),
        )
        # row j of `pruned` holds j's nearest neighbours; transposed, X @ similarity sums,
        # for each candidate j, the similarities of j's neighbours found in the history
        self.similarity = sp.csr_matrix(pruned.T)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        binary = (self.matrix[rows] > 0).astype(np.float64)
        return np.asarray((binary @ self.similarity).todense())


class ALSBaseline(MatrixRecommender):
    """Implicit ALS (crossfade.candidates.als.fit_als) alone, scored as user . item factors.

    Defaults won on an inner per-user 80/20 split (seed 42) of the ML-100K seed-42 TRAINING
    data, never its test set: factors {16, 32, 64, 128} x regularization {1, 10, 50} x alpha
    {1, 5, 20}, 15 iterations (`python -m benchmarks.baselines --tune`).
    """

    def __init__(
        self,
        factors: int = 16,
        regularization: float = 10.0,
        alpha: float = 1.0,
        iterations: int = 15,
        seed: int = 42,
        block_users: int = BLOCK_USERS,
    ) -> None:
        super().__init__(block_users)
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.user_factors = np.zeros((0, factors), dtype=np.float32)
        self.item_factors = np.zeros((0, factors), dtype=np.float32)

    def _fit(self) -> None:
        from crossfade.candidates.als import fit_als
        from crossfade.config import ALSSettings

        coo = self.matrix.tocoo()
        interactions = pd.DataFrame(
            {
                C.USER_ID: np.asarray(self.user_ids, dtype=object)[coo.row],
                C.ITEM_ID: np.asarray(self.item_ids, dtype=object)[coo.col],
                WEIGHT: coo.data,
            }
        )
        settings = ALSSettings(
            factors=self.factors,
            regularization=self.regularization,
            iterations=self.iterations,
            alpha=self.alpha,
        )
        model = fit_als(interactions, settings, self.seed)
        # fit_als sorts ids exactly as np.unique did in fit(), so rows line up
        assert model.user_ids == self.user_ids and model.item_ids == self.item_ids
        self.user_factors = model.user_factors
        self.item_factors = model.item_factors

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(
            self.user_factors[rows].astype(np.float64) @ self.item_factors.T.astype(np.float64)
        )


class EASE(MatrixRecommender):
    """EASE (Steck 2019): closed-form item-item linear model with a zero diagonal.

    B = I - P diag(1 / diag(P)) with P = (X^T X + lambda I)^-1, so diag(B) = 0 and
    score(u) = X_u B. Dense in n_items^2: fine for catalogues up to a few tens of thousands.
    """

    def __init__(self, l2: float = 500.0, block_users: int = BLOCK_USERS) -> None:
        super().__init__(block_users)
        self.l2 = l2
        self.weights = np.zeros((0, 0))

    def _fit(self) -> None:
        x = self.matrix
        gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[np.newaxis, :]
        b[np.diag_indices_from(b)] = 0.0
        self.weights = b

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[rows] @ self.weights)
