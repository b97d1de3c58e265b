"""Commands that run Prefect flows, added to the `crossfade` CLI through an entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel

from crossfade.cli import ProfileOption, console, err_console, settings_or_exit


def _print_outcome(outcome: dict[str, Any], prefect_home: str | None) -> None:
    status = outcome["status"]
    colour = {"published": "green", "skipped": "yellow", "quarantined": "red"}[status]
    lines = [
        f"batch      {outcome['batch_id']}",
        f"status     [{colour}]{status}[/{colour}]",
        f"rows       received {outcome['rows_received']:,}, accepted "
        f"{outcome['rows_accepted']:,}, quarantined {outcome['rows_quarantined']:,}",
        f"location   {outcome['location']}",
    ]
    if outcome.get("report_path"):
        lines.append(f"validation {outcome['report_path']}")
    if outcome.get("data_docs"):
        lines.append(f"data docs  {outcome['data_docs']}")
    if outcome.get("flow_run_id"):
        where = f" (stored in {prefect_home}; `make ui` to browse)" if prefect_home else ""
        lines.append(f"flow run   {outcome['flow_run_name']} {outcome['flow_run_id']}{where}")
    for failure in outcome.get("failures", []):
        lines.append(f"  - {failure}")
    console.print(Panel("\n".join(lines), title="ingest", border_style=colour))


def run_ingest(**params: Any) -> dict[str, Any]:
    """Run the ingest flow, print its outcome, and exit 1 when the batch was rejected."""
    import os

    from flows.ingest import BatchRejected, ingest_flow

    home = os.environ.get("PREFECT_HOME")
    try:
        outcome = ingest_flow(**params)
    except BatchRejected as exc:
        _print_outcome(exc.outcome.to_dict(), home)
        err_console.print(
            "[red]batch rejected[/red]: kept whole in quarantine, nothing written to the lake"
        )
        raise typer.Exit(1) from None
    _print_outcome(outcome, home)
    return outcome


def register(groups: dict[str, typer.Typer]) -> None:
    """Add `data ingest` and `run` to the CLI."""
    data_app, root = groups["data"], groups["root"]

    @data_app.command("ingest")
    def data_ingest(
        batch: Annotated[
            Path | None, typer.Option(help="an already staged batch folder to ingest")
        ] = None,
        fmt: Annotated[
            str | None,
            typer.Option("--format", "-f", help="import: interactions|movielens|recbole|lastfm1k"),
        ] = None,
        path: Annotated[Path | None, typer.Option(help="import: the file or folder")] = None,
        users: Annotated[int | None, typer.Option(help="simulate: listeners")] = None,
        days: Annotated[int | None, typer.Option(help="simulate: days")] = None,
        seed: Annotated[int | None, typer.Option(help="simulate: seed")] = None,
        profile: ProfileOption = None,
    ) -> None:
        """Ingest one batch: simulate (default), import (--format/--path) or a staged --batch."""
        settings_or_exit(profile)
        if (fmt is None) != (path is None):
            err_console.print("[red]error:[/red] --format and --path go together")
            raise typer.Exit(2)
        run_ingest(
            batch=str(batch) if batch else None,
            fmt=fmt,
            path=str(path) if path else None,
            users=users,
            days=days,
            seed=seed,
            profile=profile,
        )

    @root.command("run")
    def run(profile: ProfileOption = None) -> None:
        """The main job on the embedded default: for now, ingest a freshly simulated world."""
        settings = settings_or_exit(profile)
        console.rule("crossfade main job")
        console.print(f"profile {settings.profile}, data root {settings.data_root}")
        run_ingest(profile=profile)
        console.print(f"lake        {settings.lake_dir}")
        console.print(f"reports     {settings.reports_dir}")
        console.print(f"quarantine  {settings.quarantine_dir}")
