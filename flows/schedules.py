"""The schedules: weekly retrain, nightly features, rollout guardrail checks, and a features
refresh triggered by each new lake batch, all read from `deployments/prefect.yaml`.

`crossfade schedule serve` serves them from this process against a Prefect server (schedules
need a real server: `make ui` starts one); `--register-only` creates the deployments and
exits. A team with a work pool runs the same file with `prefect deploy --all`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

PREFECT_YAML = Path(__file__).resolve().parents[1] / "deployments" / "prefect.yaml"


@dataclass(frozen=True)
class ScheduleSpec:
    """One deployment of prefect.yaml: which flow, and when or on which event it runs."""

    name: str
    entrypoint: str
    description: str = ""
    crons: tuple[str, ...] = ()
    intervals: tuple[float, ...] = ()
    events: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)

    def flow(self) -> Any:
        """Import the flow object named by the entrypoint (`path/to/module.py:function`)."""
        path, _, attribute = self.entrypoint.partition(":")
        module = path.removesuffix(".py").replace("/", ".")
        return getattr(importlib.import_module(module), attribute)


def load_specs(path: Path = PREFECT_YAML) -> list[ScheduleSpec]:
    """Read the deployments of prefect.yaml; a deployment without a schedule or trigger, or a
    schedule this reader does not understand, is an error naming the deployment."""
    document = yaml.safe_load(path.read_text())
    specs = []
    for entry in document.get("deployments", []):
        name = entry["name"]
        crons, intervals = [], []
        for schedule in entry.get("schedules", []):
            if "cron" in schedule:
                crons.append(str(schedule["cron"]))
            elif "interval" in schedule:
                intervals.append(float(schedule["interval"]))
            else:
                raise ValueError(f"{path}: deployment {name!r}: a schedule needs cron or interval")
        events = [e for t in entry.get("triggers", []) for e in t.get("expect", [])]
        if not (crons or intervals or events):
            raise ValueError(f"{path}: deployment {name!r} has no schedule and no trigger")
        specs.append(
            ScheduleSpec(
                name=name,
                entrypoint=entry["entrypoint"],
                description=" ".join(str(entry.get("description", "")).split()),
                crons=tuple(crons),
                intervals=tuple(intervals),
                events=tuple(events),
                parameters=dict(entry.get("parameters") or {}),
            )
        )
    return specs


def to_deployment(spec: ScheduleSpec) -> RunnerDeployment:
    """The Prefect deployment that `serve` runs for one spec."""
    triggers = [
        DeploymentEventTrigger(expect={event}, name=f"{spec.name}: {event}")
        for event in spec.events
    ]
    deployment: RunnerDeployment = spec.flow().to_deployment(
        name=spec.name,
        cron=list(spec.crons) or None,
        interval=[timedelta(seconds=s) for s in spec.intervals] or None,
        triggers=triggers or None,  # type: ignore[arg-type]
        description=spec.description,
        parameters=spec.parameters,
        tags=["crossfade"],
    )
    return deployment


def register(specs: list[ScheduleSpec] | None = None) -> list[str]:
    """Create or update every deployment on the Prefect server; returns their ids."""
    return [str(to_deployment(spec).apply()) for spec in specs or load_specs()]


def serve(specs: list[ScheduleSpec] | None = None) -> None:
    """Serve every deployment from this process until interrupted (runs scheduled work)."""
    from prefect import serve as prefect_serve

    prefect_serve(*(to_deployment(spec) for spec in specs or load_specs()))
