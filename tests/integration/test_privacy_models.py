"""MLflow artifacts stay under the data root, erasure reaches them, and every file is
owner-only: against a real MLflow SQLite registry and rollout store."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.config import Settings, load_settings
from crossfade.data import lake
from crossfade.data.simulator import simulate
from crossfade.safety.privacy import pseudonym_key
from deployments.rollout.store import RolloutStore
from model_registry.candidates import load_candidates, register_candidates
from model_registry.erasure import model_artifact_stores
from tests.conftest import SMALL_WORLD
from tests.unit.test_serving_pipeline import Served, served  # noqa: F401


def _artifact_dir(settings: Settings, version: str) -> Path:
    client = mlflow.MlflowClient(settings.tracking_uri)
    uri = client.get_model_version_download_uri(settings.candidates.model_name, version)
    assert uri.startswith("file:"), uri
    return Path(uri.removeprefix("file://"))


def test_model_artifacts_live_under_the_data_root_and_erasure_reaches_them(
    served: Served,  # noqa: F811
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    # an experiment an older version made with MLflow's default location (./mlruns)
    mlflow.set_tracking_uri(settings.tracking_uri)
    old = mlflow.MlflowClient().create_experiment("crossfade-candidates")

    registered = register_candidates(served.candidates, settings, {}, {}, "# card")
    assert list(cwd.iterdir()) == []  # no ./mlruns, nothing at all in the working directory
    folder = _artifact_dir(settings, registered.version)
    assert folder.is_relative_to(settings.mlflow_artifact_dir), folder
    aside = mlflow.MlflowClient().get_experiment(old)
    assert aside.name.startswith("crossfade-candidates-outside-data-root")

    recent = served.candidates.recent
    victim = max(recent, key=lambda u: len(recent[u]))
    ids = frozenset({victim})
    store = model_artifact_stores(settings)[0]
    found = store.find(ids)
    rows = {Path(f.location.split(": ", 1)[1]).name: f.rows for f in found if f.cleanable}
    assert rows.get("recent.parquet") == len(recent[victim]) and rows.get("listeners.parquet")
    held = [f for f in found if not f.cleanable]
    assert held and all("retrain" in f.note for f in held)  # said, not hidden

    removed = store.erase(ids)
    assert {Path(f.location).name for f in removed} >= {"recent.parquet", "listeners.parquet"}
    left = store.find(ids)
    assert left and all(not f.cleanable for f in left), left  # only what is inside the model
    model = load_candidates(settings, registered.version).unwrap_python_model().model
    assert victim not in model.recent and victim not in set(model.listeners[C.USER_ID])
    assert any(u != victim for u in model.recent)  # the others' rows stayed


def _loose(root: Path) -> list[str]:
    return [
        f"{p.relative_to(root)} {stat.filemode(p.stat().st_mode)}"
        for p in [root, *root.rglob("*")]
        if not p.is_symlink() and p.stat().st_mode & 0o077
    ]


def test_every_file_under_the_data_root_is_owner_only(
    served: Served,  # noqa: F811
    tmp_path: Path,
) -> None:
    previous = os.umask(0o022)  # a fresh process: nothing tightened yet
    try:
        settings = load_settings("local", data_root=tmp_path / "root", simulator=SMALL_WORLD)
        pseudonym_key(settings)  # the local key file
        batch = simulate(
            settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir
        )
        lake.publish_batch(batch, settings.lake_dir)
        register_candidates(served.candidates, settings, {}, {}, "# card")
        RolloutStore.from_settings(settings).read_state()
        logs = settings.data_root / "logs" / "requests"
        logs.mkdir(parents=True)
        pd.DataFrame({"listener_id": ["x"]}).to_parquet(logs / "part.parquet")
        names = {p.name for p in settings.data_root.rglob("*")}
        assert {"mlflow.db", "rollout.db", "pseudonym.key", "lake", "mlflow-artifacts"} <= names
        assert _loose(settings.data_root) == []
    finally:
        os.umask(previous)


def test_an_experiment_of_another_data_root_or_object_store_is_used_where_it_is(
    settings: Settings, tmp_path: Path
) -> None:
    """Only an old `mlruns` experiment is renamed aside: data roots sharing a tracking store
    (or an experiment on object storage) must not rename each other's experiments."""
    from model_registry.registry import use_experiment

    mlflow.set_tracking_uri(settings.tracking_uri)
    client = mlflow.MlflowClient()
    other_root = (tmp_path / "other-data-root" / "mlflow-artifacts" / "shared").as_uri()
    shared = client.create_experiment("shared", artifact_location=other_root)
    remote = client.create_experiment("remote", artifact_location="s3://bucket/crossfade")
    assert use_experiment(settings, "shared") == shared
    assert use_experiment(settings, "remote") == remote
    assert client.get_experiment(shared).name == "shared"
    assert client.get_experiment(remote).name == "remote"
    made = use_experiment(settings, "fresh")
    location = client.get_experiment(made).artifact_location
    assert location == (settings.mlflow_artifact_dir / "fresh").as_uri()
