"""Commands that run Prefect flows, added to the `crossfade` CLI through an entry point."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel

from crossfade.cli import ProfileOption, console, err_console, settings_or_exit


def _print_outcome(outcome: dict[str, Any], prefect_home: str | None) -> None:
    status = outcome["status"]
    colour = {"published": "green", "skipped": "yellow", "quarantined": "red"}[status]
    dups = outcome.get("rows_duplicate", 0)
    balanced = outcome["rows_received"] == (
        outcome["rows_accepted"] + outcome["rows_quarantined"] + dups
    )
    lines = [
        f"batch      {outcome['batch_id']}",
        f"status     [{colour}]{status}[/{colour}]",
        f"rows       received {outcome['rows_received']:,} = accepted "
        f"{outcome['rows_accepted']:,} + quarantined {outcome['rows_quarantined']:,} + "
        f"duplicates {dups:,}" + ("" if balanced else "  [red](does not add up)[/red]"),
    ]
    events = outcome.get("tables", {}).get("events")
    if events:
        lines.append(
            f"events     received {events['received']:,}, accepted {events['accepted']:,}, "
            f"quarantined {events['quarantined']:,}, duplicates {events['duplicates']:,} "
            f"({events['in_batch']:,} repeated in the batch, {events['in_lake']:,} already "
            "in the lake)"
        )
    lines.append(f"location   {outcome['location']}")
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


def prepare_prefect_home() -> None:
    """Create PREFECT_HOME with its parents before Prefect is imported (it makes one level)."""
    home = os.environ.get("PREFECT_HOME")
    if home:
        Path(home).expanduser().mkdir(parents=True, exist_ok=True)


def prefect_logs_to_file(log_file: Path) -> None:
    """Route Prefect's console logging (this process and its temporary server) to `log_file`.

    Writes a copy of Prefect's own logging config whose console handlers write to the file,
    and points PREFECT_LOGGING_SETTINGS_PATH at it; must run before Prefect is imported.
    A PREFECT_LOGGING_SETTINGS_PATH set by the user wins.
    """
    if os.environ.get("PREFECT_LOGGING_SETTINGS_PATH") or "prefect" in sys.modules:
        return
    import importlib.resources

    import yaml

    default = importlib.resources.files("prefect.logging") / "logging.yml"
    config = yaml.safe_load(default.read_text())
    for name in ("console", "debug"):
        handler = config["handlers"][name]
        config["handlers"][name] = {
            "level": handler.get("level", 0),
            "class": "logging.FileHandler",
            "formatter": handler.get("formatter", "standard"),
            "filename": str(log_file),
            "encoding": "utf-8",
        }
    log_file.parent.mkdir(parents=True, exist_ok=True)
    target = log_file.with_name("logging.yml")
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    os.environ["PREFECT_LOGGING_SETTINGS_PATH"] = str(target)


def _console_logs_to_file(log_file: Path) -> None:
    """After Prefect is imported: move its console handlers in this process to `log_file`
    (Prefect may have read its logging settings before the variable above was set)."""
    import logging

    from prefect.logging.handlers import PrefectConsoleHandler

    log_file.parent.mkdir(parents=True, exist_ok=True)
    target: logging.Handler | None = None
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith("prefect")]
    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in names)]:
        for handler in list(logger.handlers):
            if isinstance(handler, PrefectConsoleHandler):
                if target is None:
                    target = logging.FileHandler(log_file, encoding="utf-8")
                    target.setFormatter(handler.formatter)
                logger.removeHandler(handler)
                logger.addHandler(target)


def _input_error(message: str) -> None:
    """One red panel naming the input and the fix; exit 2 before anything heavy starts."""
    console.print(Panel(message, title="ingest: cannot read the input", border_style="red"))
    raise typer.Exit(2)


def run_ingest(**params: Any) -> dict[str, Any]:
    """Run the ingest flow, print its outcome, and exit 1 when the batch was rejected."""
    prepare_prefect_home()
    settings = settings_or_exit(params.get("profile"))
    prefect_logs_to_file(settings.prefect_log)
    from flows.ingest import BatchRejected, ingest_flow

    _console_logs_to_file(settings.prefect_log)

    home = os.environ.get("PREFECT_HOME")
    try:
        outcome = ingest_flow(**params)
    except BatchRejected as exc:
        _print_outcome(exc.outcome.to_dict(), home)
        err_console.print(
            "[red]batch rejected[/red]: kept whole in quarantine, nothing written to the lake"
            f" (Prefect's log: {settings.prefect_log})"
        )
        raise typer.Exit(1) from None
    except RuntimeError as exc:
        if not any(t in str(exc) for t in ("ephemeral Prefect API server", "reach API at")):
            raise
        console.print(
            Panel(
                f"{exc}\nNothing was ingested. Check PREFECT_API_URL (or unset it to use a "
                "temporary server); on a busy machine raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start a server (`make ui`). "
                f"Prefect's log: {settings.prefect_log}",
                title="ingest: Prefect is not reachable",
                border_style="red",
            )
        )
        raise typer.Exit(1) from None
    _print_outcome(outcome, home)
    return outcome


def run_features(profile: str | None) -> dict[str, Any]:
    """Run the features flow, print its outcome, exit 1 when the tables were rejected."""
    prepare_prefect_home()
    from flows.features import FeaturesRejected, features_flow

    try:
        outcome = features_flow(profile=profile)
    except FeaturesRejected as exc:
        lines = [f"  - {line}" for line in exc.outcome.failures]
        console.print(
            Panel(
                "\n".join(
                    [
                        "[red]rejected[/red]: online store keeps its last good values",
                        *lines,
                        f"kept in {exc.outcome.quarantine}",
                    ]
                ),
                title="features",
                border_style="red",
            )
        )
        raise typer.Exit(1) from None
    colour = "green" if outcome["status"] == "materialized" else "yellow"
    lines = [f"status     [{colour}]{outcome['status']}[/{colour}]"]
    lines += [f"{view:<22} {rows:,} rows" for view, rows in outcome["rows"].items()]
    if outcome.get("materialized_until"):
        lines.append(f"online     materialized until {outcome['materialized_until']}")
    lines += [f"  - {line}" for line in outcome.get("failures", [])]
    console.print(Panel("\n".join(lines), title="features", border_style=colour))
    return outcome


def _features_commands(root: typer.Typer) -> None:
    features_app = typer.Typer(
        help="Feature store: apply, materialize, inspect.", no_args_is_help=True
    )
    root.add_typer(features_app, name="features")

    @features_app.command("apply")
    def features_apply(profile: ProfileOption = None) -> None:
        """Register the Feast entities, views and feature services (feast apply)."""
        from feature_repo.definitions import build_definitions
        from feature_repo.store import open_store

        settings = settings_or_exit(profile)
        store = open_store(settings)
        defs = build_definitions(settings.features_dir)
        store.apply(defs.all())
        console.print(
            f"applied {len(defs.views)} feature views, 1 on-demand view and "
            f"{len(defs.services)} feature services to project {settings.features.project}"
        )

    @features_app.command("docs")
    def features_docs(profile: ProfileOption = None) -> None:
        """Print docs/features.md: every feature, its source, budget and who may use it."""
        from crossfade.features.docs import render_features_doc
        from crossfade.features.policy import load_policy

        settings = settings_or_exit(profile)
        policy = load_policy(settings.config_path / settings.features.policy_file)
        typer.echo(render_features_doc(settings.features.freshness_hours, policy), nl=False)

    @features_app.command("materialize")
    def features_materialize(profile: ProfileOption = None) -> None:
        """Compute and validate feature tables from the lake, then materialize them online."""
        settings_or_exit(profile)
        run_features(profile)

    @features_app.command("show")
    def features_show(
        user: Annotated[str, typer.Argument(help="pseudonymous listener id")],
        profile: ProfileOption = None,
    ) -> None:
        """Print a listener's online features with their age and freshness."""
        from rich.table import Table

        from crossfade.features.online import OnlineFeatures
        from crossfade.features.policy import load_policy
        from feature_repo.online_reader import FeastOnlineReader
        from feature_repo.store import open_store

        settings = settings_or_exit(profile)
        reader = FeastOnlineReader(open_store(settings), settings.features_dir)
        policy = load_policy(settings.config_path / settings.features.policy_file)
        vector = OnlineFeatures(reader, settings.features.freshness_hours, policy).user(user)
        if vector.missing:
            state = "[red]missing: no online row, documented defaults shown[/red]"
        elif vector.stale:
            state = (
                f"[yellow]stale ({vector.age_seconds / 3600:.1f} h old): defaults shown[/yellow]"
            )
        else:
            state = f"[green]fresh[/green], {(vector.age_seconds or 0) / 3600:.1f} h old"
        console.print(f"listener {user}: {state}")
        table = Table(show_edge=False)
        table.add_column("feature")
        table.add_column("value")
        for name, value in vector.values.items():
            shown = (
                "[" + ", ".join(f"{v:.2f}" for v in value) + "]"
                if isinstance(value, list | tuple)
                else f"{value:.3f}"
                if isinstance(value, float)
                else str(value)
            )
            note = " (withheld by policy)" if name in vector.withheld else ""
            table.add_row(name, shown + note)
        console.print(table)
        if vector.missing:
            raise typer.Exit(1)


