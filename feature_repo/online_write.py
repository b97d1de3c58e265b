"""Load the online store with each entity's newest snapshot, straight from the offline tables.

Feast's `materialize_incremental` reads every daily snapshot of the TTL window through its
Dask offline store, which hashes (pickles) the whole table, list-valued columns included,
several times per view, only for the online store to keep the newest row per entity: that
made materialization grow faster than the data. The online store holds one row per entity,
so this module selects that row with pandas (newest `event_timestamp` at or before the end,
within the view's TTL, ties broken by `created`) and writes it with
`FeatureStore.write_to_online_store`, the same conversion and online write Feast's
materialization ends with. An entity with no snapshot in the window keeps what the store had.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from feast import FeatureStore

from crossfade.features import catalog
from feature_repo.definitions import TTL, feature_table_path


def latest_snapshots(
    frame: pd.DataFrame, keys: Sequence[str], end: datetime, ttl: timedelta = TTL
) -> pd.DataFrame:
    """Each entity's newest row with `end - ttl < event_timestamp <= end` (ties: newest
    `created`), the rows Feast's materialization would leave in the online store."""
    ts = pd.to_datetime(frame[catalog.EVENT_TIMESTAMP], utc=True)
    end_ts = pd.Timestamp(end)
    end_ts = end_ts.tz_localize("UTC") if end_ts.tzinfo is None else end_ts.tz_convert("UTC")
    window = frame[(ts <= end_ts) & (ts > end_ts - ttl)]
    order = [catalog.EVENT_TIMESTAMP]
    if catalog.CREATED in window.columns:
        order.append(catalog.CREATED)
    newest = window.sort_values(order, kind="stable").drop_duplicates(list(keys), keep="last")
    return newest.reset_index(drop=True)


def write_latest(
    store: FeatureStore,
    features_dir: Path,
    views: Sequence[str],
    end: datetime,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, int]:
    """Write each view's newest snapshots as of `end` to the online store; the tables come
    from `tables` when given (the flow has them in memory), else from the offline Parquet.
    Returns the rows written per view."""
    written: dict[str, int] = {}
    for view in views:
        frame = (
            tables[view]
            if tables is not None and view in tables
            else pd.read_parquet(feature_table_path(features_dir, view))
        )
        keys = store.get_feature_view(view).join_keys
        rows = latest_snapshots(frame, keys, end)
        if len(rows):
            store.write_to_online_store(view, rows)
        written[view] = len(rows)
    return written
