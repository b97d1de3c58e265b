"""Online metrics: per-listener values of metric-tree metrics from daily per-listener signals.

The unit of analysis is the listener. Two frames describe an experiment:

- units: one row per exposed listener: `user_id`, `variant`, `exposure_day` (experiment day of
  first exposure, 0-based) and the segment columns `country`, `platform`, `tier`;
- daily: one row per listener and experiment day with the signal columns below; days before
  the listener's exposure (negative days included) are the pre-period used by CUPED.

How each metric is measured (kind, numerator, denominator, scale, tiers, cohort window) comes
from the `online` section of the metric tree (`configs/metrics.yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.evaluation.metric_tree import MetricTree, OnlineMetric
from crossfade.experiments.assignment import EXPOSURE_DAY, VARIANT
from crossfade.experiments.definition import ExperimentError

DAY = "day"
SIGNALS: tuple[str, ...] = (
    "plays",
    "skips",
    "completions",
    "saves",
    "sessions",
    "long_sessions",
    "ad_impressions",
    "requests",
    "errors",
    "cost_usd",
    "diversity",
    "slates",
    "active",
)
UNIT_COLUMNS: tuple[str, ...] = (C.USER_ID, VARIANT, EXPOSURE_DAY, C.COUNTRY, C.PLATFORM, C.TIER)
DAILY_COLUMNS: tuple[str, ...] = (C.USER_ID, DAY, *SIGNALS)


@dataclass(frozen=True)
class UnitValues:
    """Per-unit numerator and denominator of one metric, for the units that count."""

    units: pd.DataFrame  # the counted rows of the units frame
    numerator: np.ndarray
    denominator: np.ndarray
    pre_numerator: np.ndarray
    pre_denominator: np.ndarray


def online_spec(tree: MetricTree, name: str) -> OnlineMetric:
    """The metric's online measurement, or an error naming the metric and the choices."""
    if name not in tree.online:
        raise ExperimentError(
            f"metric {name!r} is missing from the metric tree's online section; "
            f"known: {', '.join(sorted(tree.online))}"
        )
    return tree.online[name]


def validate_frames(units: pd.DataFrame, daily: pd.DataFrame) -> None:
    """Columns present, no duplicate units, no negative signals, daily ids known."""
    missing = [c for c in UNIT_COLUMNS if c not in units.columns]
    if missing:
        raise ExperimentError(f"units lack columns {missing}; expected {list(UNIT_COLUMNS)}")
    missing = [c for c in DAILY_COLUMNS if c not in daily.columns]
    if missing:
        raise ExperimentError(
            f"daily metrics lack columns {missing}; expected {list(DAILY_COLUMNS)}"
        )
    if units.empty:
        raise ExperimentError("no exposed units: the exposure data is empty")
    duplicated = units[C.USER_ID].duplicated()
    if duplicated.any():
        sample = units.loc[duplicated, C.USER_ID].head(3).tolist()
        raise ExperimentError(
            f"{int(duplicated.sum())} listener(s) appear in more than one exposure row "
            f"(e.g. {sample}); keep each listener's first exposure only"
        )
    values = daily[list(SIGNALS)]
    if values.isna().any().any():
        raise ExperimentError("daily metrics contain missing values; fill absent signals with 0")
    negative = (values < 0).any()
    if negative.any():
        raise ExperimentError(
            f"daily metrics have negative values in {negative[negative].index.tolist()}; "
            "signals are counts or costs and must be >= 0"
        )
    unknown = ~daily[C.USER_ID].isin(units[C.USER_ID])
    if unknown.any():
        raise ExperimentError(
            f"{int(unknown.sum())} daily row(s) belong to listeners with no exposure "
            f"(e.g. {daily.loc[unknown, C.USER_ID].head(3).tolist()}); units must match"
        )


def _sum_by_unit(rows: pd.DataFrame, column: str, order: pd.Index) -> np.ndarray:
    return rows.groupby(C.USER_ID)[column].sum().reindex(order, fill_value=0).to_numpy(float)


def unit_values(
    spec: OnlineMetric,
    units: pd.DataFrame,
    daily: pd.DataFrame,
    last_day: int,
    since_exposure: int | None = None,
) -> UnitValues:
    """Per-unit numerator/denominator of `spec` using data up to `last_day` (inclusive).

    `since_exposure` keeps only the day that many days after each unit's exposure (novelty).
    """
    for signal in (spec.numerator, spec.denominator):
        if signal is not None and signal not in SIGNALS:
            raise ExperimentError(f"unknown signal {signal!r}; signals are {', '.join(SIGNALS)}")
    counted = units[units[EXPOSURE_DAY] <= last_day]
    if spec.tiers:
        counted = counted[counted[C.TIER].isin(spec.tiers)]
    if spec.window_days is not None:
        counted = counted[counted[EXPOSURE_DAY] + spec.window_days <= last_day]
    order = pd.Index(counted[C.USER_ID])
    rows = daily[daily[C.USER_ID].isin(order) & (daily[DAY] <= last_day)]
    exposure = rows[C.USER_ID].map(counted.set_index(C.USER_ID)[EXPOSURE_DAY])
    offset = rows[DAY] - exposure
    post, pre = rows[offset >= 0], rows[offset < 0]
    if since_exposure is not None:
        post = rows[offset == since_exposure]
    if spec.window_days is not None:
        window = rows[(offset >= 1) & (offset <= spec.window_days)]
        num = (_sum_by_unit(window, spec.numerator, order) > 0).astype(float)
        den = np.ones(len(order))
        pre_num = (_sum_by_unit(pre, spec.numerator, order) > 0).astype(float)
        pre_den = np.ones(len(order))
    else:
        num = _sum_by_unit(post, spec.numerator, order) * spec.scale
        pre_num = _sum_by_unit(pre, spec.numerator, order) * spec.scale
        if spec.denominator is None:
            den, pre_den = np.ones(len(order)), np.ones(len(order))
        else:
            den = _sum_by_unit(post, spec.denominator, order)
            pre_den = _sum_by_unit(pre, spec.denominator, order)
    if since_exposure is not None and spec.denominator is not None:
        keep = den > 0
        counted, num, den = counted[keep], num[keep], den[keep]
        pre_num, pre_den = pre_num[keep], pre_den[keep]
    return UnitValues(counted.reset_index(drop=True), num, den, pre_num, pre_den)
