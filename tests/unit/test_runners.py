"""Task runner and Dask client choice per profile (flows/runners.py) and the `dask` settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from distributed import LocalCluster
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from crossfade.config import SettingsError, load_settings
from flows.runners import dask_client, task_runner_for, uses_dask


def test_local_and_services_profiles_run_tasks_on_threads(tmp_path: Path) -> None:
    for profile in ("local", "services"):
        s = load_settings(profile, data_root=tmp_path)
        assert not uses_dask(s)
        assert isinstance(task_runner_for(s), ThreadPoolTaskRunner)


def test_cluster_profile_starts_a_local_cluster_of_the_configured_size(tmp_path: Path) -> None:
    s = load_settings("cluster", data_root=tmp_path, dask={"n_workers": 3, "threads_per_worker": 2})
    runner = task_runner_for(s)
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address is None
    assert runner.cluster_kwargs["n_workers"] == 3
    assert runner.cluster_kwargs["threads_per_worker"] == 2
    assert runner.cluster_kwargs["processes"] is True


def test_cluster_profile_uses_an_existing_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROSSFADE_DASK__SCHEDULER_ADDRESS", "tcp://10.0.0.5:8786")
    runner = task_runner_for(load_settings("cluster", data_root=tmp_path))
    assert isinstance(runner, DaskTaskRunner)
    assert runner.address == "tcp://10.0.0.5:8786" and not runner.cluster_kwargs


def test_dask_settings_are_strict_and_an_empty_address_means_local(tmp_path: Path) -> None:
    s = load_settings("local", data_root=tmp_path, dask={"scheduler_address": ""})
    assert s.dask.scheduler_address is None
    with pytest.raises(SettingsError, match="dask"):
        load_settings("local", data_root=tmp_path, dask={"n_worker": 2})
    with pytest.raises(SettingsError, match="n_workers"):
        load_settings("local", data_root=tmp_path, dask={"n_workers": 0})


def test_dask_client_connects_to_the_configured_scheduler_and_leaves_it_running(
    tmp_path: Path,
) -> None:
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        s = load_settings(
            "cluster", data_root=tmp_path, dask={"scheduler_address": cluster.scheduler_address}
        )
        with dask_client(s) as client:
            assert client.scheduler_info()["address"] == cluster.scheduler_address
            assert client.submit(sum, [1, 2, 3]).result() == 6
        assert client.status == "closed"
        # The cluster belongs to the caller: still serving after our client closed.
        assert cluster.scheduler_info["workers"]
