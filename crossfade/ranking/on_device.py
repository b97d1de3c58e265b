"""On-device reranker: a tiny logistic regression over in-session signals, run by the client.

The server ranks candidates; the app reorders them locally with what only the device knows
right now (skips in this session, the hour, the device), so no listening history leaves the
phone and no round trip is needed. Training (`session_features`, `train_on_device`) uses
pandas and scikit-learn on the server; the exported JSON is scored by `OnDeviceScorer`,
which needs NumPy only (pandas and scikit-learn are never imported by it), the same
arithmetic a Swift or Kotlin client reimplements in a few lines. See
docs/on-device-reranker.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from crossfade import columns as C
from crossfade.data import domains as D

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

FORMAT = "crossfade.on_device_reranker"
VERSION = 1
RECENT_WINDOW = 5  # recent_skips counts skips among the last this many plays of the session

SERVER_SCORE = "server_score"
RECENT_SKIPS = "recent_skips"
ARTIST_SKIPPED = "artist_skipped_in_session"
GENRE_SKIPPED = "genre_skipped_in_session"
COMPLETED = "completed_in_session"
HOUR_SIN = "hour_sin"
HOUR_COS = "hour_cos"
DEVICE_PREFIX = "device_"
FEATURE_NAMES: tuple[str, ...] = (
    SERVER_SCORE,
    RECENT_SKIPS,
    ARTIST_SKIPPED,
    GENRE_SKIPPED,
    COMPLETED,
    HOUR_SIN,
    HOUR_COS,
    *(DEVICE_PREFIX + d for d in D.DEVICES),
)
LABEL = "not_skipped"
UTC_OFFSET = "utc_offset_minutes"  # optional events column; absent means local time = UTC
DEFAULT_BETA = 1.0


class OnDeviceModelError(ValueError):
    """The on-device model JSON is malformed, of another format or version, or inconsistent."""


# --------------------------------------------------------------------------------------------
# features (shared by training and the device)


def hour_features(local_hour: float) -> tuple[float, float]:
    """Hour of day on the unit circle, so 23:00 and 00:00 are neighbours."""
    angle = 2.0 * math.pi * (float(local_hour) % 24.0) / 24.0
    return math.sin(angle), math.cos(angle)


def device_features(device: str) -> dict[str, float]:
    """One-hot over `domains.DEVICES`; an unknown device counts as "unknown"."""
    device = device if device in D.DEVICES else D.UNKNOWN
    return {DEVICE_PREFIX + d: float(d == device) for d in D.DEVICES}


def session_features(events: pd.DataFrame, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per play: the features known just *before* it, from earlier plays of its session only.

    `events` needs user_id, session_id, ts, item_id, skipped and device, plus artist_id and
    genre (or pass an `items` frame with item_id, artist_id, genre to join them). Optional
    columns: `server_score` (the ranker score logged with the impression; 0 when absent) and
    `utc_offset_minutes` (local hour = UTC hour when absent). Plays are ordered within a session
    by ts (ties keep the input order); a play never sees itself or anything later, so the
    features are what the device would have had at request time. Returns one row per event
    (same index as `events`) with the ids, `FEATURE_NAMES` and the label `not_skipped`.
    """
    import pandas as pd

    ev = events
    if items is not None:
        meta = items.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)
        ev = events.copy()
        ev[C.ARTIST_ID] = events[C.ITEM_ID].map(meta[C.ARTIST_ID])
        ev[C.GENRE] = events[C.ITEM_ID].map(meta[C.GENRE])
    needed = (C.USER_ID, C.SESSION_ID, C.TS, C.ITEM_ID, C.SKIPPED, C.DEVICE, C.ARTIST_ID, C.GENRE)
    missing = [c for c in needed if c not in ev.columns]
    if missing:
        raise ValueError(f"session_features: events lack columns {missing} (pass items=?)")

    ts = pd.to_datetime(ev[C.TS], utc=True)
    order = np.lexsort((np.arange(len(ev)), ts.to_numpy(), ev[C.SESSION_ID].to_numpy()))
    e = ev.iloc[order]
    ts = ts.iloc[order]
    skipped = e[C.SKIPPED].astype(bool).to_numpy()
    skip = pd.Series(skipped.astype(np.int64), index=e.index)
    done = pd.Series((~skipped).astype(np.int64), index=e.index)
    session = e[C.SESSION_ID]

    out = pd.DataFrame(index=e.index)
    for col in (C.USER_ID, C.SESSION_ID, C.ITEM_ID):
        out[col] = e[col]
    out[C.TS] = ts
    if SERVER_SCORE in e.columns:
        out[SERVER_SCORE] = e[SERVER_SCORE].astype(float).fillna(0.0)
    else:  # logs without the ranker score: 0 (production logs carry it)
        out[SERVER_SCORE] = 0.0

    # skips among the previous RECENT_WINDOW plays: C[p-1] - C[p-1-window] via cumulative sums
    before = skip.groupby(session).cumsum() - skip
    out[RECENT_SKIPS] = (before - before.groupby(session).shift(RECENT_WINDOW).fillna(0)).astype(
        float
    )

    def seen_before(key: str, hits: pd.Series) -> np.ndarray:
        # any earlier play of this session with the same key value had `hits`
        keys = e[key]
        prior = hits.groupby([session, keys], dropna=False).cumsum() - hits
        return ((prior > 0) & keys.notna()).to_numpy(dtype=float)

    out[ARTIST_SKIPPED] = seen_before(C.ARTIST_ID, skip)
    out[GENRE_SKIPPED] = seen_before(C.GENRE, skip)
    out[COMPLETED] = seen_before(C.ITEM_ID, done)

    offset = e[UTC_OFFSET].fillna(0).astype(np.int64) if UTC_OFFSET in e.columns else 0
    local = ts + pd.to_timedelta(offset, unit="m")
    hour = (local.dt.hour + local.dt.minute / 60.0).to_numpy()
    angle = 2.0 * np.pi * hour / 24.0
    out[HOUR_SIN] = np.sin(angle)
    out[HOUR_COS] = np.cos(angle)
    device = e[C.DEVICE].where(e[C.DEVICE].isin(D.DEVICES), D.UNKNOWN).to_numpy()
    for d in D.DEVICES:
        out[DEVICE_PREFIX + d] = (device == d).astype(float)

    out[LABEL] = (~skipped).astype(np.int64)
    out = out.iloc[np.argsort(order)]  # back to the input order
    out.index = events.index
    return out