def run_train_candidates(profile: str | None) -> dict[str, Any]:
    """Run the candidate training flow and print what was registered."""
    prepare_prefect_home()
    from flows.train import train_candidates_flow

    outcome = train_candidates_flow(profile=profile)
    m = outcome["metrics"]
    colour = "green" if outcome["gate_passed"] else "yellow"
    lines = [
        f"model      {outcome['model_uri']} (run {outcome['run_id']})",
        f"gate       [{colour}]{'passed' if outcome['gate_passed'] else 'failed'}[/{colour}]: "
        + "; ".join(outcome["reasons"]),
        f"alias      {outcome['alias'] or '(none)'}",
    ]
    for n in (100, 200, 500):
        if f"recall_at_{n}" in m:
            lines.append(
                f"recall@{n:<4} {m[f'recall_at_{n}']:.3f} (popular in market "
                f"{m.get(f'baseline_popular_recall_at_{n}', float('nan')):.3f}; new releases "
                f"{m.get(f'recall_at_{n}_new_items', float('nan')):.3f}; new listeners "
                f"{m.get(f'recall_at_{n}_new_listeners', float('nan')):.3f})"
            )
    console.print(Panel("\n".join(lines), title="candidates", border_style=colour))
    return outcome


def run_train_ranker(profile: str | None) -> dict[str, Any]:
    """Run the ranker flow and print the gate's decision with its reasons."""
    prepare_prefect_home()
    from flows.train_ranker import train_ranker_flow

    outcome = train_ranker_flow(profile=profile)
    m, b = outcome["metrics"], outcome["baseline"]
    colour = "green" if outcome["passed"] else "red"
    verdict = f"passed → {outcome['alias']}" if outcome["passed"] else "refused"
    lines = [f"version    crossfade-ranker v{outcome['version']} (run {outcome['run_id']})"]
    lines.append(f"gate       [{colour}]{verdict}[/{colour}]")
    lines += [f"  - {reason}" for reason in outcome["reasons"]]
    for key in sorted(k for k in m if k.startswith("ndcg@10")):
        lines.append(
            f"{key:<22} {m[key]:.4f} (candidate-score order {b.get(key, float('nan')):.4f})"
        )
    lines.append(
        f"re-ranker  NDCG cost {m.get('rerank_ndcg_cost', float('nan')):.4f}, diversity "
        f"{m.get('rerank_diversity_gain', float('nan')):+.4f}, long tail "
        f"{m.get('rerank_long_tail_gain', float('nan')):+.4f}"
    )
    console.print(Panel("\n".join(lines), title="ranker", border_style=colour))
    return outcome


