"""`crossfade run` (the main job: the lifecycle twice) and `crossfade schedule ...`."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from crossfade.cli import ProfileOption, console, err_console, settings_or_exit

UI_HOST = "127.0.0.1"
PREFECT_UI_PORT = 4200
MLFLOW_UI_PORT = 5000


def _print_run(number: int, outcome: dict[str, Any], seconds: float) -> None:
    colour = "green" if outcome["status"] == "completed" else "yellow"
    console.print(
        f"run {number}: [{colour}]{outcome['status']}[/{colour}] in {seconds:.0f} s; "
        f"report {outcome['report']}"
    )


def run_lifecycle(profile: str | None, runs: int) -> list[dict[str, Any]]:
    """Run the lifecycle `runs` times in a row and print where to look afterwards."""
    from flows.cli import prepare_prefect_home

    prepare_prefect_home()
    from flows.lifecycle import lifecycle_flow

    outcomes = []
    for number in range(1, runs + 1):
        console.rule(f"lifecycle run {number} of {runs}")
        started = time.perf_counter()
        outcome = lifecycle_flow(profile=profile)
        _print_run(number, outcome, time.perf_counter() - started)
        outcomes.append(outcome)
    return outcomes


def _addresses(settings: Any, outcomes: list[dict[str, Any]]) -> Table:
    table = Table(title="where to look", show_header=False)
    for outcome in outcomes[-1:]:
        release = outcome.get("stages", {}).get("release", {})
        if release.get("gateway"):
            table.add_row("gateway", release["gateway"])
        table.add_row("run report", outcome["report"])
    table.add_row(
        "MLflow", f"{settings.tracking_uri}  (`make ui`: http://{UI_HOST}:{MLFLOW_UI_PORT})"
    )
    table.add_row("Prefect", f"`make ui`: http://{UI_HOST}:{PREFECT_UI_PORT}")
    table.add_row("release status", "crossfade release status")
    table.add_row("stop serving", "crossfade stop  (or `make stop`)")
    return table


def register_lifecycle(root: typer.Typer) -> None:
    """Add `run` and `schedule serve|list` to the root app."""

    @root.command("run")
    def run(
        profile: ProfileOption = None,
        runs: Annotated[int, typer.Option(min=1, help="lifecycle runs in a row")] = 2,
    ) -> None:
        """The main job: the lifecycle twice (the first version goes live, the second is
        released through shadow, canary and blue/green under guardrails)."""
        settings = settings_or_exit(profile)
        console.rule("crossfade main job")
        console.print(f"profile {settings.profile}, data root {settings.data_root}")
        outcomes = run_lifecycle(profile, runs)
        if settings.lifecycle.keep_serving:
            console.print(_addresses(settings, outcomes))
        else:
            from flows.release import stop_stack

            stop_stack(settings)
            console.print("serving stack stopped (lifecycle.keep_serving is false)")
            console.print(f"run report  {outcomes[-1]['report']}")
        if any(o["status"] == "failed" for o in outcomes):
            raise typer.Exit(1)

    @root.command("stop")
    def stop(profile: ProfileOption = None) -> None:
        """Stop the serving stack that `crossfade run` left serving for this data root."""
        from flows.release import stop_stack

        settings = settings_or_exit(profile)
        if stop_stack(settings):
            console.print(f"serving stack of {settings.data_root} stopped")
        else:
            console.print(f"no serving stack of {settings.data_root} was running")

    schedule_app = typer.Typer(help="Schedules: weekly retrain, nightly features, guardrails.")
    root.add_typer(schedule_app, name="schedule")

    @schedule_app.command("list")
    def schedule_list() -> None:
        """Show the deployments of deployments/prefect.yaml and when each runs."""
        from flows.schedules import load_specs

        table = Table("deployment", "flow", "when")
        for spec in load_specs():
            when = [f"cron {c}" for c in spec.crons] + [f"every {s:g} s" for s in spec.intervals]
            when += [f"on event {e}" for e in spec.events]
            table.add_row(spec.name, spec.entrypoint, ", ".join(when))
        console.print(table)

    @schedule_app.command("serve")
    def schedule_serve(
        register_only: Annotated[
            bool, typer.Option(help="create the deployments on the server and exit")
        ] = False,
    ) -> None:
        """Serve the schedules from this process (needs a Prefect server: `make ui`)."""
        import os

        from flows.schedules import register, serve

        if not os.environ.get("PREFECT_API_URL"):
            err_console.print(
                "[red]error:[/red] schedules need a running Prefect server: start one with "
                f"`make ui` and set PREFECT_API_URL=http://{UI_HOST}:{PREFECT_UI_PORT}/api"
            )
            raise typer.Exit(2)
        if register_only:
            for deployment_id in register():
                console.print(f"registered deployment {deployment_id}")
            return
        serve()
