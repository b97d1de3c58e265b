"""MLflow glue for `crossfade-ranker`: a pyfunc scoring (request, candidate) feature rows."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext

from crossfade.config import Settings
from crossfade.ranking.ranker import RankerModel
from model_registry.registry import mlflow_metric_names, use_experiment

ARTIFACT = "ranker_model"
MODEL_NAME = "crossfade-ranker"
TIER = "tier"


class RankerPyfunc(PythonModel):
    """Scores feature rows with the booster of each row's tier."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the boosters shipped as an artifact."""
        self.model = RankerModel.load(Path(context.artifacts[ARTIFACT]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.Series:
        """One score per row (higher ranks first)."""
        return pd.Series(
            self.model.predict(model_input, TIER), index=model_input.index, name="score"
        )


def register_ranker(
    model: RankerModel,
    settings: Settings,
    example: pd.DataFrame,
    metrics: dict[str, float],
    tags: dict[str, str],
    model_card: str,
    importance_png: Path | None = None,
) -> tuple[str, str]:
    """Log the ranker (params, metrics, lineage, card, importance plot): (run id, version)."""
    use_experiment(settings, MODEL_NAME)
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name="train-ranker") as run:
        folder = model.save(Path(tmp) / ARTIFACT)
        mlflow.log_params(
            {
                "features": ",".join(model.features),
                **{f"trees.{t}": n for t, n in model.best_iterations.items()},
            }
        )
        mlflow.log_metrics(mlflow_metric_names(metrics))
        mlflow.set_tags(tags)
        mlflow.log_text(model_card, "model_card.md")
        if importance_png is not None:
            mlflow.log_artifact(str(importance_png))
        sample = example[[*model.features, TIER]].head(5)
        info = mlflow.pyfunc.log_model(
            name="ranker",
            python_model=RankerPyfunc(),
            artifacts={ARTIFACT: str(folder)},
            signature=infer_signature(sample, pd.Series(model.predict(sample, TIER), name="score")),
            input_example=sample,
            registered_model_name=MODEL_NAME,
            pip_requirements=["crossfade"],
        )
        version = str(info.registered_model_version)
        c = mlflow.MlflowClient()
        for key, value in tags.items():
            c.set_model_version_tag(MODEL_NAME, version, key, value)
        return run.info.run_id, version


def load_ranker(settings: Settings, ref: str) -> RankerModel:
    """Load a registered version ("3") or alias ("champion" / "@champion") as a RankerModel."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    alias = ref[1:] if ref.startswith("@") else ref
    uri = f"models:/{MODEL_NAME}/{ref}" if ref.isdigit() else f"models:/{MODEL_NAME}@{alias}"
    pyfunc = mlflow.pyfunc.load_model(uri)
    model = pyfunc.unwrap_python_model().model
    if not isinstance(model, RankerModel):
        raise TypeError(f"{uri} does not hold a crossfade RankerModel (got {type(model).__name__})")
    return model


def candidates_version_of(settings: Settings, ranker_ref: str) -> str:
    """The `crossfade-candidates` version a ranker version (or alias) was trained and gated
    with: a release is the pair, so serving and experiments load them together."""
    c = mlflow.MlflowClient(settings.tracking_uri)
    alias = ranker_ref.lstrip("@")
    version = (
        c.get_model_version(MODEL_NAME, alias)
        if alias.isdigit()
        else c.get_model_version_by_alias(MODEL_NAME, alias)
    )
    found = version.tags.get("crossfade.candidate_model_version", "none")
    if found == "none":
        raise ValueError(
            f"{MODEL_NAME} {ranker_ref} has no candidate model lineage tag "
            "(crossfade.candidate_model_version); retrain it with `crossfade train ranker`"
        )
    return str(found)
