"""Where flow tasks and the core's Dask computations run, chosen by the settings' profile.

- `task_runner_for(settings)`: on the `cluster` profile a prefect-dask `DaskTaskRunner` (the
  configured scheduler, or a LocalCluster of `dask.n_workers` processes started per flow
  run); elsewhere Prefect's `ThreadPoolTaskRunner`.
- `dask_client(settings)`: a `distributed.Client` for the core's Dask functions
  (`crossfade.features.tables_dask`, `crossfade.ranking.ranker_dask`). Inside a task run by
  the DaskTaskRunner it is a client of that same cluster (no second cluster); in a flow run
  with a DaskTaskRunner it is the runner's client; otherwise it connects to the configured
  scheduler or starts a LocalCluster for the duration of the `with` block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Client, LocalCluster
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from crossfade.config import Settings

CLUSTER_PROFILE = "cluster"


def uses_dask(settings: Settings) -> bool:
    """Whether this profile runs tasks and heavy computations on Dask."""
    return settings.profile == CLUSTER_PROFILE


def local_cluster_kwargs(settings: Settings) -> dict[str, Any]:
    """LocalCluster arguments from `settings.dask` (worker processes on loopback)."""
    return {
        "n_workers": settings.dask.n_workers,
        "threads_per_worker": settings.dask.threads_per_worker,
        "processes": True,
        "memory_limit": settings.dask.memory_limit,
        "host": "127.0.0.1",
        "dashboard_address": None,
    }


def task_runner_for(settings: Settings) -> TaskRunner[Any]:
    """The task runner of a profile: Dask on `cluster`, threads elsewhere."""
    if not uses_dask(settings):
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    if settings.dask.scheduler_address:
        return DaskTaskRunner(address=settings.dask.scheduler_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster", cluster_kwargs=local_cluster_kwargs(settings)
    )


def _running_dask_runner_client() -> Client | None:
    """The client of the DaskTaskRunner of the current flow run, if there is one."""
    from prefect.context import FlowRunContext
    from prefect_dask import DaskTaskRunner

    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    return runner.client if isinstance(runner, DaskTaskRunner) else None


def _inside_dask_worker() -> bool:
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


@contextmanager
def dask_client(settings: Settings) -> Iterator[Client]:
    """A Dask client for the core's functions; closes only what it opened itself."""
    if _inside_dask_worker():
        from distributed import worker_client

        # A task on a Dask worker: a client of the cluster running it (the worker secedes
        # from its thread pool meanwhile, so the cluster's threads do the work).
        with worker_client() as client:
            yield client
        return
    runner_client = _running_dask_runner_client()
    if runner_client is not None:
        yield runner_client
        return
    if settings.dask.scheduler_address:
        with Client(settings.dask.scheduler_address, set_as_default=False) as client:
            yield client
        return
    with (
        LocalCluster(**local_cluster_kwargs(settings)) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def ranker_partitions(settings: Settings, client: Client) -> int:
    """Partitions for `fit_ranker_dask`: `dask.partitions_per_worker` per connected worker."""
    workers = max(1, len(client.scheduler_info()["workers"]))
    return workers * settings.dask.partitions_per_worker
