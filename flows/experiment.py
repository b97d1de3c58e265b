"""Experiment flow: a registered challenger against the champion on the simulator's listeners.

Thin: it resolves the two registry references (aliases such as `@champion`, `@challenger`, or
version numbers) of `crossfade-candidates`, wraps each as a policy and hands over to
`crossfade.experiments.run.run_simulated`, which simulates, analyses with daily looks,
decides and writes the HTML report. The decision and the report path become a Prefect
artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from crossfade.candidates.model import CandidateModel
from crossfade.config import load_settings
from crossfade.experiments.definition import experiments_config_dir, load_definition
from crossfade.experiments.policies import CandidatePolicy, Policy
from crossfade.experiments.run import load_world, run_simulated
from model_registry.candidates import load_candidates

DEFAULT_EXPERIMENT = "discover_ranker"


@task(cache_policy=NO_CACHE)
def load_policy(profile: str | None, ref: str) -> CandidatePolicy:
    """A registered candidate model version as a policy named by its reference."""
    settings = load_settings(profile)
    model = load_candidates(settings, ref).unwrap_python_model().model
    if not isinstance(model, CandidateModel):
        raise TypeError(f"{ref} does not hold a crossfade CandidateModel")
    return CandidatePolicy(model, name=ref.lstrip("@"))


@flow(name="experiment")
def experiment_flow(
    profile: str | None = None,
    control_ref: str = "@champion",
    treatment_ref: str = "@challenger",
    experiment: str = DEFAULT_EXPERIMENT,
    days: int = 7,
) -> dict[str, Any]:
    """Run the simulated A/B test of `treatment_ref` against `control_ref` and decide."""
    settings = load_settings(profile)
    definition = load_definition(
        experiments_config_dir(settings.config_path) / f"{experiment}.yaml"
    )
    policies: dict[str, Policy] = {
        definition.control: load_policy(profile, control_ref),
        definition.treatments[0]: load_policy(profile, treatment_ref),
    }
    analysis, report = run_simulated(
        settings,
        load_world(settings),
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
