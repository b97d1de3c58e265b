"""`crossfade experiment plan | simulate | analyze` (registered in crossfade/cli.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crossfade.config import PROFILES, Settings, SettingsError, load_settings
from crossfade.evaluation.metric_tree import MetricTreeError, load_metric_tree
from crossfade.experiments.definition import (
    ExperimentDefinition,
    ExperimentError,
    load_definition,
)
from crossfade.experiments.sequential import SequentialError
from crossfade.experiments.stats import StatsError

experiment_app = typer.Typer(
    help="Plan, simulate and analyse A/B experiments.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)
Profile = Annotated[
    str | None, typer.Option("--profile", "-p", help=f"settings profile: {', '.join(PROFILES)}")
]
Definition = Annotated[
    Path, typer.Argument(help="experiment definition (configs/experiments/*.yaml)")
]
_ERRORS = (ExperimentError, MetricTreeError, StatsError, SequentialError, ValueError)


def _settings(profile: str | None) -> Settings:
    try:
        return load_settings(profile)
    except SettingsError as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _definition(path: Path) -> ExperimentDefinition:
    try:
        return load_definition(path)
    except ExperimentError as exc:
        raise _fail(str(exc)) from None


@experiment_app.command("plan")
def plan(definition: Definition) -> None:
    """Sample size, MDE and duration per metric, the looks and the ramp with its checks."""
    from crossfade.experiments.planning import plan_experiment

    d = _definition(definition)
    try:
        p = plan_experiment(d, load_metric_tree())
    except _ERRORS as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"[bold]{d.name}[/bold]: {', '.join(d.variants)}; success metrics at two-sided alpha "
        f"{d.alpha}/{len(d.success_metrics)} = {p.alpha_success:.4f}; every test powered at "
        f"1 - beta/(G+1) = {p.power_per_test:.3f} (G = {len(d.guardrails)} guardrails); "
        f"{d.sequential.looks} looks, {d.sequential.spending} spending, sample size inflation "
        f"x{p.inflation:.3f}"
    )
    table = Table(title="metrics", show_edge=False)
    for col in (
        "metric",
        "role",
        "test",
        "baseline",
        "target",
        "units needed",
        "days",
        "MDE at plan",
    ):
        table.add_column(col)
    for m in p.metrics:
        target = ("MDE " if m.role == "success" else "NI margin ") + f"{m.target_relative:.2%}"
        table.add_row(
            m.metric,
            m.role,
            m.test,
            f"{m.baseline_mean:.4g} ± {m.baseline_sd:.3g}",
            target,
            f"{m.required_units:,}",
            str(m.days_needed) if m.days_needed else "[red]> max[/red]",
            f"{m.detectable_relative:.2%}",
        )
    console.print(table)
    verdict = (
        "" if p.reachable else " [red](some metrics cannot reach their target: see days)[/red]"
    )
    console.print(
        f"duration [bold]{p.duration_days} days[/bold], {p.planned_units:,} listeners exposed"
        f"{verdict}; looks at the end of days {', '.join(str(x) for x in p.look_days)}"
    )
    ramp = Table(title="ramp (guardrail check at the end of each step)", show_edge=False)
    for col in ("step", "share", "days", "listeners by end", "smallest detectable harm"):
        ramp.add_column(col)
    for i, r in enumerate(p.ramp, 1):
        harm = ", ".join(f"{k} {v:.1%}" for k, v in r.detectable_harm.items())
        ramp.add_row(
            str(i), f"{r.share:.0%}", f"{r.first_day}-{r.last_day}", f"{r.units_by_end:,}", harm
        )
    console.print(ramp)
    console.print("at each ramp step: ABORT and roll back if any guardrail is significantly worse")


@experiment_app.command("simulate")
def simulate(
    definition: Definition,
    days: Annotated[int, typer.Option(help="experiment days (daily looks)")] = 7,
    control: Annotated[str, typer.Option(help="popularity")] = "popularity",
    treatment: Annotated[
        str, typer.Option(help="popularity (A/A) | planted:SHARE (oracle re-ordering)")
    ] = "planted:0.5",
    no_ramp: Annotated[bool, typer.Option("--no-ramp", help="expose everyone from day 0")] = False,
    profile: Profile = None,
) -> None:
    """Run built-in policies against the simulator's listeners, analyse and decide."""
    from crossfade.experiments.run import builtin_policy, load_world, run_simulated

    settings = _settings(profile)
    d = _definition(definition)
    try:
        world = load_world(settings)
        policies = {
            d.control: builtin_policy(control, world),
            d.treatments[0]: builtin_policy(treatment, world),
        }
        with Progress(
            TextColumn("simulating day"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=not sys.stderr.isatty(),
        ) as progress:
            task = progress.add_task("sim", total=days)
            analysis, report = run_simulated(
                settings,
                world,
                d,
                policies,
                days,
                no_ramp=no_ramp,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except _ERRORS as exc:
        raise _fail(str(exc)) from None
    _print_decision(analysis.to_dict(), report)


@experiment_app.command("analyze")
def analyze_command(
    data: Annotated[
        Path, typer.Argument(help="folder with exposures.(csv|parquet) and metrics.(csv|parquet)")
    ],
    definition: Annotated[Path, typer.Option("--definition", "-d", help="experiment yaml")],
    planned_units: Annotated[
        int | None, typer.Option(help="planned listeners (default: the data's final count)")
    ] = None,
    profile: Profile = None,
) -> None:
    """Analyse exposure and metric data from outside (format: docs/experiments.md)."""
    from crossfade.experiments.analysis import analyze
    from crossfade.experiments.io import load_external
    from crossfade.experiments.report import write_report

    settings = _settings(profile)
    d = _definition(definition)

    def find(stem: str) -> Path:
        for ext in (".parquet", ".csv"):
            if (data / f"{stem}{ext}").is_file():
                return data / f"{stem}{ext}"
        raise ExperimentError(f"{data} has no {stem}.csv or {stem}.parquet")

    try:
        units, daily = load_external(find("exposures"), find("metrics"))
        analysis = analyze(d, load_metric_tree(), units, daily, planned_units)
    except _ERRORS as exc:
        raise _fail(str(exc)) from None
    folder = settings.reports_dir / "experiments" / d.name / "analyze"
    report = write_report(folder, analysis, f"Experiment {d.name} (external data)")
    _print_decision(analysis.to_dict(), report)


def _print_decision(result: dict[str, object], report: Path) -> None:
    colour = {"SHIP": "green", "ABORT": "red", "INVALID": "red"}.get(
        str(result["decision"]), "yellow"
    )
    console.print(f"decision [bold {colour}]{result['decision']}[/bold {colour}]")
    for reason in result["reasons"]:  # type: ignore[attr-defined]
        console.print(f"  - {reason}")
    console.print(f"report {report}")
    typer.echo(json.dumps({"decision": result["decision"], "report": str(report)}))
