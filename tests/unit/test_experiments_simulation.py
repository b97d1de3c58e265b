"""A/A and power by Monte-Carlo (vectorised), and planted vs null effects on the simulator."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from scipy import stats

from crossfade.config import Settings
from crossfade.data.simulator import build_world
from crossfade.evaluation.metric_tree import load_metric_tree
from crossfade.experiments.analysis import analyze
from crossfade.experiments.assignment import erase_listener, read_exposures
from crossfade.experiments.decision import Decision
from crossfade.experiments.definition import ExperimentDefinition
from crossfade.experiments.policies import PlantedEffectPolicy, PopularityPolicy
from crossfade.experiments.sequential import boundaries, inflation_factor
from crossfade.experiments.simulate import simulate_experiment

SIMS, LOOKS = 20_000, 10


def _z_paths(drift: float, seed: int) -> np.ndarray:
    """Sequential z statistics at LOOKS equally spaced looks (Brownian motion, mean drift*t)."""
    rng = np.random.default_rng(seed)
    steps = rng.standard_normal((SIMS, LOOKS)) / np.sqrt(LOOKS) + drift / LOOKS
    t = np.arange(1, LOOKS + 1) / LOOKS
    return np.cumsum(steps, axis=1) / np.sqrt(t)


def _mc_error(p: float) -> float:
    return 3 * np.sqrt(p * (1 - p) / SIMS)


def test_a_a_false_positive_rate_with_ten_looks() -> None:
    z = _z_paths(0.0, seed=11)
    naive = np.mean((np.abs(z) >= 1.96).any(axis=1))
    assert naive == pytest.approx(0.193, abs=_mc_error(0.193))
    bounds = boundaries(np.arange(1, LOOKS + 1) / LOOKS, 0.05, "obrien_fleming").bounds
    sequential = np.mean((np.abs(z) >= bounds).any(axis=1))
    assert sequential <= 0.05 + _mc_error(0.05)
    assert sequential >= 0.05 - _mc_error(0.05)


def test_planted_effect_at_the_mde_is_found_with_planned_power() -> None:
    power = 0.8
    inflation = inflation_factor(LOOKS, 0.05, power)
    drift = (stats.norm.isf(0.025) + stats.norm.ppf(power)) * np.sqrt(inflation)
    z = _z_paths(drift, seed=12)
    bounds = boundaries(np.arange(1, LOOKS + 1) / LOOKS, 0.05, "obrien_fleming").bounds
    found = np.mean((np.abs(z) >= bounds).any(axis=1))
    assert found == pytest.approx(power, abs=_mc_error(power) + 0.005)


def _definition() -> ExperimentDefinition:
    return ExperimentDefinition(
        name="sim_test",
        salt="sim-test",
        success_metrics=["completion_rate"],
        guardrails=["skip_rate", "error_rate"],
        segments=["tier"],
    )


@pytest.fixture(scope="module")
def world():  # type: ignore[no-untyped-def]
    from crossfade.config import SimulatorSettings

    sim = SimulatorSettings(
        users=300, days=7, artists=60, tracks=600, episodes=40, start_date=date(2024, 1, 1)
    )
    return build_world(sim, 5)


def test_planted_effect_ships_and_null_does_not(world, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    tree = load_metric_tree()
    d = _definition()
    pop = PopularityPolicy.from_world(world)
    planted = PlantedEffectPolicy(pop, world, 1.0, pool=60)
    found = simulate_experiment(
        world, d, {"control": pop, "treatment": planted}, 5, seed=1, settings=settings
    )
    result = analyze(d, tree, found.units, found.daily)
    assert result.decision.decision == Decision.SHIP, result.decision.reasons
    null = simulate_experiment(world, d, {"control": pop, "treatment": pop}, 5, seed=2)
    result = analyze(d, tree, null.units, null.daily)
    assert result.decision.decision in (Decision.CONTINUE, Decision.INCONCLUSIVE)
    assert not result.srm.flagged
    # the exposure log holds every exposed listener once, and erasure removes one of them
    log = read_exposures(settings, d.name)
    assert sorted(log["user_id"]) == sorted(found.units["user_id"])
    victim = str(log["user_id"].iloc[0])
    assert erase_listener(settings, victim) == 1
    assert victim not in set(read_exposures(settings, d.name)["user_id"])
    assert erase_listener(settings, victim) == 0


def test_pipeline_policy_asks_with_valid_recommend_requests(world) -> None:  # type: ignore[no-untyped-def]
    """The policy that wraps a serving pipeline builds the same request the service parses
    (strict models: the context's ISO timestamp must parse as JSON does)."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from crossfade.experiments.policies import PipelinePolicy
    from crossfade.serving.api import RecommendRequest

    seen: list[RecommendRequest] = []
    items = ["t-1", "t-2", "t-3"]

    class Answering:
        def recommend(self, request: RecommendRequest) -> SimpleNamespace:
            seen.append(request)
            return SimpleNamespace(items=[{"item_id": i} for i in items])

    users = [str(u) for u in world.listeners.user_ids[:4]]
    at = datetime(2026, 1, 13, 21, 50, tzinfo=UTC)
    slates = PipelinePolicy(Answering(), world).recommend(users, at, k=3)
    assert [s.error for s in slates] == [False] * 4 and slates[0].item_ids == items
    assert [r.listener_id for r in seen] == users
    assert all(r.context.timestamp == at and r.k == 3 for r in seen)
