"""`crossfade release ...` end to end on the local profile with a real MLflow registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossfade.cli import app
from crossfade.config import Settings
from deployments.rollout.auth import authenticate
from deployments.rollout.guardrails import guardrails_path, load_guardrails
from deployments.rollout.store import RolloutStore
from tests.integration.test_rollout_store import (  # noqa: F401 - the fixture is used by name
    mlflow_template,
    register_tiny_models,
)

runner = CliRunner()


@pytest.fixture
def cli_settings(settings: Settings, mlflow_template: Path) -> Settings:  # noqa: F811
    settings.data_root.mkdir(parents=True, exist_ok=True)
    shutil.copy(mlflow_template, settings.data_root / "mlflow.db")
    register_tiny_models(settings)
    return settings


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["release", *args])
    return result.exit_code, result.output


def test_release_lifecycle_from_the_cli(cli_settings: Settings) -> None:
    code, out = invoke("status")
    assert code == 0, out
    assert "IDLE" in out and "start a rollout" in out

    code, out = invoke("start", "--reason", "weekly retrain", "--actor", "controller")
    assert code == 2 and "reserved for the platform" in out  # nobody writes as the controller

    code, out = invoke("start", "--reason", "weekly retrain", "--actor", "alice")
    assert code == 0, out
    assert out.startswith("acting on IDLE, version 0")
    assert "SHADOW" in out and "candidates v3, ranker v3" in out
    assert "controller never seen" in " ".join(out.split())
    steps = load_guardrails(guardrails_path(cli_settings)).canary.steps
    assert f"canary {steps[0]:g} % green" in out

    code, out = invoke("start", "--candidates", "2", "--ranker", "2")
    assert code == 3, out  # conflict: a rollout is already running
    assert "conflict" in out and "already in SHADOW" in out

    code, out = invoke("pause", "-r", "waiting for the weekly report", "--actor", "alice")
    assert code == 0 and "paused" in out
    assert "acting on SHADOW, version 1, by alice (start)" in out
    code, out = invoke("resume", "--actor", "alice")
    assert code == 0 and "paused" not in out.split("release status")[1].split("next")[0]
    code, out = invoke("promote", "--actor", "alice", "--expect-version", "3")
    assert code == 0 and "CANARY" in out and f"step 1 of {len(steps)}" in out
    assert f"green {steps[0]:g} %" in out
    # a second operator who saw the same status: the rollout moved on, exit 3 naming it
    code, out = invoke("promote", "--actor", "bob", "--expect-version", "3")
    assert code == 3, out
    assert "conflict" in out and "expected state version 3" in " ".join(out.split())
    assert "by alice (promote)" in " ".join(out.split())

    code, out = invoke("watch", "--once")
    assert code == 0 and "CANARY" in out

    code, out = invoke("rollback", "-r", "drill", "--actor", "alice")
    assert code == 0, out
    assert "ROLLED_BACK" in out and "incident #1" in out

    code, out = invoke("promote")
    assert code == 1 and "cannot promote a rollout in ROLLED_BACK" in out

    code, out = invoke("history", "--json")
    assert code == 0, out
    rows = json.loads(out)
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("promote", "refused"),
        ("rollback", "ok"),
        ("promote", "conflict"),
        ("promote", "ok"),
        ("resume", "ok"),
        ("pause", "ok"),
        ("start", "conflict"),
        ("start", "ok"),
    ]
    code, out = invoke("history")
    assert code == 0 and "rollback" in out and "drill" in out

    code, out = invoke("status", "--json")
    doc = json.loads(out)
    assert doc["phase"] == "ROLLED_BACK" and doc["green_percent"] == 0
    assert RolloutStore.from_settings(cli_settings).read_state().version == doc["state_version"]


def test_token_command_issues_a_working_token(settings: Settings) -> None:
    code, out = invoke("token", "--actor", "carol", "--role", "release-manager")
    assert code == 0, out
    token = out.strip().splitlines()[-1]
    assert authenticate(settings, token).actor == "carol"
    code, out = invoke("token", "--actor", "dave", "--role", "admin")
    assert code == 2 and "unknown role" in out
