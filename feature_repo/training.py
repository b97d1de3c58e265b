"""Point-in-time training sets through Feast, with data minimization applied to every row."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from feast import FeatureService, FeatureStore

from crossfade.features import catalog
from crossfade.features.policy import FeaturePolicy
from feature_repo.definitions import RANKER_SERVICE


def training_set(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    policy: FeaturePolicy,
    service: str = RANKER_SERVICE,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Join features to labelled rows as of each row's `event_timestamp` (no leakage).

    `entity_df` needs the entity keys of the service's views and `event_timestamp` (the label
    time), plus the request inputs of its on-demand views; Feast picks, per row, the newest
    snapshot at or before that time within the TTL. Rows come back in `entity_df`'s order.
    Features the row's region and age group may not use are replaced by their defaults;
    features with no snapshot in time get their defaults too, so no row carries a null.
    `features` narrows the join to those names of the service (all of them by default).
    """
    if catalog.EVENT_TIMESTAMP not in entity_df.columns:
        raise ValueError(f"entity_df needs an {catalog.EVENT_TIMESTAMP!r} column (label time)")
    feature_service = store.get_feature_service(service)
    names = features if features is not None else _service_names(feature_service)
    frame = entity_df.reset_index(drop=True).copy()
    for columns, refs in _retrievals(store, service_refs(feature_service, names)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"entity_df lacks {', '.join(missing)}, needed for {refs[0]}")
        rows = frame[columns].drop_duplicates().reset_index(drop=True)
        rows[_ROW] = range(len(rows))
        got = store.get_historical_features(entity_df=rows, features=refs).to_df()
        values = got[[_ROW, *(r.split(":", 1)[1] for r in refs)]]
        frame = frame.merge(rows, on=columns, how="left").merge(values, on=_ROW, how="left")
        frame = frame.drop(columns=_ROW)
    for spec in catalog.FEATURES:
        if spec.name in frame.columns and frame[spec.name].isna().any():
            missing_rows = frame[spec.name].isna()
            frame.loc[missing_rows, spec.name] = pd.Series(
                [spec.default] * int(missing_rows.sum()),
                index=frame.index[missing_rows],
                dtype=object,
            )
    return policy.apply(frame)


_ROW = "_crossfade_row"


def _service_names(service: FeatureService) -> list[str]:
    return [f.name for p in service.feature_view_projections for f in p.features]


def _retrievals(store: FeatureStore, refs: list[str]) -> list[tuple[list[str], list[str]]]:
    """One retrieval per batch view: (entity_df columns it needs, its feature references).

    Each retrieval sends only the distinct (join keys, time) rows of its view. Besides being
    cheaper (one row per request for listener features), this sidesteps Feast's file offline
    store, which de-duplicates entity rows on the join keys of the views joined so far: rows
    of one listener at one time but with different items would otherwise collapse into one.
    On-demand (request) features ride along with the first batch view, with their inputs.
    """
    by_view: dict[str, list[str]] = {}
    for ref in refs:
        by_view.setdefault(ref.split(":", 1)[0], []).append(ref)
    batch = {v.name: v for v in store.list_feature_views()}
    on_demand = {v.name: v for v in store.list_on_demand_feature_views()}
    out: list[tuple[list[str], list[str]]] = []
    extra_refs: list[str] = []
    extra_columns: list[str] = []
    for view, view_refs in by_view.items():
        if view in on_demand:
            extra_refs += view_refs
            for source in on_demand[view].source_request_sources.values():
                extra_columns += [f.name for f in source.schema]
        else:
            keys = [c.name for c in batch[view].entity_columns]
            out.append(([*keys, catalog.EVENT_TIMESTAMP], view_refs))
    if extra_refs:
        if not out:
            raise ValueError("on-demand features need at least one batch view in the same join")
        columns, view_refs = out[0]
        out[0] = ([*columns, *dict.fromkeys(extra_columns)], [*view_refs, *extra_refs])
    return out


def service_refs(service: FeatureService, features: Sequence[str]) -> list[str]:
    """`view:feature` references of the named features, each of which the service must hold."""
    available = {
        f.name: f"{projection.name_to_use()}:{f.name}"
        for projection in service.feature_view_projections
        for f in projection.features
    }
    missing = [name for name in features if name not in available]
    if missing:
        raise ValueError(
            f"feature service {service.name!r} does not serve {', '.join(missing)}; "
            "add them to its definition (feature_repo/definitions.py) or stop asking for them"
        )
    return [available[name] for name in features]
