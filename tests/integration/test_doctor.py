"""`crossfade doctor` against the embedded default and the machine's real servers."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from crossfade.cli import app
from crossfade.config import Settings
from crossfade.doctor import check_postgres, check_redis, endpoint_checks, stack_versions

runner = CliRunner()


def test_stack_versions_match_the_pins() -> None:
    versions = stack_versions()
    assert versions["bentoml"] == "1.4.40"
    assert versions["prefect"] == "3.9.1"
    assert versions["great-expectations"] == "1.24.1"
    assert "missing" not in versions.values()


def test_doctor_local_profile() -> None:
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "profile local" in result.output
    assert "mlflow tracking" in result.output


@pytest.mark.services
def test_doctor_services_profile_reaches_postgres_and_redis(services_settings: Settings) -> None:
    checks = {c.name: c for c in endpoint_checks(services_settings)}
    assert checks["postgres"].ok, checks["postgres"].detail
    assert checks["redis"].ok, checks["redis"].detail
    assert checks["mlflow tracking"].ok
    result = runner.invoke(app, ["doctor", "--profile", "services"])
    assert result.exit_code == 0, result.output


def test_unreachable_servers_are_reported_not_raised() -> None:
    assert not check_postgres("postgresql://nobody@127.0.0.1:1/none").ok
    assert not check_redis("redis://127.0.0.1:1/0").ok


def test_bad_configuration_exits_2_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSFADE_SEED", "not-a-number")
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 2
    assert "seed" in result.output
