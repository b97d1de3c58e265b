"""Collective EASE: EASE on rating values, with item and user side information.

The design matrix of plain EASE is the user x item matrix X. Here:

* X holds weight x (1 + slope * (rating - 3)) instead of the weight (unrated rows keep it);
* every item feature f (a genre, a release decade) adds a pseudo-user row that "has" the
  items with f, counted `item_row_weight` times in the Gram matrix, so items sharing
  features look alike even when few users have both;
* every user feature g (gender, occupation, age bucket) adds an input column U[:, g]: the
  model learns weights from "a user like this" to items, never ranks g itself;
* every listening window (`sessions.py`: a few consecutive training interactions of one
  user) adds a pseudo-user row counted `session_weight` times, so items taken up in the
  same sitting look alike beyond sharing a user somewhere in their histories (window rows
  are 0/1: a low rating ties items in a sitting together as much as a high one).

With Gram = [X U]^T [X U] + w [F 0]^T [F 0] + s [W 0]^T [W 0] over items then user
features (W the window rows), EASE's closed form gives B = I - P diag(1 / diag P),
P = (Gram + diag(lambda))^-1, and a user's scores are [X_u U_u] B[:, items] (windows shape
B; they are never a user's input). lambda per item can grow with popularity,
lambda_i = l2 * (pop_i / mean pop) ** popularity_exponent (exponent 0: plain EASE's single
lambda). Without ratings, side information and windows this is exactly EASE.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crossfade.evaluation.baselines import BLOCK_USERS, EASE
from crossfade.evaluation.ratings import linear_values
from crossfade.evaluation.sessions import session_windows
from crossfade.evaluation.side_info import SideInfo, aligned


def item_penalties(popularity: np.ndarray, l2: float, exponent: float) -> np.ndarray:
    """Per-item L2 penalty l2 * (pop_i / mean pop) ** exponent (l2 everywhere at exponent 0
    or when no item has a user)."""
    mean = float(popularity.mean()) if len(popularity) else 0.0
    if exponent == 0.0 or mean <= 0.0:
        return np.full(len(popularity), l2)
    return l2 * np.power(np.maximum(popularity, 0.0) / mean, exponent)


def ease_weights(gram: np.ndarray, penalties: np.ndarray) -> np.ndarray:
    """EASE's closed form on a Gram matrix: B = I - P diag(1 / diag P) with
    P = (gram + diag(penalties))^-1, zero diagonal."""
    g = gram.copy()
    g[np.diag_indices_from(g)] += penalties
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[np.newaxis, :]
    b[np.diag_indices_from(b)] = 0.0
    return b


class CollectiveEASE(EASE):
    """EASE on rating values with item pseudo-user rows, user input columns and listening
    window rows (module docstring). `side` holds the one-hot features; `rating_slope` 0
    means binary values; `session_weight` 0 means no windows."""

    def __init__(
        self,
        l2: float = 500.0,
        rating_slope: float = 0.2,
        item_row_weight: float = 2.0,
        popularity_exponent: float = 0.0,
        side: SideInfo | None = None,
        session_weight: float = 0.0,
        session_size: int = 5,
        session_stride: int = 1,
        block_users: int = BLOCK_USERS,
    ) -> None:
        super().__init__(l2, block_users)
        if item_row_weight < 0:
            raise ValueError(f"item_row_weight must be >= 0, got {item_row_weight}")
        if session_weight < 0:
            raise ValueError(f"session_weight must be >= 0, got {session_weight}")
        if session_size < 1 or not 1 <= session_stride <= session_size:
            raise ValueError(
                "session_size and session_stride must be >= 1 with stride <= size, got"
                f" {session_size} and {session_stride}"
            )
        self.session_weight = session_weight
        self.session_size = session_size
        self.session_stride = session_stride
        self.n_windows = 0  # window rows in the last fit (the rows are dropped after it)
        self._windows: sp.csr_matrix = sp.csr_matrix((0, 0))
        self.rating_slope = rating_slope
        self.item_row_weight = item_row_weight
        self.popularity_exponent = popularity_exponent
        self.side = side if side is not None else SideInfo()
        self.inputs: sp.csr_matrix = sp.csr_matrix((0, 0))

    def _values(self, interactions: pd.DataFrame) -> np.ndarray:
        # the row's weight (1 unless the data says otherwise) scaled by its rating's value
        return super()._values(interactions) * linear_values(interactions, self.rating_slope)

    def _observe(self, interactions: pd.DataFrame) -> None:
        n = len(self.item_ids)
        self._windows = (
            session_windows(interactions, self._item_index, self.session_size, self.session_stride)
            if self.session_weight > 0
            else sp.csr_matrix((0, n))
        )

    def _fit(self) -> None:
        x = sp.csr_matrix(self.matrix, dtype=np.float64)
        items = aligned(self.side.items, self.item_ids)  # n_items x f
        users = aligned(self.side.users, self.user_ids)  # n_users x g
        self.inputs = sp.csr_matrix(sp.hstack([x, users], format="csr"))
        gram = np.asarray((self.inputs.T @ self.inputs).todense(), dtype=np.float64)
        n = len(self.item_ids)
        if items.shape[1]:
            # item x item co-membership in the feature rows, added without a second dense copy
            pseudo = sp.coo_matrix(items @ items.T)  # a product: each (row, col) once
            gram[pseudo.row, pseudo.col] += self.item_row_weight * pseudo.data
        self.n_windows = self._windows.shape[0]
        if self.n_windows:
            together = sp.coo_matrix(self._windows.T @ self._windows)
            gram[together.row, together.col] += self.session_weight * together.data
        self._windows = sp.csr_matrix((0, n))
        penalties = np.concatenate(
            [
                item_penalties(self.popularity, self.l2, self.popularity_exponent),
                np.full(users.shape[1], self.l2),
            ]
        )
        self.weights = ease_weights(gram, penalties)[:, :n]

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.inputs[rows] @ self.weights)
