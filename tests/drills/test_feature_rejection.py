"""Drill: bad feature tables never reach the online store; the last good values keep serving."""

from __future__ import annotations

import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.simulator import simulate
from crossfade.features import catalog
from crossfade.features.online import OnlineFeatures
from feature_repo.definitions import feature_table_path
from feature_repo.online_reader import FeastOnlineReader, read_marker
from feature_repo.store import open_store
from flows import features as features_module
from flows.features import FeaturesRejected, features_flow

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_rejected_tables_stop_materialization(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    lake.publish_batch(batch, settings.lake_dir)
    assert features_flow()["status"] == "materialized"
    good_table = pd.read_parquet(feature_table_path(settings.features_dir, catalog.USER_VIEW))
    user = str(good_table.sort_values("user_plays_28d")[C.USER_ID].iloc[-1])
    reader = FeastOnlineReader(open_store(settings), settings.features_dir)
    before = OnlineFeatures(reader, settings.features.freshness_hours).user(user)
    marker_before = read_marker(settings.features_dir)

    real = features_module.user_features

    def corrupted(*args: object) -> pd.DataFrame:
        frame = real(*args)  # type: ignore[arg-type]
        frame.loc[frame[C.USER_ID] == user, "user_plays_28d"] = 123_456
        frame.loc[frame.index[:3], "user_skip_rate_7d"] = 1.5  # a rate above 1
        return frame

    monkeypatch.setattr(features_module, "user_features", corrupted)
    with pytest.raises(FeaturesRejected) as info:
        features_flow()
    outcome = info.value.outcome
    assert outcome.status == "rejected"
    assert any(
        "user_skip_rate_7d" in line and "outside [0.0, 1.0]" in line for line in outcome.failures
    )
    assert read_marker(settings.features_dir) == marker_before
    served = OnlineFeatures(reader, settings.features.freshness_hours).user(user)
    assert served.values["user_plays_28d"] == before.values["user_plays_28d"] != 123_456
    offline = pd.read_parquet(feature_table_path(settings.features_dir, catalog.USER_VIEW))
    assert (offline["user_skip_rate_7d"] <= 1).all()  # the published table was not replaced
    kept = pd.read_parquet(f"{outcome.quarantine}/{catalog.USER_VIEW}.parquet")
    assert (kept["user_skip_rate_7d"] > 1).sum() == 3  # the rejected table is kept for inspection
