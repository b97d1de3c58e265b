"""The `crossfade` command: a Typer app with rich output.

The core registers the commands that need only the core (doctor, data simulate/import,
contracts, status). Packages above the core (flows, deployments) add their own commands
through the `crossfade.commands` entry-point group, so the core never imports them.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crossfade.config import PROFILES, Settings, SettingsError, load_settings
from crossfade.experiments.cli import experiment_app

app = typer.Typer(
    name="crossfade",
    help="crossfade: release music recommendations safely.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Simulate, import, ingest and inspect data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", "-p", help=f"settings profile: {', '.join(PROFILES)}"),
]


def settings_or_exit(profile: str | None, **overrides: object) -> Settings:
    """Load settings, turning a configuration error into a clear message and exit code 2."""
    try:
        return load_settings(profile, **overrides)
    except SettingsError as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error for a person and return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@app.command()
def doctor(profile: ProfileOption = None) -> None:
    """Print the stack's versions, the active profile and whether each endpoint answers."""
    from crossfade.doctor import endpoint_checks, stack_versions

    settings = settings_or_exit(profile)
    versions = Table(title="stack", show_edge=False)
    versions.add_column("package")
    versions.add_column("version")
    for name, version in stack_versions().items():
        style = "red" if version == "missing" else ""
        versions.add_row(name, f"[{style}]{version}[/{style}]" if style else version)
    console.print(versions)
    console.print(f"profile [bold]{settings.profile}[/bold], data root {settings.data_root}")
    endpoints = Table(title="endpoints", show_edge=False)
    for column in ("service", "target", "status", "detail"):
        endpoints.add_column(column)
    checks = endpoint_checks(settings)
    for check in checks:
        mark = "[green]ok[/green]" if check.ok else "[red]unreachable[/red]"
        endpoints.add_row(check.name, check.target, mark, check.detail)
    console.print(endpoints)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


