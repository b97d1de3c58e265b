"""Argo Rollouts AnalysisTemplates generated from configs/guardrails.yaml.

The same guardrails that the local controller evaluates become Prometheus metrics of two
AnalysisTemplates: `crossfade-guardrails` (canary, switch and bake; run as background analysis
of the recommender Rollout) and `crossfade-shadow-guardrails` (the shadow phase). They fail
closed like the controller: an empty or NaN query result is a failure, not a pass.
The Prometheus address and the canary's slot label are template arguments, never literals.
"""

from __future__ import annotations

from typing import Any

import yaml

from deployments.rollout.guardrails import GuardrailsConfig, GuardrailSpec

API_VERSION = "argoproj.io/v1alpha1"
TEMPLATE = "crossfade-guardrails"
SHADOW_TEMPLATE = "crossfade-shadow-guardrails"
ARGS = ("slot", "prometheus-address")


def _conditions(spec: GuardrailSpec) -> tuple[str, str]:
    """(successCondition, failureCondition); a missing or NaN result fails (fail closed)."""
    bound = f"{spec.threshold:g}"
    if spec.direction == "lower_is_better":
        ok, bad = f"result[0] <= {bound}", f"result[0] > {bound}"
    else:
        ok, bad = f"result[0] >= {bound}", f"result[0] < {bound}"
    missing = "len(result) == 0 || isNaN(result[0])"
    return f"len(result) > 0 && !isNaN(result[0]) && {ok}", f"{missing} || {bad}"


def _metric(spec: GuardrailSpec, interval: str) -> dict[str, Any]:
    success, failure = _conditions(spec)
    return {
        "name": spec.name.replace("_", "-"),
        "interval": interval,
        "failureLimit": 0,
        "inconclusiveLimit": 1,
        "successCondition": success,
        "failureCondition": failure,
        "provider": {
            "prometheus": {
                "address": "{{args.prometheus-address}}",
                "query": " ".join(spec.prometheus.split()),
            }
        },
    }


def analysis_templates(config: GuardrailsConfig, interval: str = "5m") -> list[dict[str, Any]]:
    """The two AnalysisTemplates (live phases, shadow phase) as Kubernetes objects."""
    live = [g for g in config.guardrails if {"canary", "switch", "bake"} & set(g.phases)]
    shadow = config.for_phase("shadow")
    out = []
    for name, specs in ((TEMPLATE, live), (SHADOW_TEMPLATE, shadow)):
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": "AnalysisTemplate",
                "metadata": {
                    "name": name,
                    "labels": {"app.kubernetes.io/part-of": "crossfade"},
                    "annotations": {
                        "crossfade/generated-from": "configs/guardrails.yaml",
                        "crossfade/regenerate": "crossfade release k8s",
                    },
                },
                "spec": {
                    "args": [{"name": arg} for arg in ARGS],
                    "metrics": [_metric(spec, interval) for spec in specs],
                },
            }
        )
    return out


def render(config: GuardrailsConfig, interval: str = "5m") -> str:
    """The templates as one multi-document YAML file."""
    header = "# Generated from configs/guardrails.yaml by `crossfade release k8s`: do not edit.\n"
    return header + yaml.safe_dump_all(
        analysis_templates(config, interval), sort_keys=False, width=100
    )
