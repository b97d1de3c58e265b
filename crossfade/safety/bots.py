"""Bot and adversarial play detection: stream-farm rules plus an anomaly model.

Each account gets one point per fired rule (plays just over 30 s, round-the-clock activity,
very narrow catalogue, lockstep with other accounts, no engagement at all) and one more if an
IsolationForest over its behaviour features calls it anomalous. Accounts whose score reaches
the policy's threshold are flagged, with every reason spelled out. Flagged accounts are then
kept out of training signals, popularity statistics and creator counts (`exclude_flagged`).
Detection uses the observable log only; simulator truth is for measuring it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.ensemble import IsolationForest

from crossfade import columns as C
from crossfade.data.lake import atomic_write_parquet
from crossfade.safety.bot_features import FEATURES, account_features
from crossfade.safety.policy import BotRules

SCORE = "score"
FLAGGED = "flagged"
REASONS = "reasons"
ANOMALY = "anomaly_score"
DETECTED_AT = "detected_at"
FLAG_GLOB = "flags-*.parquet"


def _rules(features: pd.DataFrame, rules: BotRules) -> dict[str, tuple[pd.Series, str]]:
    """Each rule's boolean mask over accounts and the template of its reason."""
    f = features
    return {
        "near_threshold": (
            f["near_threshold_share"] >= rules.near_threshold_share,
            "{near_threshold_share:.0%} of plays end just past the 30 s threshold",
        ),
        "round_the_clock": (
            f["hour_entropy"] >= rules.hour_entropy,
            "plays around the clock (hour entropy {hour_entropy:.2f})",
        ),
        "narrow_catalogue": (
            f["item_entropy"] <= rules.item_entropy,
            "very narrow catalogue (item entropy {item_entropy:.2f})",
        ),
        "lockstep": (
            f["lockstep_share"] >= rules.lockstep_share,
            "{lockstep_share:.0%} of plays in lockstep with other accounts",
        ),
        "no_engagement": (
            f["engagement_share"] <= rules.max_engagement_share,
            "never saves, adds to playlists or follows",
        ),
    }


def _anomaly(features: pd.DataFrame, rules: BotRules, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """IsolationForest scores (higher: more anomalous) and its anomaly votes."""
    if len(features) < 8:
        return np.zeros(len(features)), np.zeros(len(features), dtype=bool)
    x = features[list(FEATURES)].to_numpy(dtype=float).copy()
    x[:, 0] = np.log1p(x[:, 0])
    model = IsolationForest(
        n_estimators=200, contamination=rules.anomaly_contamination, random_state=seed
    )
    model.fit(x)
    return -model.score_samples(x), model.predict(x) == -1


def detect_bots(events: pd.DataFrame, rules: BotRules, seed: int) -> pd.DataFrame:
    """Score every account in `events`; one row per account (column user_id) with its
    features, anomaly score, score, whether it is flagged and the reasons ('; '-joined)."""
    features = account_features(events)
    n = len(features)
    if n == 0:
        columns = [C.USER_ID, *FEATURES, ANOMALY, SCORE, FLAGGED, REASONS]
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    enough = features["plays"] >= rules.min_plays
    score = np.zeros(n, dtype=np.int64)
    reasons: list[list[str]] = [[] for _ in range(n)]
    rows: list[dict[str, float]] = [
        {str(k): float(v) for k, v in row.items()} for row in features.to_dict("records")
    ]
    for mask, template in _rules(features, rules).values():
        fired = (mask & enough).to_numpy()
        score += fired
        for i in np.flatnonzero(fired):
            reasons[i].append(template.format(**rows[i]))
    anomaly_score, anomalous = _anomaly(features, rules, seed)
    vote = anomalous & enough.to_numpy()
    score += vote
    for i in np.flatnonzero(vote):
        reasons[i].append(f"anomalous behaviour (isolation score {anomaly_score[i]:.2f})")
    out = features.reset_index()
    out[ANOMALY] = anomaly_score
    out[SCORE] = score
    out[FLAGGED] = score >= rules.threshold
    out[REASONS] = ["; ".join(r) for r in reasons]
    return out.sort_values([SCORE, C.USER_ID], ascending=[False, True]).reset_index(drop=True)


def flagged_ids(flags: pd.DataFrame) -> frozenset[str]:
    """The user ids of flagged accounts."""
    if flags.empty:
        return frozenset()
    return frozenset(flags.loc[flags[FLAGGED].astype(bool), C.USER_ID].astype(str))


def exclude_flagged(events: pd.DataFrame, flags: pd.DataFrame | frozenset[str]) -> pd.DataFrame:
    """`events` without the rows of flagged accounts (training signals, popularity, creator
    counts all start from this). `flags` is a `detect_bots` frame or a set of user ids."""
    ids = flags if isinstance(flags, frozenset) else flagged_ids(flags)
    if not ids:
        return events
    return events.loc[~events[C.USER_ID].astype(str).isin(ids)]


def write_flags(flags: pd.DataFrame, folder: Path, now: datetime | None = None) -> Path:
    """Store one detection run's flags as Parquet (atomic) and return the file."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%f")
    frame = flags.assign(**{DETECTED_AT: (now or datetime.now(UTC)).isoformat()})
    path = folder / f"flags-{stamp}.parquet"
    atomic_write_parquet(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def latest_flags(folder: Path) -> pd.DataFrame | None:
    """The newest stored detection run, or None when bots were never detected."""
    files = sorted(folder.glob(FLAG_GLOB)) if folder.is_dir() else []
    return pq.read_table(files[-1]).to_pandas() if files else None


def human_events(events: pd.DataFrame, flags_folder: Path) -> tuple[pd.DataFrame, int]:
    """`events` without the accounts of the newest detection run (none when bots were never
    detected), and how many accounts that removed. Training, popularity and creator counts
    read the lake through this."""
    flags = latest_flags(flags_folder)
    ids = flagged_ids(flags) if flags is not None else frozenset()
    return exclude_flagged(events, ids), len(ids)