@data_app.command("simulate")
def data_simulate(
    users: Annotated[int | None, typer.Option(help="listeners in the world")] = None,
    days: Annotated[int | None, typer.Option(help="days of listening")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (same seed, same world)")] = None,
    profile: ProfileOption = None,
) -> None:
    """Simulate a listening world into a staged batch (ingest it with `data ingest --batch`)."""
    settings = settings_or_exit(profile)
    batch_dir = simulate_batch(settings, users=users, days=days, seed=seed)
    console.print(f"staged batch [bold]{batch_dir}[/bold]")
    console.print(f"next: crossfade data ingest --batch {batch_dir}")


def simulate_batch(
    settings: Settings, users: int | None = None, days: int | None = None, seed: int | None = None
) -> Path:
    """Run the simulator with optional size overrides and a progress bar; returns the batch."""
    from crossfade.data.simulator import simulate

    updates = {k: v for k, v in {"users": users, "days": days}.items() if v is not None}
    sim = settings.simulator.model_copy(update=updates)
    with Progress(
        TextColumn("simulating {task.fields[users]} listeners"),
        BarColumn(),
        TextColumn("day {task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task("simulate", total=sim.days, users=sim.users)
        return simulate(
            sim,
            seed if seed is not None else settings.seed,
            settings.staging_dir,
            settings.truth_dir,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )


@data_app.command("import")
def data_import(
    path: Annotated[Path, typer.Argument(help="file or folder to import")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="interactions | movielens | recbole | lastfm1k")
    ],
    profile: ProfileOption = None,
) -> None:
    """Map a real dataset onto the data contracts as a staged batch."""
    from crossfade.data.importers import ImportFormatError, import_path

    settings = settings_or_exit(profile)
    try:
        batch_dir = import_path(fmt, path, settings.staging_dir)
    except ImportFormatError as exc:
        raise fail(str(exc)) from None
    console.print(f"staged batch [bold]{batch_dir}[/bold]")
    console.print(f"next: crossfade data ingest --batch {batch_dir}")


@data_app.command("contracts")
def data_contracts() -> None:
    """Print the data contracts as Markdown (the source of docs/data-contracts.md)."""
    from crossfade.data.contract_docs import render_contracts

    typer.echo(render_contracts())


@data_app.command("status")
def data_status(profile: ProfileOption = None) -> None:
    """Show what the lake holds and what sits in quarantine."""
    from crossfade.data.lake import manifests

    settings = settings_or_exit(profile)
    published = manifests(settings.lake_dir)
    table = Table(title=f"lake {settings.lake_dir}", show_edge=False)
    for column in ("batch", "source", "window", "rows"):
        table.add_column(column)
    for m in published:
        rows = ", ".join(f"{k} {v:,}" for k, v in m["row_counts"].items())
        table.add_row(m["batch_id"], m["source"], f"{m['window_start']}..{m['window_end']}", rows)
    console.print(table)
    quarantined = (
        sorted(p.name for p in settings.quarantine_dir.iterdir())
        if settings.quarantine_dir.is_dir()
        else []
    )
    console.print(f"quarantine {settings.quarantine_dir}: {len(quarantined)} batch(es)")
    for name in quarantined:
        console.print(f"  {name}  (report: {settings.quarantine_dir / name / 'report.json'})")


app.add_typer(experiment_app, name="experiment")
bench_app = typer.Typer(help="Measure quality on any dataset.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("quality")
def bench_quality(
    dataset: Annotated[Path, typer.Option("--dataset", help="file or folder of interactions")],
    fmt: Annotated[
        str, typer.Option("--format", help="interactions | movielens | recbole | lastfm1k")
    ],
    protocol: Annotated[str, typer.Option(help="random-per-user | temporal")] = "random-per-user",
    ratios: Annotated[str, typer.Option(help="train,test shares")] = "0.8,0.2",
    seed: Annotated[int, typer.Option(help="split and model seed")] = 42,
    k: Annotated[int, typer.Option(help="cut-off of the metrics")] = 10,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the metrics here")] = None,
) -> None:
    """Run the full stack and the baselines on a dataset; print one JSON object per model."""
    import json

    from crossfade.data.importers import ImportFormatError
    from crossfade.evaluation.bench import bench_quality as run

    try:
        shares = tuple(float(x) for x in ratios.split(","))
        if len(shares) != 2:
            raise ValueError(f"--ratios needs two numbers, got {ratios!r}")
        results = run(fmt, dataset, protocol, (shares[0], shares[1]), seed, k)
    except (ImportFormatError, ValueError) as exc:
        raise fail(str(exc)) from None
    for model, metrics in results.items():
        typer.echo(json.dumps({"model": model, **metrics}, sort_keys=True))
    if json_out is not None:
        from crossfade.data.lake import atomic_write_text

        atomic_write_text(json_out, json.dumps(results, indent=2, sort_keys=True))
        err_console.print(f"metrics written to {json_out}")


@app.command()
def evaluate(
    protocol: Annotated[str, typer.Option(help="temporal | random-per-user")] = "temporal",
    k: Annotated[int, typer.Option(help="cut-off of the metrics")] = 10,
    test_share: Annotated[float, typer.Option(help="share of interactions held out")] = 0.2,
    profile: ProfileOption = None,
) -> None:
    """Evaluate the full stack and the baselines on the lake's own listening data."""
    import json

    from crossfade import columns as C
    from crossfade.candidates.weights import WEIGHT
    from crossfade.data.lake import read_lake_table
    from crossfade.evaluation.bench import split
    from crossfade.evaluation.quality import run_quality

    settings = settings_or_exit(profile)
    events = read_lake_table(settings.lake_dir, "events", columns=[C.USER_ID, C.ITEM_ID, C.TS])
    if events.num_rows == 0:
        raise fail(
            f"the lake at {settings.lake_dir} has no events: run `crossfade data ingest` first"
        )
    frame = events.to_pandas().assign(**{WEIGHT: 1.0})
    try:
        train, test = split(frame, protocol, test_share, settings.seed)
        results = run_quality(train, test, k=k, seed=settings.seed)
    except ValueError as exc:
        raise fail(str(exc)) from None
    table = Table(title=f"{protocol} split, k={k}", show_edge=False)
    metrics = sorted({m for r in results.values() for m in r})
    for column in ("model", *metrics):
        table.add_column(column)
    for model, values in results.items():
        cells = [values.get(m, float("nan")) for m in metrics]
        table.add_row(
            model,
            *(
                f"{v:.0f}" if m == "users" else f"{v:.4f}"
                for m, v in zip(metrics, cells, strict=True)
            ),
        )
    console.print(table)
    typer.echo(json.dumps(results, sort_keys=True))


def _register_core_groups() -> None:
    """Command groups of the core that live in their own modules."""
    from crossfade.safety.cli import register as register_safety

    register_safety(app)


def _load_plugins() -> None:
    """Let packages above the core add commands (entry-point group `crossfade.commands`)."""
    groups = {"root": app, "data": data_app}
    for entry in entry_points(group="crossfade.commands"):
        entry.load()(groups)


if __name__ == "__main__":
    # `python -m crossfade.cli`: command modules import `crossfade.cli`, so run that module's
    # app rather than completing this `__main__` copy (which would register everything twice).
    from crossfade.cli import app as _app

    _app()
else:
    _register_core_groups()
    _load_plugins()
