"""Inputs of `crossfade experiment analyze`: exposure and metric data from outside.

Two files, each CSV or Parquet (by extension), documented in docs/experiments.md:

- exposures: `user_id, variant, ts` (first exposure time, ISO 8601 or a timestamp) and the
  segment columns `country, platform, tier` (optional: missing ones become "unknown");
- metrics: `user_id, date` (UTC calendar day) and any of the signal columns of
  `crossfade.experiments.metrics.SIGNALS` (missing ones are 0). Days before a listener's
  exposure are the pre-period used by CUPED.

Experiment day 0 is the date of the earliest exposure.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crossfade import columns as C
from crossfade.experiments.assignment import EXPOSURE_DAY, VARIANT
from crossfade.experiments.definition import ExperimentError
from crossfade.experiments.metrics import DAY, SIGNALS, UNIT_COLUMNS


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, with an error naming the file when it cannot be read."""
    if not path.is_file():
        raise ExperimentError(f"{path} does not exist; pass a CSV or Parquet file")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ExperimentError(f"cannot read {path}: {exc}") from None
    raise ExperimentError(f"{path}: unsupported format {path.suffix!r}; use .csv or .parquet")


def _utc_day(values: pd.Series, name: str) -> pd.Series:
    try:
        return pd.to_datetime(values, utc=True).dt.normalize()
    except (ValueError, TypeError) as exc:
        raise ExperimentError(f"{name}: cannot parse dates ({exc})") from None


def load_external(exposures: Path, metrics: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Units and daily frames (see `crossfade.experiments.metrics`) from the two files."""
    exp = read_table(exposures)
    met = read_table(metrics)
    for name, frame, needed in (
        (exposures, exp, (C.USER_ID, VARIANT, C.TS)),
        (metrics, met, (C.USER_ID, C.DATE)),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise ExperimentError(f"{name} lacks columns {missing}; see docs/experiments.md")
    if exp.empty:
        raise ExperimentError(f"{exposures} has no rows: nobody was exposed")
    exp = exp.copy()
    exp[C.USER_ID] = exp[C.USER_ID].astype(str)
    day = _utc_day(exp[C.TS], str(exposures))
    origin = day.min()
    exp[EXPOSURE_DAY] = (day - origin).dt.days.astype(int)
    exp = exp.sort_values(EXPOSURE_DAY).drop_duplicates(C.USER_ID, keep="first")
    for column in (C.COUNTRY, C.PLATFORM, C.TIER):
        if column not in exp.columns:
            exp[column] = "unknown"
    units = exp[list(UNIT_COLUMNS)].reset_index(drop=True)
    met = met.copy()
    met[C.USER_ID] = met[C.USER_ID].astype(str)
    met[DAY] = (_utc_day(met[C.DATE], str(metrics)) - origin).dt.days.astype(int)
    for signal in SIGNALS:
        if signal not in met.columns:
            met[signal] = 0
    daily = met.groupby([C.USER_ID, DAY], as_index=False)[list(SIGNALS)].sum()
    return units, daily
