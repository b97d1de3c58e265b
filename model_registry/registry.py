"""Shared MLflow registry helpers: aliases, champion lookup, version tags."""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"


def client(tracking_uri: str) -> mlflow.MlflowClient:
    """An MLflow client on the given tracking store."""
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient()


def version_by_alias(c: mlflow.MlflowClient, name: str, alias: str) -> Any | None:
    """The model version holding `alias`, or None when the alias (or model) does not exist."""
    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


AT = "_at_"  # MLflow metric names may not contain "@" ("ndcg@10" is logged as "ndcg_at_10")


def mlflow_metric_names(metrics: dict[str, float]) -> dict[str, float]:
    """Metric names as MLflow accepts them."""
    return {k.replace("@", AT): v for k, v in metrics.items()}


def run_metrics(c: mlflow.MlflowClient, version: Any) -> dict[str, float]:
    """Metrics of the run that produced a model version, under crossfade's names ("ndcg@10")."""
    if version is None or not version.run_id:
        return {}
    return {k.replace(AT, "@"): v for k, v in c.get_run(version.run_id).data.metrics.items()}


def promote(c: mlflow.MlflowClient, name: str, version: str, alias: str) -> None:
    """Point `alias` at `version`; promoting to champion keeps the old one as previous_champion."""
    if alias == CHAMPION:
        current = version_by_alias(c, name, CHAMPION)
        if current is not None and str(current.version) != str(version):
            c.set_registered_model_alias(name, PREVIOUS_CHAMPION, current.version)
    c.set_registered_model_alias(name, alias, version)
