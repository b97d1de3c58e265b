"""Training flow, candidate stage: evaluate on a temporal holdout, train, register, gate.

1. Split the lake's events in time; train on the past and measure candidate recall@N on the
   holdout (overall, per source, new releases, new listeners) against a popularity baseline.
2. Train the model to be released on all events.
3. Log it to MLflow with parameters, metrics, lineage tags and a model card; register a
   version of `crossfade-candidates`.
4. Gate: the version earns the alias `challenger` only if its recall@200 beats the
   popularity baseline on the holdout; otherwise it stays registered without an alias.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import mlflow
import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from crossfade.candidates.model import CandidateModel, train_candidates
from crossfade.config import Settings, load_settings
from crossfade.data import lake
from crossfade.evaluation.candidates import holdout_recall
from crossfade.evaluation.splits import temporal_split
from crossfade.log import get_logger
from crossfade.safety.bots import human_events
from crossfade.safety.paths import bot_flags_dir
from feature_repo.definitions import CANDIDATE_SERVICE
from model_registry.candidates import register_candidates
from model_registry.lineage import lineage_tags

log = get_logger("flows.train")
HOLDOUT_DAYS = 2
GATE_METRIC = "recall_at_200"
CHALLENGER = "challenger"


@dataclass
class TrainOutcome:
    """What a candidate training run produced."""

    version: str
    run_id: str
    model_uri: str
    metrics: dict[str, float]
    gate_passed: bool
    alias: str | None
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _frames(settings: Settings) -> dict[str, pd.DataFrame]:
    read = lambda name: lake.read_lake_table(settings.lake_dir, name).to_pandas()  # noqa: E731
    frames = {name: read(name) for name in ("events", "items", "users", "onboarding")}
    frames["events"], removed = human_events(frames["events"], bot_flags_dir(settings))
    if removed:
        log.info("flagged accounts excluded", extra={"accounts": removed})
    if frames["events"].empty:
        raise ValueError(
            f"the lake at {settings.lake_dir} has no events: run `crossfade data ingest` first"
        )
    return frames


@task(name="evaluate-candidates", cache_policy=NO_CACHE)
def holdout_evaluation(settings: Settings, frames: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Train on the past, measure recall on the last days, and the popularity baseline."""
    split = temporal_split(frames["events"], HOLDOUT_DAYS)
    assert split.cutoff is not None
    return holdout_recall(
        split.train, split.test, split.cutoff, frames, settings.candidates, settings.seed
    )


@task(name="train-candidates", cache_policy=NO_CACHE)
def train_final(settings: Settings, frames: dict[str, pd.DataFrame]) -> CandidateModel:
    """Train the version to be released on every event in the lake."""
    return train_candidates(
        frames["events"], frames["items"], frames["users"], frames["onboarding"],
        settings.candidates, settings.seed,
    )  # fmt: skip


def model_card(model: CandidateModel, metrics: dict[str, float], tags: dict[str, str]) -> str:
    """A short Markdown card: what the model is, what it was trained on, how it measured."""
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    return (
        "# crossfade-candidates\n\n"
        "Retrieval for the Home shelves and Discover Weekly: collaborative (implicit ALS), "
        "content, cold start (new releases mapped into the collaborative space; new listeners "
        "by cohort popularity and onboarding picks), popular in market, fresh releases and "
        "podcast episodes, merged with per-source quotas. Filters: recently heard, market "
        "availability, explicit content for minors.\n\n"
        f"- trained at: {model.trained_at.isoformat()}\n"
        f"- data snapshot: {tags.get('crossfade.data_snapshot')}\n"
        f"- code: {tags.get('crossfade.git_sha')}\n"
        f"- listeners with collaborative factors: {len(model.cf.user_ids):,}; "
        f"items: {len(model.cf.item_ids):,} warm, "
        f"{int(model.metrics.get('cold_items', 0)):,} cold\n\n"
        "## Holdout metrics (temporal split, last 2 days)\n\n| metric | value |\n|---|---|\n"
        f"{rows}\n\n"
        "## Limits\n\nMeasured on the simulated world; accounts flagged by the bot detector "
        "(latest run) are excluded from training and evaluation. Recall counts non-skipped "
        "plays of items new to the listener.\n"
    )


@flow(name="train-candidates")
def train_candidates_flow(profile: str | None = None) -> dict[str, Any]:
    """Evaluate, train, register and gate the candidate model."""
    settings = load_settings(profile)
    frames = _frames(settings)
    metrics = holdout_evaluation(settings, frames)
    model = train_final(settings, frames)
    tags = lineage_tags(settings, CANDIDATE_SERVICE)
    registered = register_candidates(
        model, settings, metrics, tags, model_card(model, metrics, tags)
    )
    ours = metrics.get(GATE_METRIC, 0.0)
    base = metrics.get(f"baseline_popular_{GATE_METRIC}", 0.0)
    passed = ours > base
    reasons = [f"{GATE_METRIC} {ours:.4f} vs popularity baseline {base:.4f}"]
    client = mlflow.MlflowClient()
    name = settings.candidates.model_name
    client.set_model_version_tag(
        name, registered.version, "crossfade.gate", "passed" if passed else "failed"
    )
    client.set_model_version_tag(name, registered.version, "crossfade.gate_reason", reasons[0])
    if passed:
        client.set_registered_model_alias(name, CHALLENGER, registered.version)
    outcome = TrainOutcome(
        registered.version, registered.run_id, registered.model_uri, metrics, passed,
        CHALLENGER if passed else None, reasons,
    )  # fmt: skip
    create_markdown_artifact(
        f"# Candidates v{outcome.version}: gate {'passed' if passed else 'FAILED'}\n\n"
        f"- {reasons[0]}\n- model: `{outcome.model_uri}`\n- run: `{outcome.run_id}`\n",
        key="candidates-summary",
    )
    create_table_artifact(
        [{"metric": k, "value": round(v, 4)} for k, v in sorted(metrics.items())],
        key="candidates-metrics",
    )
    log.info("candidates registered", extra={"version": outcome.version, "gate": passed})
    return outcome.to_dict()
