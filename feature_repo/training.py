"""Point-in-time training sets through Feast, with data minimization applied to every row."""

from __future__ import annotations

import pandas as pd
from feast import FeatureStore

from crossfade.features import catalog
from crossfade.features.policy import FeaturePolicy
from feature_repo.definitions import RANKER_SERVICE


def training_set(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    policy: FeaturePolicy,
    service: str = RANKER_SERVICE,
) -> pd.DataFrame:
    """Join features to labelled rows as of each row's `event_timestamp` (no leakage).

    `entity_df` needs the entity keys of the service's views and `event_timestamp` (the label
    time); Feast picks, per row, the newest snapshot at or before that time within the TTL.
    Features the row's region and age group may not use are replaced by their defaults;
    features with no snapshot in time get their defaults too, so no row carries a null.
    """
    if catalog.EVENT_TIMESTAMP not in entity_df.columns:
        raise ValueError(f"entity_df needs an {catalog.EVENT_TIMESTAMP!r} column (label time)")
    frame = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(service)
    ).to_df()
    for spec in catalog.FEATURES:
        if spec.name in frame.columns and frame[spec.name].isna().any():
            missing = frame[spec.name].isna()
            frame.loc[missing, spec.name] = pd.Series(
                [spec.default] * int(missing.sum()), index=frame.index[missing], dtype=object
            )
    return policy.apply(frame)