def _train_commands(root: typer.Typer) -> None:
    train_app = typer.Typer(help="Train and register models.", no_args_is_help=True)
    root.add_typer(train_app, name="train")

    @train_app.command("candidates")
    def train_candidates(profile: ProfileOption = None) -> None:
        """Evaluate on a holdout, train, register `crossfade-candidates`, gate `challenger`."""
        settings_or_exit(profile)
        try:
            run_train_candidates(profile)
        except ValueError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None

    @train_app.command("ranker")
    def train_ranker(profile: ProfileOption = None) -> None:
        """Train the per-tier ranker on logged impressions, gate it, register `crossfade-ranker`."""
        settings_or_exit(profile)
        try:
            run_train_ranker(profile)
        except ValueError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None

    candidates_app = typer.Typer(help="Inspect candidate retrieval.", no_args_is_help=True)
    root.add_typer(candidates_app, name="candidates")

    @candidates_app.command("show")
    def candidates_show(
        user: Annotated[str, typer.Argument(help="pseudonymous listener id")],
        model: Annotated[str, typer.Option(help="version number or @alias")] = "@challenger",
        k: Annotated[int, typer.Option(help="how many to show")] = 20,
        profile: ProfileOption = None,
    ) -> None:
        """Retrieve candidates for a listener from a registered model, with sources and scores."""
        import pandas as pd
        from rich.table import Table

        from model_registry.candidates import load_candidates

        settings = settings_or_exit(profile)
        try:
            pyfunc = load_candidates(settings, model)
        except Exception as exc:  # MLflow raises many types for a missing model or alias
            err_console.print(f"[red]error:[/red] cannot load {model}: {str(exc).splitlines()[0]}")
            raise typer.Exit(1) from None
        frame = pyfunc.predict(pd.DataFrame({"user_id": [user], "k": [k]}))
        table = Table(title=f"candidates for {user} ({model})", show_edge=False)
        for column in ("rank", "item_id", "source", "score", "also found by"):
            table.add_column(column)
        for row in frame.itertuples():
            others = [s for s in str(row.sources).split(",") if s and s != row.source]
            table.add_row(
                str(row.rank), row.item_id, row.source, f"{row.score:.4f}", ", ".join(others)
            )
        console.print(table)
        counts = frame["source"].value_counts().to_dict()
        console.print("by source: " + ", ".join(f"{s} {n}" for s, n in counts.items()))


