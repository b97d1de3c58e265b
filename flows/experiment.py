"""Experiment flow: a registered challenger against the champion on the simulator's listeners.

Thin: it resolves two `crossfade-ranker` references (aliases such as `@champion`,
`@challenger`, or version numbers), loads each with a candidate model (given, or the one in
the ranker's lineage) into the same serving pipeline the recommender runs (features,
candidates, ranker, re-ranker, fallbacks), wraps each as a policy and hands over to
`crossfade.experiments.run.run_simulated`,
which simulates the listeners' responses from the ground truth, analyses with daily looks,
decides and writes the HTML report. The decision and the report path become a Prefect
artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from crossfade.config import load_settings
from crossfade.data.simulator.world import World
from crossfade.experiments.definition import experiments_config_dir, load_definition
from crossfade.experiments.policies import PipelinePolicy, Policy
from crossfade.experiments.run import load_world, run_simulated
from deployments.recommender.loading import build_pipeline, listener_history, open_online_features
from model_registry.ranker import candidates_version_of

DEFAULT_EXPERIMENT = "discover_ranker"


@task(cache_policy=NO_CACHE)
def load_policy(
    profile: str | None, ranker_ref: str, world: World, candidates_ref: str | None = None
) -> PipelinePolicy:
    """A registered ranker version with a candidate model (default: the one in the ranker's
    lineage) as the full serving stack."""
    settings = load_settings(profile)
    candidates = candidates_ref or candidates_version_of(settings, ranker_ref)
    pipeline = build_pipeline(
        settings,
        candidates,
        ranker_ref.lstrip("@"),
        open_online_features(settings),
        listener_history(settings),
    )
    name = f"ranker {ranker_ref.lstrip('@')}, candidates {candidates.lstrip('@')}"
    return PipelinePolicy(pipeline, world, name=name)


@flow(name="experiment")
def experiment_flow(
    profile: str | None = None,
    control_ref: str = "@champion",
    treatment_ref: str = "@challenger",
    experiment: str = DEFAULT_EXPERIMENT,
    days: int = 7,
    control_candidates: str | None = None,
    treatment_candidates: str | None = None,
) -> dict[str, Any]:
    """Run the simulated A/B test of `treatment_ref` against `control_ref` and decide; each
    ranker runs with its lineage's candidate model unless one is given."""
    settings = load_settings(profile)
    definition = load_definition(
        experiments_config_dir(settings.config_path) / f"{experiment}.yaml"
    )
    world = load_world(settings)
    policies: dict[str, Policy] = {
        definition.control: load_policy(profile, control_ref, world, control_candidates),
        definition.treatments[0]: load_policy(profile, treatment_ref, world, treatment_candidates),
    }
    analysis, report = run_simulated(
        settings,
        world,
        definition,
        policies,
        days,
        no_ramp=True,
        title=f"Experiment {definition.name}: {treatment_ref} vs {control_ref}",
    )
    result = analysis.to_dict()
    reasons = "\n".join(f"- {r}" for r in result["reasons"])
    create_markdown_artifact(
        f"## {definition.name}: **{result['decision']}**\n\n{reasons}\n\nreport: `{report}`",
        key="experiment-decision",
    )
    return {"decision": result["decision"], "reasons": result["reasons"], "report": str(report)}
