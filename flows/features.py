"""Features flow: compute feature tables from the lake, validate them, apply, materialize.

Reruns are idempotent: tables are recomputed from the lake and replaced whole, `feast apply`
is declarative, and materialization writes each entity's newest snapshot
(`feature_repo.online_write`). A table that fails validation stops the
run before anything is replaced or materialized, so the online store keeps its last good
values; the rejected tables are kept under quarantine/features/ with the report.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from crossfade.config import Settings, load_settings
from crossfade.data import lake
from crossfade.features import catalog
from crossfade.features.tables import artist_features, item_features, user_features
from crossfade.features.tables_dask import lake_feature_tables
from crossfade.log import get_logger
from crossfade.safety.bots import human_events
from crossfade.safety.paths import bot_flags_dir
from feature_repo.definitions import build_definitions, feature_table_path
from feature_repo.online_reader import write_marker
from feature_repo.online_write import write_latest
from feature_repo.store import open_store
from flows.runners import dask_client, task_runner_for, uses_dask
from validation.feature_tables import validate_feature_tables

log = get_logger("flows.features")
VIEWS = (catalog.USER_VIEW, catalog.ITEM_VIEW, catalog.ARTIST_VIEW)


class FeaturesRejected(RuntimeError):
    """Feature tables failed validation; nothing was replaced or materialized."""

    def __init__(self, outcome: FeaturesOutcome) -> None:
        super().__init__(
            "feature tables rejected, online store unchanged: " + "; ".join(outcome.failures[:5])
        )
        self.outcome = outcome


@dataclass
class FeaturesOutcome:
    """What a features run did."""

    status: str  # "materialized" | "rejected" | "empty"
    rows: dict[str, int]
    materialized_until: str | None = None
    materialization_id: str | None = None
    report_path: str | None = None
    failures: list[str] = field(default_factory=list)
    quarantine: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@task(name="compute-features", cache_policy=NO_CACHE)
def compute_tables(settings: Settings) -> dict[str, pd.DataFrame]:
    """Recompute every batch feature table from the published lake (on Dask on `cluster`)."""
    if uses_dask(settings):
        with dask_client(settings) as client:
            return lake_feature_tables(settings.lake_dir, client)
    read = lambda name: lake.read_lake_table(settings.lake_dir, name).to_pandas()  # noqa: E731
    events = read("events")
    if events.empty:
        return {}
    items, users, artists = read("items"), read("users"), read("artists")
    # Popularity statistics of tracks and artists leave flagged stream-farm accounts out.
    human, _ = human_events(events, bot_flags_dir(settings))
    return {
        catalog.USER_VIEW: user_features(events, items, users),
        catalog.ITEM_VIEW: item_features(human, items),
        catalog.ARTIST_VIEW: artist_features(human, items, artists),
    }


@task(name="publish-feature-tables", cache_policy=NO_CACHE)
def publish_tables(settings: Settings, tables: dict[str, pd.DataFrame]) -> None:
    """Replace each offline table atomically (write, then rename)."""
    for view, frame in tables.items():
        path = feature_table_path(settings.features_dir, view)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)


@task(name="feast-apply", cache_policy=NO_CACHE)
def apply_definitions(settings: Settings) -> None:
    """Register entities, views and services (declarative, safe to repeat)."""
    store = open_store(settings)
    store.apply(build_definitions(settings.features_dir).all())


@task(name="materialize", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def materialize(
    settings: Settings, end: datetime, tables: dict[str, pd.DataFrame] | None = None
) -> str:
    """Load each entity's newest snapshot as of `end` into the online store (from `tables`,
    or the published offline tables) and record the materialization."""
    store = open_store(settings)
    written = write_latest(store, settings.features_dir, VIEWS, end, tables)
    log.info("online store loaded", extra={"rows": written, "until": end.isoformat()})
    return write_marker(settings.features_dir, end, list(VIEWS))


def _quarantine(settings: Settings, tables: dict[str, pd.DataFrame], report: Path | None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = settings.quarantine_dir / "features" / stamp
    target.mkdir(parents=True, exist_ok=True)
    for view, frame in tables.items():
        frame.to_parquet(target / f"{view}.parquet", index=False)
    if report is not None:
        shutil.copy2(report, target / "report.json")
    return target


def _artifacts(outcome: FeaturesOutcome) -> None:
    lines = [f"# Features: {outcome.status}", ""]
    lines += [f"- {view}: {rows:,} rows" for view, rows in outcome.rows.items()]
    if outcome.materialized_until:
        lines.append(f"- materialized until {outcome.materialized_until}")
    if outcome.failures:
        lines += ["", "## Failed checks", *[f"- {f}" for f in outcome.failures]]
    create_markdown_artifact("\n".join(lines), key="features-summary")
    if outcome.rows:
        create_table_artifact(
            [{"view": k, "rows": v} for k, v in outcome.rows.items()], key="feature-rows"
        )


@flow(name="features")
def features_flow(profile: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Compute, validate, publish, apply and materialize; raises FeaturesRejected on bad tables."""
    settings = load_settings(profile)
    now = now or datetime.now(UTC)
    tables = compute_tables.submit(settings).result()  # through the profile's task runner
    if not tables:
        outcome = FeaturesOutcome(status="empty", rows={}, failures=["the lake has no events yet"])
        _artifacts(outcome)
        return outcome.to_dict()
    rows = {view: len(frame) for view, frame in tables.items()}
    result = validate_feature_tables(tables, settings, now=now)
    if not result.success:
        report = Path(result.report_path) if result.report_path else None
        outcome = FeaturesOutcome(
            status="rejected",
            rows=rows,
            report_path=result.report_path,
            failures=result.summary_lines(),
            quarantine=str(_quarantine(settings, tables, report)),
        )
        _artifacts(outcome)
        raise FeaturesRejected(outcome)
    publish_tables(settings, tables)
    apply_definitions(settings)
    end = max(frame[catalog.EVENT_TIMESTAMP].max() for frame in tables.values()).to_pydatetime()
    end = min(end, now)
    mid = materialize(settings, end, tables)
    outcome = FeaturesOutcome(
        status="materialized",
        rows=rows,
        materialized_until=end.isoformat(),
        materialization_id=mid,
        report_path=result.report_path,
    )
    log.info("features materialized", extra={"rows": rows, "until": outcome.materialized_until})
    _artifacts(outcome)
    return outcome.to_dict()


def features_flow_for(settings: Settings) -> Any:
    """The features flow with the task runner of the settings' profile (Dask on `cluster`)."""
    return features_flow.with_options(task_runner=task_runner_for(settings))
