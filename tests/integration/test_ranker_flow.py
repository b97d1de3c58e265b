"""The ranker flow: first version becomes champion; a deliberately worse one is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.simulator import simulate
from crossfade.ranking.labels import LABEL
from flows import train_ranker as flow_module
from flows.features import features_flow
from flows.train_ranker import train_ranker_flow
from model_registry.ranker import MODEL_NAME

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_champion_then_a_worse_challenger_is_refused_with_its_reason(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    lake.publish_batch(batch, settings.lake_dir)
    with pytest.raises(ValueError, match="features flow"):
        flow_module.join_store_features.fn(settings, pd.DataFrame())  # no feature tables yet
    features_flow()  # the ranker's listener and item features come from the feature store
    first = train_ranker_flow()
    failed = [r for r in first["reasons"] if "breach" in r or "refused" in r or "fail" in r]
    assert first["passed"] and first["alias"] == "champion", failed
    assert first["metrics"]["ndcg@10"] > 0
    assert (
        Path(first["report"]).is_file() and "Metrics by slice" in Path(first["report"]).read_text()
    )

    real_fit = flow_module.fit_ranker

    def sabotaged(train: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        shuffled = train.copy()
        shuffled[LABEL] = np.random.default_rng(0).permutation(shuffled[LABEL].to_numpy())
        return real_fit(shuffled, *args, **kwargs)  # labels carry no signal: a worse model

    monkeypatch.setattr(flow_module, "fit_ranker", sabotaged)
    second = train_ranker_flow()
    assert not second["passed"] and second["alias"] is None
    assert any("ndcg@10" in reason for reason in second["reasons"])
    client = mlflow.MlflowClient(settings.tracking_uri)
    version = client.get_model_version(MODEL_NAME, second["version"])
    assert version.tags["crossfade.gate"] == "refused"
    assert "ndcg@10" in version.tags["crossfade.gate_reasons"]
    assert (
        str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) == first["version"]
    )
