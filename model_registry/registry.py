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
    root (and outside erasure, backups and permissions). So, when the tracking store is a
    database the client writes to directly, a new experiment is created with its location
    under `mlflow_artifact_dir`, and one left in an `mlruns` folder by an older version is
    renamed aside (its runs and registered versions stay readable). A tracking server
    (`http(s)://`) decides its own artifact store, and an experiment whose location is
    anything else (object storage, another data root sharing the tracking store) is used
    where it is: renaming it would only make data roots rename each other's experiments.
    """
    mlflow.set_tracking_uri(settings.tracking_uri)
    if urlparse(settings.tracking_uri).scheme in SERVER_SCHEMES:
        return str(mlflow.set_experiment(name).experiment_id)
    c = mlflow.MlflowClient()
    found = c.get_experiment_by_name(name)
    if found is not None and _default_root(found.artifact_location):
        aside = f"{name}-outside-data-root-{found.experiment_id}"
        log.warning(
            "MLflow experiment keeps its artifacts in a working-directory mlruns: renamed aside",
            extra={"experiment": name, "renamed": aside, "location": found.artifact_location},
        )
        c.rename_experiment(found.experiment_id, aside)
        found = None
    if found is None:
        folder = settings.mlflow_artifact_dir / name
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


SERVER_SCHEMES = ("http", "https")
MLFLOW_DEFAULT_ROOT = "mlruns"


def local_path(location: str) -> Path | None:
    """The local path of an MLflow artifact location (a `file:` URI or a path); None if remote."""
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    return Path(location) if "://" not in location and Path(location).is_absolute() else None


def _default_root(location: str) -> bool:
    """Whether an artifact location lies in MLflow's default `mlruns` root (an old version's)."""
    path = local_path(location)
    return path is not None and MLFLOW_DEFAULT_ROOT in path.parts


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
