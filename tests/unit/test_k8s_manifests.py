"""deployments/k8s: every manifest validates against a schema of the fields crossfade relies on,
the Services reach real pods, the Rollout's steps match configs/guardrails.yaml, and the
AnalysisTemplates are exactly what the guardrails file generates (no drift)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crossfade.config import Settings
from deployments.rollout.guardrails import guardrails_path, load_guardrails
from deployments.rollout.k8s import ARGS, SHADOW_TEMPLATE, TEMPLATE, analysis_templates, render

K8S = Path(__file__).resolve().parents[2] / "deployments" / "k8s"
LABEL = re.compile(r"^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metadata(Open):
    name: str = Field(pattern=NAME.pattern, max_length=63)
    labels: dict[str, str] = {}

    @model_validator(mode="after")
    def _labels(self) -> Metadata:
        bad = [k for k in self.labels if not LABEL.match(k)]
        assert not bad, f"invalid label keys {bad}"
        return self


class Probe(Open):
    httpGet: dict[str, Any]


class Port(Open):
    name: str
    containerPort: int = Field(ge=1, le=65535)


class EnvVar(Closed):
    name: str = Field(pattern=r"^[A-Z_][A-Z0-9_]*$")
    value: str | None = None
    valueFrom: dict[str, Any] | None = None


class Container(Open):
    name: str
    image: str = Field(min_length=1)
    command: list[str] = Field(min_length=1)
    ports: list[Port] = Field(min_length=1)
    env: list[EnvVar] = []
    readinessProbe: Probe
    livenessProbe: Probe
    resources: dict[str, Any]


class PodSpec(Open):
    containers: list[Container] = Field(min_length=1)


class PodTemplate(Open):
    metadata: Metadata | dict[str, Any]
    spec: PodSpec


class Selector(Closed):
    matchLabels: dict[str, str] = Field(min_length=1)


class WorkloadSpec(Open):
    replicas: int = Field(ge=1)
    selector: Selector
    template: PodTemplate
    strategy: dict[str, Any] | None = None


class ServicePort(Closed):
    name: str
    port: int
    targetPort: int | str


class ServiceSpec(Open):
    selector: dict[str, str] = Field(min_length=1)
    ports: list[ServicePort] = Field(min_length=1)


class Prometheus(Closed):
    address: str
    query: str = Field(min_length=1)


class AnalysisMetric(Closed):
    name: str = Field(pattern=NAME.pattern)
    interval: str = Field(pattern=r"^\d+[smh]$")
    failureLimit: Literal[0]
    inconclusiveLimit: int = Field(ge=0)
    successCondition: str
    failureCondition: str
    provider: dict[Literal["prometheus"], Prometheus]


class AnalysisSpec(Closed):
    args: list[dict[Literal["name"], str]]
    metrics: list[AnalysisMetric] = Field(min_length=1)


class Resource(Open):
    apiVersion: str
    kind: Literal["Deployment", "Service", "Rollout", "AnalysisTemplate"]
    metadata: Metadata
    spec: dict[str, Any]


def _docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _docs() if d["kind"] == kind}


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_every_resource_matches_its_schema() -> None:
    api = {"Deployment": "apps/v1", "Service": "v1", "Rollout": "argoproj.io/v1alpha1",
           "AnalysisTemplate": "argoproj.io/v1alpha1"}  # fmt: skip
    for doc in _docs():
        resource = Resource.model_validate(doc)
        assert resource.apiVersion == api[resource.kind], resource.metadata.name
        if resource.kind in ("Deployment", "Rollout"):
            spec = WorkloadSpec.model_validate(doc["spec"])
            pod_labels = doc["spec"]["template"]["metadata"]["labels"]
            assert spec.selector.matchLabels.items() <= pod_labels.items()
            for container in spec.template.spec.containers:
                ports = {p.name for p in container.ports}
                assert container.readinessProbe.httpGet == {"path": "/readyz", "port": "http"}
                assert container.livenessProbe.httpGet == {"path": "/healthz", "port": "http"}
                assert container.livenessProbe.httpGet["port"] in ports
                assert "OPENBLAS_NUM_THREADS" in {e.name for e in container.env}
        elif resource.kind == "Service":
            ServiceSpec.model_validate(doc["spec"])
        else:
            AnalysisSpec.model_validate(doc["spec"])


def test_services_select_pods_on_named_ports() -> None:
    workloads = list(_by_kind("Deployment").values()) + list(_by_kind("Rollout").values())
    for name, svc in _by_kind("Service").items():
        selector = svc["spec"]["selector"]
        targets = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert targets, f"Service {name} selects no pods"
        for port in svc["spec"]["ports"]:
            for w in targets:
                names = {
                    p["name"]
                    for c in w["spec"]["template"]["spec"]["containers"]
                    for p in c["ports"]
                }
                assert port["targetPort"] in names, (name, port)


def test_slots_and_profiles() -> None:
    shadow = _by_kind("Deployment")["recommender-shadow"]
    env = {
        e["name"]: e.get("value")
        for e in shadow["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["CROSSFADE_SERVING__SLOT"] == "shadow" and env["CROSSFADE_PROFILE"] == "cluster"
    canary = _by_kind("Rollout")["recommender"]["spec"]["strategy"]["canary"]
    services = _by_kind("Service")
    assert canary["stableService"] == "recommender-blue" and "recommender-blue" in services
    assert canary["canaryService"] == "recommender-green" and "recommender-green" in services
    assert canary["canaryMetadata"]["labels"]["crossfade/slot"] == "green"
    assert canary["stableMetadata"]["labels"]["crossfade/slot"] == "blue"


def test_rollout_steps_follow_the_guardrails_file(settings: Settings) -> None:
    config = load_guardrails(guardrails_path(settings))
    canary = _by_kind("Rollout")["recommender"]["spec"]["strategy"]["canary"]
    weights = [s["setWeight"] for s in canary["steps"] if "setWeight" in s]
    assert weights == [*config.canary.steps, 100]
    pauses = [s for s in canary["steps"] if "pause" in s]
    assert len(pauses) == len(weights) + 1  # a pause after each weight, plus the bake
    templates = _by_kind("AnalysisTemplate")
    for ref in canary["analysis"]["templates"]:
        assert ref["templateName"] in templates
    passed = {a["name"] for a in canary["analysis"]["args"]}
    assert passed == set(ARGS)


def test_analysis_templates_are_generated_from_guardrails(settings: Settings) -> None:
    config = load_guardrails(guardrails_path(settings))
    committed = (K8S / "analysis-template.yaml").read_text()
    assert committed == render(config), "regenerate: crossfade release k8s --out ..."
    live, shadow = analysis_templates(config)
    assert live["metadata"]["name"] == TEMPLATE and shadow["metadata"]["name"] == SHADOW_TEMPLATE
    live_names = {m["name"] for m in live["spec"]["metrics"]}
    for spec in config.guardrails:
        target = shadow if spec.phases == ["shadow"] else live
        assert spec.name.replace("_", "-") in {m["name"] for m in target["spec"]["metrics"]}
    assert "shadow-overlap" not in live_names
    for template in (live, shadow):
        declared = {a["name"] for a in template["spec"]["args"]}
        for metric in template["spec"]["metrics"]:
            used = set(re.findall(r"\{\{args\.([a-z-]+)\}\}", yaml.safe_dump(metric)))
            assert used <= declared, metric["name"]
            assert "len(result) == 0" in metric["failureCondition"]  # fail closed


@pytest.mark.parametrize(
    "direction,ok,bad", [("lower_is_better", "<=", ">"), ("higher_is_better", ">=", "<")]
)
def test_conditions_follow_direction(settings: Settings, direction: str, ok: str, bad: str) -> None:
    config = load_guardrails(guardrails_path(settings))
    for template in analysis_templates(config):
        for metric in template["spec"]["metrics"]:
            spec = next(g for g in config.guardrails if g.name.replace("_", "-") == metric["name"])
            if spec.direction == direction:
                assert f"result[0] {ok} {spec.threshold:g}" in metric["successCondition"]
                assert f"result[0] {bad} {spec.threshold:g}" in metric["failureCondition"]
