"""GX validation of computed feature tables before they are published or materialized.

One suite per batch feature view, generated from the feature catalogue: no nulls, rates and
shares within [0, 1], counts not negative, categorical values in their domains, one row per
(entity, snapshot), and freshness (the newest snapshot within the view's budget). A failure
stops the features flow before anything is replaced, so the online store keeps serving the
last good values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import domains as D
from crossfade.features import catalog
from validation.findings import jsonable
from validation.gx_runtime import GxRuntime
from validation.report import write_reports
from validation.result import Failure, ValidationResult

KEYS = {
    catalog.USER_VIEW: C.USER_ID,
    catalog.ITEM_VIEW: C.ITEM_ID,
    catalog.ARTIST_VIEW: C.ARTIST_ID,
}
DOMAINS: dict[str, tuple[str, ...]] = {
    "user_tier": D.TIERS,
    "user_country": D.COUNTRIES,
    "user_age_bucket": D.AGE_BUCKETS,
    "item_content_type": D.CONTENT_TYPES,
    "item_genre": D.GENRES,
    "item_language": D.LANGUAGES,
}
UNIT_INTERVAL = (
    "_rate_",
    "popularity",
    "danceability",
    "energy",
    "valence",
    "acousticness",
    "speechiness",
)
SHARE_SUM = "_share_sum"


def _bounds(spec: catalog.FeatureSpec) -> tuple[float | None, float | None] | None:
    if spec.dtype == "float32_list":
        return None
    if any(part in spec.name for part in UNIT_INTERVAL):
        return (0.0, 1.0)
    if spec.name == "artist_listener_growth_7d":
        return (-1.0, None)
    if spec.name == "item_tempo":
        return (0.0, 300.0)
    if spec.name == "item_days_since_release":
        return None  # negative before release, by design
    if spec.dtype == "int64":
        return (0, None)
    return None


def build_feature_suite(view: str, now: datetime, budget_hours: float) -> Any:
    """The GX suite of one feature view (names and rules from the catalogue)."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=f"features.{view}")
    key = KEYS[view]
    for name in (key, catalog.EVENT_TIMESTAMP):
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=name))
    suite.add_expectation(
        gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=[key, catalog.EVENT_TIMESTAMP])
    )
    newest_allowed = now - timedelta(hours=budget_hours)
    suite.add_expectation(
        gx.expectations.ExpectColumnMaxToBeBetween(
            column="_snapshot_epoch",
            min_value=newest_allowed.timestamp(),
            meta={"rule": "freshness", "budget_hours": budget_hours},
        )
    )
    for spec in catalog.view_features(view):
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=spec.name))
        if spec.name in DOMAINS:
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToBeInSet(
                    column=spec.name, value_set=list(DOMAINS[spec.name])
                )
            )
        bounds = _bounds(spec)
        if bounds is not None:
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column=spec.name, min_value=bounds[0], max_value=bounds[1]
                )
            )
        if spec.dtype == "float32_list" and spec.name != "item_market_plays_28d":  # shares
            suite.add_expectation(
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column=spec.name + SHARE_SUM, min_value=0.0, max_value=1.0001
                )
            )
    return suite


def _prepared(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the derived columns the suite checks (snapshot epoch, sums of share vectors)."""
    out = frame.copy()
    out["_snapshot_epoch"] = pd.to_datetime(out[catalog.EVENT_TIMESTAMP], utc=True).map(
        lambda t: t.timestamp()
    )
    for name in out.columns:
        spec = catalog.BY_NAME.get(name)
        if spec is not None and spec.dtype == "float32_list":
            out[name + SHARE_SUM] = [
                float(np.sum(v)) if v is not None else np.nan for v in out[name]
            ]
    return out


def _failure(view: str, result: Any, frame: pd.DataFrame, sample_rows: int) -> Failure:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    column = kwargs.get("column") or ",".join(kwargs.get("column_list", []))
    info = result.result or {}
    count = int(info.get("unexpected_count") or 0)
    key = KEYS[view]
    if (config.meta or {}).get("rule") == "freshness":
        newest = datetime.fromtimestamp(float(info.get("observed_value") or 0), UTC)
        budget = config.meta["budget_hours"]
        message = (
            f"newest snapshot is {newest:%Y-%m-%d %H:%M} UTC, older than the {budget:g} h "
            "freshness budget: recompute from fresher data before materializing"
        )
        return Failure(view, "freshness", catalog.EVENT_TIMESTAMP, message, 1)
    values = info.get("partial_unexpected_list") or []
    if "value_set" in kwargs:
        rule = "have values outside the domain"
    elif "min_value" in kwargs or "max_value" in kwargs:
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        rule = f"are outside [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
    elif config.type == "expect_compound_columns_to_be_unique":
        rule = "repeat an (entity, snapshot) pair"
    else:
        rule = "are null"
    message = f"{count} rows {rule}" + (
        f" (e.g. {', '.join(str(jsonable(v)) for v in values[:3])})" if values else ""
    )
    sample: list[dict[str, Any]] = []
    if column in frame.columns and config.type != "expect_compound_columns_to_be_unique":
        series = frame[column]
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        bad = series.isna()
        if low is not None:
            bad |= series < low
        if high is not None:
            bad |= series > high
        if "value_set" in kwargs:
            bad |= ~series.isin(kwargs["value_set"])
        rows = frame.loc[bad, [key, catalog.EVENT_TIMESTAMP, column]].head(sample_rows)
        sample = [{k: jsonable(v) for k, v in r.items()} for r in rows.to_dict("records")]
    return Failure(view, config.type, column.removesuffix(SHARE_SUM), message, count, sample)


def validate_feature_tables(
    tables: dict[str, pd.DataFrame], settings: Settings, *, now: datetime | None = None
) -> ValidationResult:
    """Validate computed feature tables; writes a report under reports/validation/."""
    now = now or datetime.now(UTC)
    run_id = f"features-{now:%Y%m%dT%H%M%S}"
    runtime = GxRuntime(run_id, settings.validation.sample_rows)
    failures: list[Failure] = []
    checks = 0
    for view, frame in tables.items():
        budget = float(settings.features.freshness_hours[view])
        suite = build_feature_suite(view, now, budget)
        runtime.register(suite)
        prepared = _prepared(frame)
        results = runtime.run(suite.name, prepared, view)
        checks += len(results)
        failures += [
            _failure(view, r, prepared, settings.validation.sample_rows)
            for r in results
            if not r.success
        ]
    result = ValidationResult(
        batch_id=run_id,
        success=not failures,
        row_counts={view: len(frame) for view, frame in tables.items()},
        failures=failures,
        checks_run=checks,
    )
    result.report_path = str(write_reports(result, settings.reports_dir))
    return result
