"""Settings: profiles, precedence, strictness, one data root."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossfade.config import PROFILES, SettingsError, load_settings


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads(profile: str) -> None:
    settings = load_settings(profile)
    assert settings.profile == profile


def test_env_overrides_yaml_and_kwargs_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSFADE_SIMULATOR__USERS", "77")
    assert load_settings("local").simulator.users == 77
    assert load_settings("local", simulator={"users": 5}).simulator.users == 5


def test_data_root_from_env_places_every_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROSSFADE_DATA_ROOT", str(tmp_path / "root"))
    settings = load_settings()
    for place in (
        settings.lake_dir,
        settings.staging_dir,
        settings.quarantine_dir,
        settings.reports_dir,
        settings.truth_dir,
    ):
        assert place.is_relative_to(tmp_path / "root")
    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'root' / 'mlflow.db'}"


def test_unknown_yaml_key_fails_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "local.yaml").write_text("simulater:\n  users: 3\n")
    monkeypatch.setenv("CROSSFADE_CONFIG_DIR", str(tmp_path))
    with pytest.raises(SettingsError, match="simulater"):
        load_settings("local")


def test_unknown_env_var_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSFADE_DATAROOT", "/tmp/x")
    with pytest.raises(SettingsError, match="CROSSFADE_DATAROOT"):
        load_settings()


def test_invalid_value_names_the_field() -> None:
    with pytest.raises(SettingsError, match=r"simulator\.users"):
        load_settings(simulator={"users": 0})


def test_unknown_profile_lists_choices() -> None:
    with pytest.raises(SettingsError, match="local, services, cluster"):
        load_settings("production")


def test_services_profile_points_at_machine_servers() -> None:
    settings = load_settings("services")
    assert settings.tracking_uri.startswith("postgresql")
    assert settings.services.redis_url == "redis://127.0.0.1:6379/0"
