"""Feast objects (entities, views, on-demand view, feature services) built from the catalogue.

`build_definitions(features_dir)` is the one place Feast objects are made: the flow applies
them programmatically and `repo.py` exposes them to the `feast` CLI. Every field comes from
`crossfade.features.catalog`, so Feast and the documentation cannot disagree.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Bool, Float32, Int64, String, UnixTimestamp
from feast.value_type import ValueType

from crossfade import columns as C
from crossfade.features import catalog

FEAST_TYPES: dict[str, Any] = {
    "int64": Int64,
    "float32": Float32,
    "string": String,
    "bool": Bool,
    "float32_list": Array(Float32),
}
# Snapshots are daily; a value older than this is not served by Feast's own reads either
# (crossfade's online path applies its own, stricter freshness budget: STACK-NOTES, #6821).
TTL = timedelta(days=3)
CANDIDATE_SERVICE = "candidate_features_v1"
# The request-context view is tiny and computed per row; Feast warns about on-demand views
# at every apply and read, which buries the messages people need to see.
warnings.filterwarnings("ignore", message="On demand feature view is an experimental feature")
RANKER_SERVICE = "ranker_features_v1"


@dataclass(frozen=True)
class Definitions:
    """Everything `feast apply` registers."""

    entities: list[Entity]
    views: dict[str, FeatureView]
    context_view: Any
    services: dict[str, FeatureService]

    def all(self) -> list[Any]:
        """Objects in the order FeatureStore.apply accepts them."""
        return [
            *self.entities,
            *self.views.values(),
            self.context_view,
            *self.services.values(),
        ]


def feature_table_path(features_dir: Path, view: str) -> Path:
    """Where the offline table of a batch view lives (one Parquet file, replaced atomically)."""
    return features_dir / f"{view}.parquet"


def _fields(view: str, describe: bool = True) -> list[Field]:
    # On-demand views compare their declared fields with inferred ones, description included.
    return [
        Field(
            name=f.name, dtype=FEAST_TYPES[f.dtype], description=f.description if describe else ""
        )
        for f in catalog.view_features(view)
    ]


def build_definitions(features_dir: Path) -> Definitions:
    """Build the Feast objects for feature tables stored under `features_dir`."""
    user = Entity(name="user", join_keys=[C.USER_ID], value_type=ValueType.STRING)
    item = Entity(name="item", join_keys=[C.ITEM_ID], value_type=ValueType.STRING)
    artist = Entity(name="artist", join_keys=[C.ARTIST_ID], value_type=ValueType.STRING)
    entity_of = {catalog.USER_VIEW: user, catalog.ITEM_VIEW: item, catalog.ARTIST_VIEW: artist}
    views: dict[str, FeatureView] = {}
    for view, entity in entity_of.items():
        source = FileSource(
            name=f"{view}_source",
            path=str(feature_table_path(features_dir, view)),
            timestamp_field=catalog.EVENT_TIMESTAMP,
            created_timestamp_column=catalog.CREATED,
        )
        views[view] = FeatureView(
            name=view,
            entities=[entity],
            ttl=TTL,
            schema=_fields(view),
            source=source,
            online=True,
            tags={"owner": "crossfade", "snapshot": "daily"},
        )

    request = RequestSource(
        name="request_input",
        schema=[
            Field(name="request_ts", dtype=UnixTimestamp),
            Field(name="utc_offset_minutes", dtype=Int64),
            Field(name="device", dtype=String),
            Field(name="platform", dtype=String),
        ],
    )

    @on_demand_feature_view(
        sources=[request],
        schema=_fields(catalog.CONTEXT_VIEW, describe=False),
        mode="pandas",
    )
    def request_context(inputs: pd.DataFrame) -> pd.DataFrame:  # named as catalog.CONTEXT_VIEW
        # Feast re-executes this function from its source text: import inside the body.
        from crossfade.features.context import request_context as compute

        return compute(inputs)

    assert request_context.name == catalog.CONTEXT_VIEW

    user_view, item_view = views[catalog.USER_VIEW], views[catalog.ITEM_VIEW]
    candidate_user = [
        "user_genre_affinity_28d",
        "user_language_affinity_28d",
        "user_country",
        "user_age_bucket",
        "user_plays_28d",
    ]
    services = {
        CANDIDATE_SERVICE: FeatureService(
            name=CANDIDATE_SERVICE,
            features=[user_view[candidate_user]],
            tags={"version": "1", "stage": "candidates"},
        ),
        RANKER_SERVICE: FeatureService(
            name=RANKER_SERVICE,
            features=[user_view, item_view, views[catalog.ARTIST_VIEW], request_context],
            tags={"version": "1", "stage": "ranker"},
        ),
    }
    return Definitions([user, item, artist], views, request_context, services)
