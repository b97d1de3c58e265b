"""Cold start: new items get a collaborative vector on day one; new listeners get candidates.

- `ColdStartMapper` learns a ridge regression from content embeddings to the collaborative-
  filtering (ALS) item factors of warm items. A release nobody has played yet gets a predicted
  CF vector, so the ANN index over CF factors can retrieve it the day it comes out. The fit
  quality on held-out warm items (mean cosine, R²) is kept on the mapper, next to the cosine
  a random pairing would get, so a report can show the mapping is better than chance.
- `NewListenerSource` serves listeners with too few plays for a taste model: what their cohort
  (country, age bucket, tier) streams, blended with the items of the artists they picked at
  onboarding.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import Ridge

from crossfade.candidates.popularity import PopularityTables
from crossfade.config import CandidateSettings
from crossfade.data.lake import atomic_write_bytes

FORMAT_VERSION = 1
MAPPER_FILE = "cold_start_mapper.npz"
HOLDOUT_SHARE = 0.1
MIN_HOLDOUT = 5
# New listeners: reciprocal-rank fusion constant (larger flattens the head of each list).
RRF_K = 10.0
DEFAULT_POOL = 200
_EPS = 1e-12


class ColdStartError(ValueError):
    """Bad input to cold start; the message names the input and the fix."""


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two equally shaped matrices."""
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.asarray(num / np.maximum(den, _EPS), dtype=np.float64)