def _online_stores(settings: Any) -> list[Any]:
    from feature_repo.erasure import online_stores

    return list(online_stores(settings))


def _model_artifact_stores(settings: Any) -> list[Any]:
    from model_registry.erasure import model_artifact_stores

    return list(model_artifact_stores(settings))


def _import_formats() -> list[str]:
    from crossfade.data.importers import FORMATS

    return list(FORMATS)


def register(groups: dict[str, typer.Typer]) -> None:
    """Add `data ingest`, `features ...`, `train ...`, `candidates ...` and `run` to the CLI."""
    data_app, root = groups["data"], groups["root"]
    _features_commands(root)
    _train_commands(root)
    from crossfade.safety.erasure import register_store_factory

    # `crossfade privacy erase|verify` reach the Feast online stores (feast imported lazily).
    register_store_factory("feast_online", _online_stores)
    register_store_factory("model_artifacts", _model_artifact_stores)  # MLflow, lazily too

    @data_app.command("ingest")
    def data_ingest(
        batch: Annotated[
            Path | None, typer.Option(help="an already staged batch folder to ingest")
        ] = None,
        fmt: Annotated[
            str | None,
            typer.Option("--format", "-f", help=f"import: {'|'.join(_import_formats())}"),
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
        from crossfade.data.importers import ImportFormatError, check_input

        try:  # before Prefect: a wrong path must not wait for a server to start
            if fmt is not None and path is not None:
                check_input(fmt, path)
            if batch is not None and not batch.is_dir():
                raise ImportFormatError(
                    f"{batch}: no staged batch folder there; pass a folder under staging/"
                )
        except ImportFormatError as exc:
            _input_error(str(exc))
        run_ingest(
            batch=str(batch) if batch else None,
            fmt=fmt,
            path=str(path) if path else None,
            users=users,
            days=days,
            seed=seed,
            profile=profile,
        )

    from flows.lifecycle_cli import register_lifecycle

    register_lifecycle(root)
