"""Assignment: deterministic hashing, mutually exclusive layers, a global holdout, the ramp,
and the exposure log (who saw which variant when).

- A listener's position in any hash space is SHA-256(salt : listener id) mapped to [0, 1), so
  assignment needs no state and is the same in every process and on every day.
- Global holdout: listeners whose `global-holdout` hash falls under `holdout_share` never enter
  any experiment (they measure the long-run effect of everything shipped).
- Layers: experiments in one layer own disjoint ranges of the layer's hash space, so a listener
  is in at most one experiment per layer; experiments in different layers overlap freely.
- Ramp: a listener is exposed when their experiment-salted ramp hash is below the day's share;
  shares only grow, so a listener once exposed stays exposed and keeps their variant.
- Variant: an independent experiment-salted hash split by the variant weights.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data.lake import atomic_write_parquet
from crossfade.experiments.definition import ExperimentDefinition

GLOBAL_HOLDOUT_SALT = "crossfade-global-holdout"
VARIANT = "variant"
EXPOSURE_DAY = "exposure_day"
EXPOSURE_COLUMNS = (C.USER_ID, VARIANT, C.TS, EXPOSURE_DAY)


def unit_hash(salt: str, listener_ids: Sequence[str]) -> np.ndarray:
    """Uniform [0, 1) position of each listener id in the hash space named by `salt`."""
    out = np.empty(len(listener_ids), dtype=np.float64)
    for i, uid in enumerate(listener_ids):
        digest = hashlib.sha256(f"{salt}:{uid}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


def in_holdout(listener_ids: Sequence[str], share: float) -> np.ndarray:
    """True for listeners in the global holdout (the same set for every experiment)."""
    return unit_hash(GLOBAL_HOLDOUT_SALT, listener_ids) < share


def in_layer(definition: ExperimentDefinition, listener_ids: Sequence[str]) -> np.ndarray:
    """True for listeners whose layer hash falls in the experiment's range of its layer."""
    lo, hi = definition.layer_range
    position = unit_hash(f"layer:{definition.layer}", listener_ids)
    return (position >= lo) & (position < hi)


def check_layers(definitions: Sequence[ExperimentDefinition]) -> None:
    """Experiments sharing a layer must own disjoint ranges (else ValueError naming them)."""
    by_layer: dict[str, list[ExperimentDefinition]] = {}
    for d in definitions:
        by_layer.setdefault(d.layer, []).append(d)
    for layer, group in by_layer.items():
        ranges = sorted(group, key=lambda d: d.layer_range)
        for a, b in itertools.pairwise(ranges):
            if b.layer_range[0] < a.layer_range[1]:
                raise ValueError(
                    f"layer {layer!r}: experiments {a.name!r} {a.layer_range} and {b.name!r} "
                    f"{b.layer_range} overlap; give them disjoint layer_range values"
                )


def assign(
    definition: ExperimentDefinition, listener_ids: Sequence[str], day: int
) -> list[str | None]:
    """Variant of each listener on experiment day `day`, or None when not exposed (holdout,
    outside the layer range, or above the day's ramp share)."""
    ids = list(listener_ids)
    eligible = ~in_holdout(ids, definition.holdout_share) & in_layer(definition, ids)
    exposed = eligible & (unit_hash(f"ramp:{definition.salt}", ids) < definition.ramp_share(day))
    names = list(definition.variants)
    weights = np.array([definition.variants[n] for n in names], dtype=np.float64)
    edges = np.cumsum(weights / weights.sum())
    slot = np.searchsorted(edges, unit_hash(f"variant:{definition.salt}", ids), side="right")
    slot = np.minimum(slot, len(names) - 1)
    return [names[s] if e else None for s, e in zip(slot, exposed, strict=True)]


def exposures_dir(settings: Settings, experiment: str) -> Path:
    """Folder of an experiment's exposure log under the data root."""
    return settings.data_root / "experiments" / experiment / "exposures"


def log_exposures(settings: Settings, experiment: str, day: date, frame: pd.DataFrame) -> None:
    """Write one day's exposures (columns EXPOSURE_COLUMNS) as an atomic Parquet part."""
    missing = [c for c in EXPOSURE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"exposure frame lacks columns {missing}; expected {EXPOSURE_COLUMNS}")
    table = pa.Table.from_pandas(frame[list(EXPOSURE_COLUMNS)], preserve_index=False)
    atomic_write_parquet(table, exposures_dir(settings, experiment) / f"{day.isoformat()}.parquet")


def read_exposures(settings: Settings, experiment: str) -> pd.DataFrame:
    """Every logged exposure of an experiment (empty frame when nothing was logged)."""
    folder = exposures_dir(settings, experiment)
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not parts:
        return pd.DataFrame(columns=list(EXPOSURE_COLUMNS))
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


def erase_listener(settings: Settings, listener_id: str) -> int:
    """Remove a listener's rows from every experiment's exposure log (privacy erasure).

    Each affected Parquet part is rewritten atomically; returns the number of rows removed.
    """
    root = settings.data_root / "experiments"
    removed = 0
    if not root.is_dir():
        return 0
    for part in sorted(root.glob("*/exposures/*.parquet")):
        table = pq.read_table(part)
        keep = pc.not_equal(table[C.USER_ID], pa.scalar(listener_id))
        kept = table.filter(keep)
        gone = table.num_rows - kept.num_rows
        if gone:
            atomic_write_parquet(kept, part)
            removed += gone
    return removed