def _r2(true: np.ndarray, pred: np.ndarray) -> float:
    """Variance-weighted R² over all output dimensions."""
    ss_res = float(((true - pred) ** 2).sum())
    ss_tot = float(((true - true.mean(axis=0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


@dataclass
class ColdStartMapper:
    """Linear map content space -> CF item-factor space, with its held-out quality."""

    coef: np.ndarray  # (cf_dim, content_dim)
    intercept: np.ndarray  # (cf_dim,)
    alpha: float
    mean_norm: float  # mean norm of the warm CF vectors (for `predict(match_norm=True)`)
    holdout_cosine: float  # mean cosine(predicted, true) on held-out warm items
    holdout_r2: float  # variance-weighted R² on held-out warm items
    random_cosine: float  # same, with predictions paired to random other items (chance level)
    n_train: int
    n_holdout: int

    @classmethod
    def fit(
        cls,
        content_vectors: np.ndarray,
        cf_vectors: np.ndarray,
        alpha: float,
        seed: int = 0,
        holdout_share: float = HOLDOUT_SHARE,
    ) -> ColdStartMapper:
        """Fit ridge regression on warm items (rows paired by position).

        A seeded `holdout_share` of the rows (at least MIN_HOLDOUT when there are enough) is
        held out to measure quality; the returned mapper is then refit on all rows.
        """
        x = np.asarray(content_vectors, dtype=np.float64)
        y = np.asarray(cf_vectors, dtype=np.float64)
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
            raise ColdStartError(
                f"ColdStartMapper.fit: content_vectors {x.shape} and cf_vectors {y.shape} must "
                "be 2-d with one row per warm item, in the same order"
            )
        if len(x) < 2:
            raise ColdStartError("ColdStartMapper.fit: need at least 2 warm items to fit")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ColdStartError("ColdStartMapper.fit: vectors contain NaN or inf; fix the inputs")
        if alpha < 0:
            raise ColdStartError(f"ColdStartMapper.fit: alpha must be >= 0, got {alpha}")
        rng = np.random.default_rng(seed)
        n = len(x)
        n_holdout = round(n * holdout_share)
        n_holdout = min(max(n_holdout, MIN_HOLDOUT), n // 2) if n >= 2 * MIN_HOLDOUT else 0
        holdout_cos = holdout_r2 = random_cos = float("nan")
        if n_holdout > 0:
            perm = rng.permutation(n)
            test, train = perm[:n_holdout], perm[n_holdout:]
            probe = Ridge(alpha=alpha).fit(x[train], y[train])
            pred = probe.predict(x[test])
            holdout_cos = float(_cosine_rows(pred, y[test]).mean())
            holdout_r2 = _r2(y[test], pred)
            shuffled = y[rng.permutation(n)[:n_holdout]]
            random_cos = float(_cosine_rows(pred, shuffled).mean())
        model = Ridge(alpha=alpha).fit(x, y)
        coef = np.atleast_2d(model.coef_)
        return cls(
            coef=coef.astype(np.float64),
            intercept=np.atleast_1d(model.intercept_).astype(np.float64),
            alpha=float(alpha),
            mean_norm=float(np.linalg.norm(y, axis=1).mean()),
            holdout_cosine=holdout_cos,
            holdout_r2=holdout_r2,
            random_cosine=random_cos,
            n_train=n,
            n_holdout=n_holdout,
        )

    def predict(self, content_vectors: np.ndarray, match_norm: bool = False) -> np.ndarray:
        """Predicted CF vectors (float32), one per content row.

        Ridge shrinks predictions towards the mean; with `match_norm` each vector is rescaled
        to the mean norm of the warm factors, so inner-product retrieval does not bury it.
        """
        x = np.asarray(content_vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.coef.shape[1]:
            raise ColdStartError(
                f"ColdStartMapper.predict: expected content vectors of width {self.coef.shape[1]}, "
                f"got shape {x.shape}; embed with the content model the mapper was fit on"
            )
        out = x @ self.coef.T + self.intercept
        if match_norm:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.maximum(norms, _EPS) * self.mean_norm
        return out.astype(np.float32)

    def quality(self) -> dict[str, float]:
        """Fit quality for reports and model cards."""
        return {
            "holdout_cosine": self.holdout_cosine,
            "holdout_r2": self.holdout_r2,
            "random_cosine": self.random_cosine,
            "n_train": float(self.n_train),
            "n_holdout": float(self.n_holdout),
        }

    def save(self, folder: Path) -> Path:
        """Write the mapper to `folder/cold_start_mapper.npz` atomically (no pickles)."""
        meta = {
            "format_version": FORMAT_VERSION,
            "alpha": self.alpha,
            "mean_norm": self.mean_norm,
            "holdout_cosine": self.holdout_cosine,
            "holdout_r2": self.holdout_r2,
            "random_cosine": self.random_cosine,
            "n_train": self.n_train,
            "n_holdout": self.n_holdout,
        }
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), coef=self.coef, intercept=self.intercept)
        path = Path(folder) / MAPPER_FILE
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, folder: Path) -> ColdStartMapper:
        """Read a mapper written by `save`."""
        path = Path(folder) / MAPPER_FILE
        if not path.is_file():
            raise ColdStartError(f"no cold-start mapper at {path}; fit and save one first")
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format_version") != FORMAT_VERSION:
                raise ColdStartError(
                    f"{path} has format {meta.get('format_version')}, expected "
                    f"{FORMAT_VERSION}; refit the mapper"
                )
            return cls(
                coef=data["coef"],
                intercept=data["intercept"],
                alpha=float(meta["alpha"]),
                mean_norm=float(meta["mean_norm"]),
                holdout_cosine=float(meta["holdout_cosine"]),
                holdout_r2=float(meta["holdout_r2"]),
                random_cosine=float(meta["random_cosine"]),
                n_train=int(meta["n_train"]),
                n_holdout=int(meta["n_holdout"]),
            )


def _rrf(ids: list[str], weight: float) -> dict[str, float]:
    """Weighted reciprocal-rank scores of a ranked list."""
    return {item: weight / (RRF_K + rank) for rank, item in enumerate(ids)}


@dataclass
class NewListenerSource:
    """Candidates for listeners with few plays: cohort popularity + onboarding picks.

    The two ranked lists are fused by weighted reciprocal rank, `cohort_blend / (RRF_K + rank)`
    for the picks' list and `(1 - cohort_blend) / (RRF_K + rank)` for the cohort's; an item on
    both lists adds both. With no picks the result is the cohort list. Both lists only hold
    items playable in the listener's country.
    """

    tables: PopularityTables
    cohort_blend: float = 0.5
    max_plays: int = 5
    pool: int = DEFAULT_POOL

    def __post_init__(self) -> None:
        if not 0.0 <= self.cohort_blend <= 1.0:
            raise ColdStartError(
                f"NewListenerSource: cohort_blend must be in [0, 1], got {self.cohort_blend}"
            )

    @classmethod
    def from_settings(
        cls, tables: PopularityTables, settings: CandidateSettings
    ) -> NewListenerSource:
        """Build the source with `cohort_blend` and `new_user_max_plays` from the settings."""
        return cls(
            tables=tables,
            cohort_blend=settings.cohort_blend,
            max_plays=settings.new_user_max_plays,
        )

    def is_new(self, plays: int) -> bool:
        """Whether a listener with this many plays is served by this source."""
        return plays < self.max_plays

    def candidates(
        self,
        user_id: str,
        country: str,
        age_bucket: str,
        tier: str,
        picks: Sequence[str],
        k: int,
    ) -> tuple[list[str], np.ndarray]:
        """Up to `k` items for a new listener, best first, with their fused scores.

        `picks` are the artist ids chosen at onboarding. `user_id` does not change the
        result (it is accepted so callers can pass the request as is, e.g. for logging).
        """
        del user_id  # the result depends on the cohort and picks only
        pool = max(k, self.pool)
        cohort_ids, _ = self.tables.cohort(country, age_bucket, tier, pool)
        pick_weight = self.cohort_blend if picks else 0.0
        scores = _rrf(cohort_ids, 1.0 - pick_weight)
        if picks:
            pick_ids, _ = self.tables.by_artists(list(picks), pool, country=country)
            for item, value in _rrf(pick_ids, pick_weight).items():
                scores[item] = scores.get(item, 0.0) + value
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [item for item, _ in ranked], np.array([s for _, s in ranked], dtype=np.float64)