@dataclass
class SessionState:
    """What the device remembers about the current session (kept on the device only)."""

    device: str = D.UNKNOWN
    local_hour: float = 12.0
    plays: list[tuple[str, str | None, str | None, bool]] = field(default_factory=list)

    def record(self, item_id: str, artist_id: str | None, genre: str | None, skipped: bool) -> None:
        """Append a finished play (item, artist, genre, skipped?) to the session."""
        self.plays.append((item_id, artist_id, genre, bool(skipped)))

    def features(
        self,
        item_id: str,
        server_score: float = 0.0,
        artist_id: str | None = None,
        genre: str | None = None,
    ) -> dict[str, float]:
        """The feature row for one candidate, computed exactly as `session_features` does."""
        recent = self.plays[-RECENT_WINDOW:]
        sin, cos = hour_features(self.local_hour)
        row = {
            SERVER_SCORE: float(server_score),
            RECENT_SKIPS: float(sum(p[3] for p in recent)),
            ARTIST_SKIPPED: float(
                artist_id is not None and any(p[1] == artist_id and p[3] for p in self.plays)
            ),
            GENRE_SKIPPED: float(
                genre is not None and any(p[2] == genre and p[3] for p in self.plays)
            ),
            COMPLETED: float(any(p[0] == item_id and not p[3] for p in self.plays)),
            HOUR_SIN: sin,
            HOUR_COS: cos,
        }
        row.update(device_features(self.device))
        return row


