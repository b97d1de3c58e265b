"""Glue for a simulated experiment: load the world, build built-in policies, simulate,
analyse, write the report. Used by the CLI and by `flows/experiment.py`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.simulator import World, build_world
from crossfade.evaluation.metric_tree import load_metric_tree
from crossfade.experiments.analysis import Analysis, analyze
from crossfade.experiments.definition import ExperimentDefinition, ExperimentError, RampStep
from crossfade.experiments.policies import PlantedEffectPolicy, Policy, PopularityPolicy
from crossfade.experiments.report import write_report
from crossfade.experiments.simulate import simulate_experiment
from crossfade.safety.privacy import listener_view


def load_world(settings: Settings) -> World:
    """The world of the latest simulated batch in the lake, else one built from the settings,
    with its listeners known by the ids the stores hold (pseudonyms by default), so
    exposures, units and served slates never carry a raw id."""
    published = [m for m in lake.manifests(settings.lake_dir) if m["source"] == "simulator"]
    if published:
        world = World.load(settings.truth_dir / published[-1]["batch_id"])
    else:
        world = build_world(settings.simulator, settings.seed)
    return listener_view(settings, world)


def builtin_policy(spec: str, world: World) -> Policy:
    """`popularity` or `planted:SHARE` (popularity with SHARE of requests oracle-ordered)."""
    if spec == "popularity":
        return PopularityPolicy.from_world(world)
    if spec.startswith("planted:"):
        try:
            share = float(spec.split(":", 1)[1])
        except ValueError:
            share = -1.0
        if not 0 <= share <= 1:
            raise ExperimentError(f"policy {spec!r}: SHARE must be a number in [0, 1]")
        return PlantedEffectPolicy(PopularityPolicy.from_world(world), world, share)
    raise ExperimentError(f"unknown policy {spec!r}; choose popularity or planted:SHARE")


def run_simulated(
    settings: Settings,
    world: World,
    definition: ExperimentDefinition,
    policies: dict[str, Policy],
    days: int,
    no_ramp: bool = False,
    progress: Callable[[int, int], None] | None = None,
    title: str | None = None,
) -> tuple[Analysis, Path]:
    """Simulate, analyse with daily looks, and write the HTML report; returns both."""
    if no_ramp:
        definition = definition.model_copy(update={"ramp": [RampStep(share=1.0, days=1)]})
    sim = simulate_experiment(
        world, definition, policies, days, settings.seed, settings=settings, progress=progress
    )
    analysis = analyze(definition, load_metric_tree(), sim.units, sim.daily)
    folder = settings.reports_dir / "experiments" / definition.name
    names = " vs ".join(getattr(policies[v], "name", v) for v in definition.variants)
    report = write_report(folder, analysis, title or f"Experiment {definition.name}: {names}")
    return analysis, report
