"""Shared MLflow registry helpers: aliases, champion lookup, version tags."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.exceptions import MlflowException

from crossfade.config import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"


def use_experiment(settings: Settings, name: str) -> str:
    """Make `name` the active experiment, its artifacts under the data root; returns its id.

    MLflow's default artifact root is `./mlruns` in the working directory, outside the data
    root (and outside erasure, backups and permissions), on every profile without an artifact
    server; so the experiment is created with its location under `mlflow_artifact_dir`. An
    experiment made elsewhere by an older version is renamed aside (its runs and registered
    versions stay readable) and a new one takes the name.
    """
    mlflow.set_tracking_uri(settings.tracking_uri)
    c = mlflow.MlflowClient()
    folder = settings.mlflow_artifact_dir / name
    found = c.get_experiment_by_name(name)
    if found is not None and not _under(found.artifact_location, settings.mlflow_artifact_dir):
        aside = f"{name}-outside-data-root-{found.experiment_id}"
        log.warning(
            "MLflow experiment keeps its artifacts outside the data root: renamed aside",
            extra={"experiment": name, "renamed": aside, "location": found.artifact_location},
        )
        c.rename_experiment(found.experiment_id, aside)
        found = None
    if found is None:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            experiment_id = c.create_experiment(name, artifact_location=folder.as_uri())
        except MlflowException:  # another process created it first
            made = c.get_experiment_by_name(name)
            if made is None:
                raise
            experiment_id = made.experiment_id
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def _under(location: str, folder: Path) -> bool:
    """Whether an MLflow artifact location (URI or path) lies inside `folder`."""
    path = Path(location)
    if location.startswith("file:"):
        path = Path(unquote(urlparse(location).path))
    return path.is_absolute() and path.resolve().is_relative_to(folder.resolve())


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