# --------------------------------------------------------------------------------------------
# training (server side)


@dataclass
class OnDeviceModel:
    """A fitted logistic regression with its standardisation, ready to export as JSON."""

    estimator: LogisticRegression
    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    beta: float = DEFAULT_BETA
    trained_rows: int = 0
    seed: int = 0

    def standardise(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Raw features (frame with `feature_names` or array in that order), standardised."""
        if isinstance(features, np.ndarray):
            x = features
        else:
            x = features[list(self.feature_names)].to_numpy(float)
        return (np.asarray(x, dtype=float) - self.mean) / self.scale

    def predict_proba(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """P(not skipped) per row from scikit-learn (the reference for the NumPy scorer)."""
        proba: np.ndarray = self.estimator.predict_proba(self.standardise(features))[:, 1]
        return proba

    @property
    def weights(self) -> dict[str, float]:
        """Coefficient per feature (on standardised features)."""
        return dict(zip(self.feature_names, self.estimator.coef_[0].tolist(), strict=True))

    def to_dict(self) -> dict[str, Any]:
        """The exported document (see `to_json`)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.estimator.coef_[0].tolist(),
            "intercept": float(self.estimator.intercept_[0]),
            "beta": float(self.beta),
            "recent_window": RECENT_WINDOW,
            "devices": list(D.DEVICES),
            "trained": {"rows": int(self.trained_rows), "seed": int(self.seed)},
        }

    def to_json(self) -> str:
        """Weights, intercept, feature names, standardisation and beta as compact JSON (~1 KB).

        Floats are written with `repr` precision, so the device reproduces the server exactly.
        """
        return json.dumps(self.to_dict(), separators=(",", ":"))


def train_on_device(
    features: pd.DataFrame, seed: int = 0, beta: float = DEFAULT_BETA, c: float = 1.0
) -> OnDeviceModel:
    """Fit P(not skipped) on `session_features` output: standardise, then L2 logistic regression.

    Standardisation keeps the weights comparable and the fit well conditioned; a constant
    column (e.g. server_score absent from the logs) gets scale 1 and weight ~0. `beta` is the
    blend weight the device uses in `rerank`.
    """
    from sklearn.linear_model import LogisticRegression

    missing = [c for c in (*FEATURE_NAMES, LABEL) if c not in features.columns]
    if missing:
        raise ValueError(f"train_on_device: features lack columns {missing}")
    y = features[LABEL].to_numpy()
    if len(np.unique(y)) < 2:
        raise ValueError("train_on_device: need both skipped and not-skipped plays")
    x = features[list(FEATURE_NAMES)].to_numpy(float)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    est = LogisticRegression(C=c, max_iter=1000, random_state=seed)
    est.fit((x - mean) / scale, y)
    return OnDeviceModel(
        estimator=est,
        feature_names=FEATURE_NAMES,
        mean=mean,
        scale=scale,
        beta=float(beta),
        trained_rows=len(x),
        seed=seed,
    )


# --------------------------------------------------------------------------------------------
# scoring (device side: NumPy only)


