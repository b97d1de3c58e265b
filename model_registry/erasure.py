"""Erasure from MLflow model artifacts: registered versions' folders and the artifact root.

The core's erasure registry cannot reach the registry, so this store is registered from the
CLI (`flows/cli.py`). It scans every registered version of the candidate and ranker models
where its artifacts really are (`get_model_version_download_uri`: also a version logged by an
older release under `./mlruns`), plus everything under `<data root>/mlflow-artifacts`.

- Row files (Parquet, CSV with a listener column, pickled DataFrames) lose the listener's
  rows, rewritten atomically: the candidate model's `recent.parquet` (what each listener heard
  lately) and `listeners.parquet` (country, age, tier, plays) are such rows.
- The listener inside a trained model's parameters (ALS user factors and content profiles,
  keyed by `model.json` / `cf` ids; input examples) is found (JSON values, raw bytes) and
  reported as not cleanable here: rewriting parameters would change a released model. Serving
  ignores an erased listener while the loaded models hold them (`crossfade.safety.erased`), and
  retraining on the erased lake removes them for good.
"""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crossfade.config import Settings
from crossfade.data import lake
from crossfade.safety.erasure import (
    ID_COLUMNS,
    RAW_USER_COLUMNS,
    Eraser,
    Finding,
    byte_hits,
    delimited_lines,
    parquet_rows,
    register_store_factory,
    scrub_json,
    without_ids,
)
from model_registry.ranker import MODEL_NAME as RANKER_NAME

STORE = "model_artifacts"
RETRAIN = (
    "inside the trained model ({what}): retrain on the erased lake and release; until then "
    "serving answers the listener non-personalized"
)
PICKLE_SUFFIXES = (".pkl", ".pickle")


def artifact_folders(settings: Settings) -> tuple[dict[Path, str], list[str]]:
    """Folder -> label of every registered version's artifacts and of the artifact root, and
    the versions whose artifacts are not on local disk (they cannot be scanned from here)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from model_registry.registry import local_path

    folders: dict[Path, str] = {settings.mlflow_artifact_dir: "artifact root"}
    remote: list[str] = []
    client = mlflow.MlflowClient(settings.tracking_uri)
    for name in (settings.candidates.model_name, RANKER_NAME):
        try:
            versions = client.search_model_versions(f"name = '{name}'")
        except MlflowException:
            continue
        for version in versions:
            label = f"{name} v{version.version}"
            uri = client.get_model_version_download_uri(name, version.version)
            path = local_path(uri)
            if path is None:
                remote.append(f"{label} ({uri})")
            else:
                folders[path] = label
    return folders, remote


def _pickled_frame(path: Path) -> pd.DataFrame | None:
    try:
        value = pd.read_pickle(path)
    except (pickle.UnpicklingError, EOFError, ImportError, AttributeError, ValueError, TypeError):
        return None
    return value if isinstance(value, pd.DataFrame) else None


def _frame_column(frame: pd.DataFrame) -> str | None:
    names = {str(c).lower(): c for c in frame.columns}
    hit = next((names[c] for c in (*ID_COLUMNS, *sorted(RAW_USER_COLUMNS)) if c in names), None)
    return None if hit is None else str(hit)


@dataclass
class ModelArtifactsEraser:
    """Registered model versions' artifact folders (see the module docstring)."""

    folders: dict[Path, str]
    remote: list[str] = field(default_factory=list)
    name: str = STORE

    def _files(self) -> Iterator[tuple[Path, str]]:
        seen: set[Path] = set()
        for folder, label in sorted(self.folders.items(), key=lambda kv: len(str(kv[0]))):
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                real = path.resolve()
                if path.is_file() and not path.is_symlink() and real not in seen:
                    seen.add(real)
                    yield path, label

    def _scan(self, path: Path, label: str, ids: frozenset[str], write: bool) -> Finding | None:
        where = f"{label}: {path}"
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            if not write:
                rows = parquet_rows(path, ids)
                return Finding(self.name, where, rows) if rows else None
            result = without_ids(path, ids)
            if result is None:
                return None
            lake.atomic_write_parquet(result[0], path)
            return Finding(self.name, where, result[1])
        if suffix == ".csv":
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            keep, rows = delimited_lines(text, ids, first_column=False)
            if rows and write:
                data = "".join(keep).encode("utf-8", errors="surrogateescape")
                lake.atomic_write_bytes(path, data)
            if rows:
                return Finding(self.name, where, rows)
        if suffix in PICKLE_SUFFIXES:
            frame = _pickled_frame(path)
            column = None if frame is None else _frame_column(frame)
            if frame is not None and column is not None:
                hit = frame[column].astype(str).isin(ids)
                rows = int(hit.sum())
                if rows and write:
                    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
                    try:
                        frame[~hit].to_pickle(tmp)
                        tmp.replace(path)
                    finally:
                        tmp.unlink(missing_ok=True)
                return Finding(self.name, where, rows) if rows else None
        return self._inside_model(path, where, ids)

    def _inside_model(self, path: Path, where: str, ids: frozenset[str]) -> Finding | None:
        data = path.read_bytes()
        hits = 0
        if path.suffix.lower() == ".json":
            try:
                hits = scrub_json(json.loads(data), ids)[1]
            except (json.JSONDecodeError, UnicodeDecodeError):
                hits = 0
        hits = hits or byte_hits(data, ids)
        if not hits:
            return None
        what = "model parameters" if path.suffix.lower() != ".json" else "model metadata"
        return Finding(self.name, where, hits, False, RETRAIN.format(what=what))

    def erase(self, ids: frozenset[str]) -> list[Finding]:
        """Rewrite the row files that hold the ids; what is inside a model stays (see find)."""
        found = (self._scan(path, label, ids, write=True) for path, label in self._files())
        return [f for f in found if f is not None and f.cleanable]

    def find(self, ids: frozenset[str]) -> list[Finding]:
        """Where the ids remain, and the versions that could not be scanned from here."""
        found = [self._scan(path, label, ids, write=False) for path, label in self._files()]
        unreachable = [
            Finding(self.name, where, 0, False, "artifacts not on this machine: scan them there")
            for where in self.remote
        ]
        return [f for f in found if f is not None] + unreachable


def model_artifact_stores(settings: Settings) -> list[Eraser]:
    """The model-artifacts store for these settings."""
    folders, remote = artifact_folders(settings)
    return [ModelArtifactsEraser(folders, remote)]


def register() -> None:
    """Add the model artifacts to the erasure registry (idempotent)."""
    register_store_factory(STORE, model_artifact_stores)
