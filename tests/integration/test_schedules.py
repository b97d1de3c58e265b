"""Schedules come from deployments/prefect.yaml and register on a real (temporary) Prefect
server with their crons, intervals and event triggers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flows.ingest import BATCH_PUBLISHED
from flows.schedules import load_specs, register


def test_prefect_yaml_names_real_flows_and_the_ingest_event() -> None:
    specs = {spec.name: spec for spec in load_specs()}
    assert {"weekly-discover-retrain", "daily-feature-refresh", "rollout-guardrails"} <= set(specs)
    assert specs["weekly-discover-retrain"].crons == ("0 5 * * 1",)  # Monday morning
    for spec in specs.values():
        assert callable(getattr(spec.flow(), "to_deployment", None)), spec.entrypoint
    assert any(BATCH_PUBLISHED in spec.events for spec in specs.values())


def test_a_deployment_without_schedule_or_trigger_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "prefect.yaml"
    bad.write_text(
        "deployments:\n  - name: lonely\n    entrypoint: flows/features.py:features_flow\n"
    )
    with pytest.raises(ValueError, match="lonely"):
        load_specs(bad)


def test_register_creates_scheduled_and_triggered_deployments(prefect_server: None) -> None:
    from prefect.client.orchestration import get_client

    ids = register()
    assert len(ids) == len(load_specs())

    async def read() -> dict[str, object]:
        async with get_client() as client:
            return {d.name: d for d in await client.read_deployments()}

    deployments = asyncio.run(read())
    weekly = deployments["weekly-discover-retrain"]
    assert [s.schedule.cron for s in weekly.schedules] == ["0 5 * * 1"]  # type: ignore[attr-defined]
    guard = deployments["rollout-guardrails"]
    assert guard.schedules[0].schedule.interval.total_seconds() == 120  # type: ignore[attr-defined]
