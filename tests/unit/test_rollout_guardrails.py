"""Guardrails: the shipped file validates; windows evaluate PASS / BREACH / INCONCLUSIVE,
failing closed on a missing measure or a failed query."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from crossfade.config import Settings
from deployments.rollout.guardrails import (
    GuardrailsConfig,
    GuardrailsError,
    GuardrailSpec,
    Verdict,
    evaluate_guardrail,
    evaluate_window,
    guardrails_path,
    load_guardrails,
)
from deployments.rollout.observations import Measure, slot_measures


@pytest.fixture
def config(settings: Settings) -> GuardrailsConfig:
    return load_guardrails(guardrails_path(settings))


def _spec(**kw: object) -> GuardrailSpec:
    base: dict[str, object] = {
        "name": "g",
        "metric": "error_rate",
        "comparison": "absolute",
        "direction": "lower_is_better",
        "threshold": 0.01,
        "min_samples": 10,
        "phases": ["canary"],
        "prometheus": "up",
    }
    base.update(kw)
    return GuardrailSpec.model_validate(base)


def test_shipped_file_covers_every_phase(config: GuardrailsConfig) -> None:
    assert config.canary.steps == [5, 25, 50]
    for phase in ("shadow", "canary", "switch", "bake"):
        assert config.for_phase(phase)
    names = {g.metric for g in config.guardrails}
    assert {"p99_latency_ms", "error_rate", "fallback_rate", "skip_rate"} <= names
    assert {"shadow_overlap", "catalogue_diversity"} <= names


def test_unknown_key_and_bad_steps_are_named(tmp_path: Path, settings: Settings) -> None:
    data = yaml.safe_load(guardrails_path(settings).read_text())
    data["guardrails"][0]["treshold"] = 1
    bad = tmp_path / "g.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(GuardrailsError, match="treshold"):
        load_guardrails(bad)
    data = yaml.safe_load(guardrails_path(settings).read_text())
    data["canary"]["steps"] = [5, 1]
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(GuardrailsError, match="must increase"):
        load_guardrails(bad)
    with pytest.raises(GuardrailsError, match="does not exist"):
        load_guardrails(tmp_path / "missing.yaml")


def test_relative_guardrail_cannot_run_at_full_green() -> None:
    with pytest.raises(ValueError, match="blue serves no listeners"):
        _spec(comparison="relative_to_blue", phases=["bake"])


def test_absolute_pass_and_breach() -> None:
    spec = _spec()
    ok = evaluate_guardrail(spec, {"green": {"error_rate": Measure(0.005, 100)}}, "green")
    bad = evaluate_guardrail(spec, {"green": {"error_rate": Measure(0.02, 100)}}, "green")
    assert ok.verdict == Verdict.PASS
    assert bad.verdict == Verdict.BREACH and bad.compared == 0.02


def test_fail_closed_and_inconclusive() -> None:
    spec = _spec()
    missing = evaluate_guardrail(spec, {"green": {}}, "green")
    no_value = evaluate_guardrail(spec, {"green": {"error_rate": Measure(None, 50)}}, "green")
    few = evaluate_guardrail(spec, {"green": {"error_rate": Measure(0.0, 3)}}, "green")
    nan = evaluate_guardrail(spec, {"green": {"error_rate": Measure(float("nan"), 50)}}, "green")
    assert missing.verdict == Verdict.BREACH and "fail closed" in missing.detail
    assert no_value.verdict == Verdict.BREACH
    assert nan.verdict == Verdict.BREACH
    assert few.verdict == Verdict.INCONCLUSIVE and "3 of 10" in few.detail


def test_failed_query_breaches_every_guardrail(config: GuardrailsConfig) -> None:
    window = evaluate_window(config, "canary", "green", 0, 10, None, "OperationalError: gone")
    assert window.verdict == Verdict.BREACH
    assert all("query failed" in r.detail for r in window.results)
    assert len(window.results) == len(config.for_phase("canary"))


def test_relative_to_blue() -> None:
    spec = _spec(metric="p99_latency_ms", comparison="relative_to_blue", threshold=0.5)
    measures = {
        "green": {"p99_latency_ms": Measure(140.0, 50)},
        "blue": {"p99_latency_ms": Measure(100.0, 500)},
    }
    result = evaluate_guardrail(spec, measures, "green")
    assert result.verdict == Verdict.PASS and result.compared == pytest.approx(0.4)
    measures["green"]["p99_latency_ms"] = Measure(160.0, 50)
    assert evaluate_guardrail(spec, measures, "green").verdict == Verdict.BREACH
    measures["blue"]["p99_latency_ms"] = Measure(100.0, 2)
    assert evaluate_guardrail(spec, measures, "green").verdict == Verdict.INCONCLUSIVE


@given(
    st.floats(0, 1),
    st.floats(0, 1),
    st.integers(0, 100),
    st.sampled_from(["lower_is_better", "higher_is_better"]),
)
def test_verdict_follows_direction(value: float, threshold: float, n: int, direction: str) -> None:
    spec = _spec(threshold=threshold, direction=direction)
    result = evaluate_guardrail(spec, {"green": {"error_rate": Measure(value, n)}}, "green")
    if n < spec.min_samples:
        assert result.verdict == Verdict.INCONCLUSIVE
    elif (value > threshold) if direction == "lower_is_better" else (value < threshold):
        assert result.verdict == Verdict.BREACH
    else:
        assert result.verdict == Verdict.PASS


def test_window_verdict_is_the_worst(config: GuardrailsConfig) -> None:
    rows = [
        {"at": float(i), "kind": "request", "slot": slot, "latency_ms": 20.0 + i % 7,
         "error": False, "fallback": False, "items": [f"t{(i * 3 + k) % 97}" for k in range(10)]}
        for i in range(100) for slot in ("blue", "green")
    ] + [
        {"at": float(i), "kind": "feedback", "slot": slot,
         "event": "skip" if i % 4 == 0 else "play"}
        for i in range(500) for slot in ("blue", "green")
    ]  # fmt: skip
    window = evaluate_window(config, "canary", "green", 0, 100, slot_measures(rows))
    assert window.verdict == Verdict.PASS, window.summary()
    rows += [{**rows[0], "slot": "green", "error": True} for _ in range(5)]
    window = evaluate_window(config, "canary", "green", 0, 100, slot_measures(rows))
    assert window.verdict == Verdict.BREACH and "error_rate" in window.summary()
    assert window.to_dict()["verdict"] == "BREACH"


def test_slot_measures() -> None:
    rows = [
        {"at": 1.0, "kind": "request", "slot": "green", "latency_ms": float(ms), "error": False,
         "fallback": ms % 2 == 0, "items": ["a", "b"]}
        for ms in range(1, 101)
    ] + [
        {"at": 2.0, "kind": "pair", "slot": "shadow", "latency_ms": 30.0, "error": False,
         "overlap": 0.5, "rank_corr": 0.2, "score_drift": 0.1, "items": None},
        {"at": 3.0, "kind": "feedback", "slot": "green", "event": "skip"},
        {"at": 3.0, "kind": "feedback", "slot": "green", "event": "save"},
    ]  # fmt: skip
    m = slot_measures(rows)
    assert m["green"]["p99_latency_ms"] == Measure(99.0, 100)
    assert m["green"]["fallback_rate"].value == pytest.approx(0.5)
    assert m["green"]["skip_rate"] == Measure(0.5, 2)
    assert m["shadow"]["shadow_overlap"] == Measure(0.5, 1)
    assert m["shadow"]["p99_latency_ms"] == Measure(30.0, 1)
    assert m["blue"]["error_rate"] == Measure(None, 0)


def _skip_vs_blue(**kw: object) -> GuardrailSpec:
    base: dict[str, object] = {
        "metric": "skip_rate",
        "comparison": "relative_to_blue",
        "threshold": 0.15,
        "min_samples": 400,
        "significance": 0.01,
        "cluster_size": 10,
    }
    return _spec(**{**base, **kw})


def test_a_significant_rate_guardrail_breaches_on_evidence_not_on_window_noise() -> None:
    spec = _skip_vs_blue()
    # The main job's window: 45 answers to green (454 feedback events), 0.26 vs blue's 0.205.
    measures = {
        "green": {"skip_rate": Measure(0.26, 454)},
        "blue": {"skip_rate": Measure(0.205, 8_000)},
    }
    noisy = evaluate_guardrail(spec, measures, "green")
    assert noisy.verdict == Verdict.PASS and "not significant" in noisy.detail
    assert noisy.compared == pytest.approx(0.26 / 0.205 - 1)
    measures["green"]["skip_rate"] = Measure(0.5, 454)  # a model listeners clearly dislike
    bad = evaluate_guardrail(spec, measures, "green")
    assert bad.verdict == Verdict.BREACH and "significant" in bad.detail
    measures["green"]["skip_rate"] = Measure(0.5, 100)  # too few events to judge yet
    assert evaluate_guardrail(spec, measures, "green").verdict == Verdict.INCONCLUSIVE
    higher = _skip_vs_blue(direction="higher_is_better", threshold=-0.15)
    measures["green"]["skip_rate"] = Measure(0.05, 454)  # far below blue on a good-is-high rate
    assert evaluate_guardrail(higher, measures, "green").verdict == Verdict.BREACH


def test_a_significant_rate_guardrail_breaches_at_the_margin_about_alpha_of_the_time() -> None:
    """At the limit (green's true rate = blue's x (1 + threshold)) the one-sided test breaches
    in about `significance` of windows; well inside the limit, almost never."""
    rng = np.random.default_rng(7)
    spec = _spec(
        metric="skip_rate", comparison="relative_to_blue", threshold=0.15, min_samples=100,
        significance=0.05,
    )  # fmt: skip
    n_green, n_blue, blue_rate = 600, 6_000, 0.2

    def breach_share(green_rate: float) -> float:
        green = rng.binomial(n_green, green_rate, 4_000) / n_green
        blue = rng.binomial(n_blue, blue_rate, 4_000) / n_blue
        return float(
            np.mean(
                [
                    evaluate_guardrail(
                        spec,
                        {"green": {"skip_rate": Measure(g, n_green)},
                         "blue": {"skip_rate": Measure(b, n_blue)}},
                        "green",
                    ).verdict == Verdict.BREACH
                    for g, b in zip(green, blue, strict=True)
                ]
            )
        )  # fmt: skip

    assert 0.03 < breach_share(blue_rate * 1.15) < 0.07
    assert breach_share(blue_rate) < 0.01


def test_significance_is_for_rates_relative_to_blue_only() -> None:
    with pytest.raises(ValueError, match="significance applies to rates relative to blue"):
        _spec(metric="p99_latency_ms", comparison="relative_to_blue", significance=0.01)
    with pytest.raises(ValueError, match="significance applies"):
        _spec(metric="skip_rate", comparison="absolute", significance=0.01)


def test_a_guardrail_with_min_green_percent_is_judged_from_that_split_on(
    config: GuardrailsConfig,
) -> None:
    diversity = next(g for g in config.guardrails if g.name == "catalogue_diversity")
    assert diversity.min_green_percent == 50
    first_step = config.canary.steps[0]
    assert first_step < 50
    assert diversity not in config.for_phase("canary", first_step)
    assert diversity not in config.for_phase("canary", 25.0)
    assert diversity in config.for_phase("canary", 50.0)
    assert diversity in config.for_phase("canary")  # no split given: every canary guardrail
    narrow = {
        "green": {"catalogue_diversity": Measure(0.1, 60)},
        "blue": {"catalogue_diversity": Measure(0.5, 60)},
    }
    early = evaluate_window(config, "canary", "green", 0, 10, narrow, green_percent=first_step)
    late = evaluate_window(config, "canary", "green", 0, 10, narrow, green_percent=50.0)
    assert "catalogue_diversity" not in {r.name for r in early.results}
    assert {r.name for r in late.results if r.verdict == Verdict.BREACH} >= {"catalogue_diversity"}
