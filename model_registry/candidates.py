"""MLflow glue for `crossfade-candidates`: a pyfunc bundling the whole candidate model.

The pyfunc takes a frame of requests (`user_id`, optionally `country`, `age_bucket`, `tier`,
`k`) and returns one row per candidate (`user_id`, `item_id`, `source` (the first that found
it), `sources` (all of them), `score`, `rank`).
Everything the model needs (factors, indexes, content model, popularity tables) travels as
one artifact folder, so a fresh process can load it by version or alias.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext

from crossfade.candidates.generator import Listener
from crossfade.candidates.model import CandidateModel
from crossfade.config import Settings
from model_registry.registry import use_experiment

ARTIFACT = "candidate_model"
OUTPUT_COLUMNS = ["user_id", "item_id", "source", "sources", "score", "rank"]


class CandidatePyfunc(PythonModel):
    """Serves `CandidateModel.generate` behind MLflow's pyfunc interface."""

    def load_context(self, context: PythonModelContext) -> None:
        """Load the model folder shipped as an artifact."""
        self.model = CandidateModel.load(Path(context.artifacts[ARTIFACT]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Candidates for every request row, as a long frame."""
        rows: list[dict[str, Any]] = []
        now = datetime.now(UTC)
        for request in model_input.to_dict("records"):
            user = str(request["user_id"])
            known = self.model.listener(user)
            listener = Listener(
                user,
                str(request.get("country") or known.country),
                str(request.get("age_bucket") or known.age_bucket),
                str(request.get("tier") or known.tier),
            )
            k = int(request.get("k") or 0) or None
            for rank, cand in enumerate(self.model.generate(user, now, listener, k=k)):
                rows.append(
                    {"user_id": user, "item_id": cand.item_id, "source": cand.source,
                     "sources": ",".join(cand.sources), "score": cand.score, "rank": rank}
                )  # fmt: skip
        return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


@dataclass
class Registered:
    """Where a trained model went."""

    run_id: str
    version: str
    model_uri: str


def register_candidates(
    model: CandidateModel,
    settings: Settings,
    metrics: dict[str, float],
    tags: dict[str, str],
    model_card: str,
) -> Registered:
    """Log the model with params, metrics, lineage tags and a model card; register a version."""
    use_experiment(settings, "crossfade-candidates")
    example = pd.DataFrame(
        {
            "user_id": model.profile_ids[:2] or ["u-example"],
            "k": [10] * min(2, max(1, len(model.profile_ids))),
        }
    )
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name="train-candidates") as run:
        folder = model.save(Path(tmp) / ARTIFACT)
        params = model.settings.model_dump(mode="json")
        mlflow.log_params(
            {
                "als.factors": params["als"]["factors"],
                "als.regularization": params["als"]["regularization"],
                "als.iterations": params["als"]["iterations"],
                "als.alpha": params["als"]["alpha"],
                "index.backend": params["index"]["backend"],
                "index.n_trees": params["index"]["n_trees"],
                "index.search_k": params["index"]["search_k"],
                "content_dim": params["content_dim"],
                "total": params["total"],
                "quotas": str(params["quotas"]),
            }
        )
        mlflow.log_metrics({k: float(v) for k, v in {**model.metrics, **metrics}.items()})
        mlflow.set_tags(tags)
        mlflow.log_text(model_card, "model_card.md")
        pyfunc = CandidatePyfunc()
        pyfunc.model = model
        output = pyfunc.predict(None, example)  # type: ignore[arg-type]
        info = mlflow.pyfunc.log_model(
            name="candidates",
            python_model=CandidatePyfunc(),
            artifacts={ARTIFACT: str(folder)},
            signature=infer_signature(example, output),
            input_example=example,
            registered_model_name=settings.candidates.model_name,
            pip_requirements=["crossfade"],
        )
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        for key, value in tags.items():
            client.set_model_version_tag(settings.candidates.model_name, version, key, value)
        client.set_model_version_tag(
            settings.candidates.model_name, version, "crossfade.model_card", "model_card.md"
        )
        return Registered(
            run.info.run_id, version, f"models:/{settings.candidates.model_name}/{version}"
        )


def load_candidates(settings: Settings, ref: str) -> Any:
    """Load a registered version ("3") or alias ("@champion") as a pyfunc."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    name = settings.candidates.model_name
    uri = f"models:/{name}{ref}" if ref.startswith("@") else f"models:/{name}/{ref}"
    return mlflow.pyfunc.load_model(uri)
