"""Build a `RecommendationPipeline` from the registry, the online store and the lake.

Everything slow happens here, off the request path: MLflow model loads (by alias or
version), the Feast online reader, the item-feature cache, the listeners' artist history.
"""

from __future__ import annotations

import time
from typing import Any

import mlflow
import numpy as np

from crossfade import columns as C
from crossfade.candidates.model import CandidateModel
from crossfade.config import Settings
from crossfade.data import lake
from crossfade.features.online import OnlineFeatures
from crossfade.features.policy import load_policy
from crossfade.log import get_logger
from crossfade.ranking.compiled import CompiledForest, CompileError, agree, compile_ranker
from crossfade.ranking.dataset import History
from crossfade.reranking import Reranker, default_reranking_path, load_reranking
from crossfade.safety.erased import ErasedListeners
from crossfade.serving.pipeline import ModelSet, RecommendationPipeline
from model_registry.candidates import load_candidates
from model_registry.ranker import MODEL_NAME as RANKER_NAME
from model_registry.ranker import load_ranker

log = get_logger("deployments.recommender")


class ModelLoadError(RuntimeError):
    """A model ref could not be loaded; the message names the model and the ref."""


def _uri_ref(ref: str) -> str:
    """MLflow's spelling: "3" stays a version, "champion" becomes "@champion"."""
    return ref if ref.isdigit() or ref.startswith("@") else f"@{ref}"


def _version(settings: Settings, name: str, ref: str) -> str:
    """The version number a ref points at (for the response's `model` field)."""
    if ref.isdigit():
        return ref
    client = mlflow.MlflowClient(settings.tracking_uri)
    return str(client.get_model_version_by_alias(name, ref.lstrip("@")).version)


def load_models(settings: Settings, candidates_ref: str, ranker_ref: str) -> ModelSet:
    """Both models by alias or version; raises ModelLoadError naming the ref that failed."""
    try:
        pyfunc = load_candidates(settings, _uri_ref(candidates_ref))
        candidates = pyfunc.unwrap_python_model().model
        if not isinstance(candidates, CandidateModel):
            raise TypeError(f"not a CandidateModel: {type(candidates).__name__}")
        c_version = _version(settings, settings.candidates.model_name, candidates_ref)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load {settings.candidates.model_name} {candidates_ref!r}: {exc}"
        ) from exc
    try:
        ranker = load_ranker(settings, ranker_ref)
        r_version = _version(settings, RANKER_NAME, ranker_ref)
    except Exception as exc:
        raise ModelLoadError(f"cannot load {RANKER_NAME} {ranker_ref!r}: {exc}") from exc
    return ModelSet(candidates, ranker, c_version, r_version)


# a compiled forest must score what LightGBM scores, up to float rounding
COMPILED_TOLERANCE = 1e-6


def compiled_ranker(settings: Settings, models: ModelSet) -> dict[str, CompiledForest]:
    """The ranker's trees as native code per tier (compiled once per model and machine,
    then loaded from <data root>/cache), checked against LightGBM on sample inputs; empty
    (LightGBM's own predict serves) when switched off, on failure or on disagreement."""
    ranker = models.ranker
    if not settings.serving.compiled_ranker or ranker is None:
        return {}
    started = time.perf_counter()
    try:
        compiled = compile_ranker(ranker, settings.cache_dir / "ranker")
    except CompileError as exc:
        log.warning("serving the ranker with LightGBM", extra={"error": str(exc)})
        return {}
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(256, len(ranker.features)))
    sample[rng.random(sample.shape) < 0.05] = np.nan
    worst = agree(compiled, ranker, {tier: sample for tier in compiled})
    if not worst <= COMPILED_TOLERANCE:
        log.warning(
            "compiled ranker disagrees with LightGBM: serving LightGBM",
            extra={"max_abs_difference": worst, "ranker": models.ranker_version},
        )
        return {}
    log.info(
        "ranker compiled",
        extra={
            "ranker": models.ranker_version,
            "seconds": round(time.perf_counter() - started, 2),
            "max_abs_difference": worst,
        },
    )
    return compiled


def open_online_features(settings: Settings) -> OnlineFeatures | None:
    """The Feast online path, or None when no store was materialized (defaults are served)."""
    try:
        from feature_repo.online_reader import FeastOnlineReader, read_marker
        from feature_repo.store import open_store

        if read_marker(settings.features_dir) is None:
            log.warning("no materialized online store: serving feature defaults")
            return None
        reader = FeastOnlineReader(open_store(settings), settings.features_dir)
    except Exception as exc:
        log.warning("online store unavailable: serving feature defaults", extra={"error": str(exc)})
        return None
    policy = load_policy(settings.config_path / settings.features.policy_file)
    return OnlineFeatures(reader, settings.features.freshness_hours, policy)


def listener_history(settings: Settings) -> tuple[History, dict[str, str]]:
    """Artist shares per listener and artist names, from the lake (empty without a lake)."""
    try:
        events = lake.read_lake_table(settings.lake_dir, "events").to_pandas()
        items = lake.read_lake_table(settings.lake_dir, "items").to_pandas()
    except Exception as exc:
        log.warning("no lake to read listening history from", extra={"error": str(exc)})
        return History({}), {}
    names = (
        dict(zip(items[C.ARTIST_ID].astype(str), items[C.ARTIST_NAME].astype(str), strict=True))
        if C.ARTIST_NAME in items
        else {}
    )
    return History.from_events(events[[C.USER_ID, C.ITEM_ID]], items), names


def build_pipeline(
    settings: Settings,
    candidates_ref: str,
    ranker_ref: str,
    features: OnlineFeatures | None,
    history: tuple[History, dict[str, str]],
) -> RecommendationPipeline:
    """Load the models and assemble a warmed pipeline (item cache filled)."""
    started = time.perf_counter()
    models = load_models(settings, candidates_ref, ranker_ref)
    compiled = compiled_ranker(settings, models)
    pipeline = RecommendationPipeline(
        models,
        features,
        Reranker(load_reranking(default_reranking_path())),
        settings.serving.budgets_ms,
        rerank_depth=settings.serving.rerank_depth,
        history=history[0],
        policy=features.policy if features is not None else None,
        artist_names=history[1],
        compiled=compiled,
        erased=ErasedListeners.of(settings),  # docs/privacy.md: erasure and serving
    )
    pipeline.warm()
    pipeline.warm_up()
    extra: dict[str, Any] = {
        "candidates": models.candidates_version,
        "ranker": models.ranker_version,
        "seconds": round(time.perf_counter() - started, 2),
        "compiled_ranker": bool(compiled),
    }
    log.info("models loaded", extra=extra)
    return pipeline
