"""Collaborative filtering: implicit ALS on the confidence-weighted listener x item matrix."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crossfade import columns as C
from crossfade.candidates.weights import WEIGHT
from crossfade.config import ALSSettings
from crossfade.data.lake import atomic_write_bytes, atomic_write_text


@dataclass
class CollaborativeModel:
    """Listener and item factors learned by ALS, with their id maps."""

    user_ids: list[str]
    item_ids: list[str]
    user_factors: np.ndarray  # float32 [n_users, d]
    item_factors: np.ndarray  # float32 [n_items, d]
    training_loss: float | None = None

    def __post_init__(self) -> None:
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self._item_index = {t: i for i, t in enumerate(self.item_ids)}

    @property
    def dim(self) -> int:
        """Number of latent factors."""
        return int(self.item_factors.shape[1])

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The listener's factor vector, or None for a listener unseen in training."""
        index = self._user_index.get(user_id)
        return None if index is None else self.user_factors[index]

    def item_vectors(self, item_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Factors of the known items among `item_ids` and a mask of which were known."""
        index = np.array([self._item_index.get(i, -1) for i in item_ids], dtype=np.int64)
        known = index >= 0
        return self.item_factors[index[known]], known

    def score(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        """user · item for each item (NaN for unknown items or an unknown listener)."""
        out = np.full(len(item_ids), np.nan, dtype=np.float32)
        vector = self.user_vector(user_id)
        if vector is None:
            return out
        factors, known = self.item_vectors(item_ids)
        out[known] = factors @ vector
        return out

    def save(self, folder: Path) -> None:
        """Write factors and ids (npz + json) atomically into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        import io

        buffer = io.BytesIO()
        np.savez(buffer, user_factors=self.user_factors, item_factors=self.item_factors)
        atomic_write_bytes(folder / "factors.npz", buffer.getvalue())
        meta = {
            "user_ids": self.user_ids,
            "item_ids": self.item_ids,
            "training_loss": self.training_loss,
        }
        atomic_write_text(folder / "ids.json", json.dumps(meta))

    @classmethod
    def load(cls, folder: Path) -> CollaborativeModel:
        """Read a model written by `save`."""
        arrays = np.load(folder / "factors.npz")
        meta = json.loads((folder / "ids.json").read_text())
        return cls(
            meta["user_ids"],
            meta["item_ids"],
            arrays["user_factors"],
            arrays["item_factors"],
            meta["training_loss"],
        )


def fit_als(interactions: pd.DataFrame, settings: ALSSettings, seed: int) -> CollaborativeModel:
    """Train implicit ALS on (user_id, item_id, weight) rows.

    Confidence is 1 + alpha * log1p(weight): the log keeps a track played 500 times (a loop,
    or a bot) from drowning every other signal of that listener.
    """
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    if interactions.empty:
        raise ValueError("no interactions to train on: the lake has no usable listening events")
    users, user_codes = np.unique(interactions[C.USER_ID].to_numpy(), return_inverse=True)
    items, item_codes = np.unique(interactions[C.ITEM_ID].to_numpy(), return_inverse=True)
    confidence = 1.0 + settings.alpha * np.log1p(interactions[WEIGHT].to_numpy(dtype=np.float32))
    matrix = sp.csr_matrix(
        (confidence.astype(np.float32), (user_codes, item_codes)), shape=(len(users), len(items))
    )
    model = AlternatingLeastSquares(
        factors=settings.factors,
        regularization=settings.regularization,
        iterations=settings.iterations,
        random_state=seed,
        calculate_training_loss=True,
    )
    with threadpool_limits(1, "blas"):  # implicit's own threads beat BLAS threads here
        model.fit(matrix, show_progress=False)
    loss = getattr(model, "_training_loss", None)
    return CollaborativeModel(
        [str(u) for u in users],
        [str(i) for i in items],
        np.asarray(model.user_factors, dtype=np.float32),
        np.asarray(model.item_factors, dtype=np.float32),
        float(loss) if loss is not None else None,
    )