@dataclass(frozen=True)
class OnDeviceScorer:
    """Scores and reranks candidates from the exported JSON with NumPy arithmetic only."""

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: float
    beta: float

    @classmethod
    def from_json(cls, text: str | bytes) -> OnDeviceScorer:
        """Parse and check an exported model; anything malformed raises `OnDeviceModelError`."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise OnDeviceModelError(f"on-device model is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise OnDeviceModelError("on-device model JSON must be an object")
        if doc.get("format") != FORMAT:
            raise OnDeviceModelError(
                f"not an on-device reranker model: format {doc.get('format')!r}, "
                f"expected {FORMAT!r}"
            )
        if doc.get("version") != VERSION:
            raise OnDeviceModelError(
                f"unsupported on-device model version {doc.get('version')!r}; "
                f"this scorer reads version {VERSION}"
            )
        required = ("feature_names", "mean", "scale", "weights", "intercept", "beta")
        missing = [k for k in required if k not in doc]
        if missing:
            raise OnDeviceModelError(f"on-device model lacks keys {missing}")
        names = doc["feature_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise OnDeviceModelError("feature_names must be a list of strings")
        if len(set(names)) != len(names) or not names:
            raise OnDeviceModelError("feature_names must be non-empty and unique")
        arrays = {k: _vector(doc[k], k, len(names)) for k in ("mean", "scale", "weights")}
        if np.any(arrays["scale"] <= 0):
            raise OnDeviceModelError("scale must be positive")
        return cls(
            feature_names=tuple(names),
            mean=arrays["mean"],
            scale=arrays["scale"],
            weights=arrays["weights"],
            intercept=_number(doc["intercept"], "intercept"),
            beta=_number(doc["beta"], "beta"),
        )

    def matrix(self, rows: Sequence[Mapping[str, float]] | np.ndarray) -> np.ndarray:
        """Rows (dicts keyed by feature name, or an array in `feature_names` order) as a matrix."""
        if isinstance(rows, np.ndarray):
            x = np.asarray(rows, dtype=float)
            if x.ndim != 2 or x.shape[1] != len(self.feature_names):
                raise ValueError(f"expected an (n, {len(self.feature_names)}) array, got {x.shape}")
            return x
        x = np.zeros((len(rows), len(self.feature_names)))
        for i, row in enumerate(rows):
            missing = [n for n in self.feature_names if n not in row]
            if missing:
                raise ValueError(f"row {i} lacks features {missing}")
            x[i] = [row[n] for n in self.feature_names]
        return x

    def logit(self, rows: Sequence[Mapping[str, float]] | np.ndarray) -> np.ndarray:
        """Log-odds of "not skipped" per row (the linear predictor)."""
        z: np.ndarray = ((self.matrix(rows) - self.mean) / self.scale) @ self.weights
        return z + self.intercept

    def score(self, rows: Sequence[Mapping[str, float]] | np.ndarray) -> np.ndarray:
        """P(not skipped) per row, a numerically stable sigmoid of `logit`."""
        return np.exp(-np.logaddexp(0.0, -self.logit(rows)))

    def rerank(
        self,
        item_ids: Sequence[str],
        server_scores: Sequence[float] | np.ndarray,
        session: SessionState,
        artist_ids: Sequence[str | None] | None = None,
        genres: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Item ids ordered by `server_score + beta * logit(p_not_skipped)`, best first.

        `artist_ids` / `genres` (aligned with `item_ids`, sent by the server with the
        candidates) enable the artist/genre-skipped signals; without them those are 0. Ties
        keep the server order.
        """
        n = len(item_ids)
        scores = np.asarray(server_scores, dtype=float)
        if scores.shape != (n,):
            raise ValueError(f"server_scores must have one score per item ({n})")
        artists = list(artist_ids) if artist_ids is not None else [None] * n
        kinds = list(genres) if genres is not None else [None] * n
        if len(artists) != n or len(kinds) != n:
            raise ValueError("artist_ids and genres must align with item_ids")
        if n == 0:
            return []
        rows = [
            session.features(item, float(s), a, g)
            for item, s, a, g in zip(item_ids, scores, artists, kinds, strict=True)
        ]
        blended = scores + self.beta * self.logit(rows)
        order = np.argsort(-blended, kind="stable")
        return [item_ids[i] for i in order]


def _vector(value: Any, key: str, n: int) -> np.ndarray:
    if not isinstance(value, list) or len(value) != n:
        raise OnDeviceModelError(f"{key} must be a list of {n} numbers (one per feature)")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        raise OnDeviceModelError(f"{key} must hold numbers only")
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise OnDeviceModelError(f"{key} must be finite")
    return arr


def _number(value: Any, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise OnDeviceModelError(f"{key} must be a finite number")
    return float(value)
