"""`crossfade safety`, `crossfade privacy` and `crossfade report` commands."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from crossfade import columns as C
from crossfade.cli import ProfileOption, console, err_console, fail, settings_or_exit
from crossfade.config import Settings
from crossfade.safety.erasure import Eraser, Finding

safety_app = typer.Typer(help="Bot detection and bias audits.", no_args_is_help=True)
privacy_app = typer.Typer(help="Erasure, verification and retention.", no_args_is_help=True)
report_app = typer.Typer(help="Transparency reports.", no_args_is_help=True)


def _lake_frame(settings: Settings, name: str) -> pd.DataFrame:
    from crossfade.data.lake import read_lake_table

    return read_lake_table(settings.lake_dir, name).to_pandas()


def _events_or_exit(settings: Settings) -> pd.DataFrame:
    events = _lake_frame(settings, "events")
    if events.empty:
        raise fail(f"the lake at {settings.lake_dir} has no events: run `crossfade data ingest`")
    return events


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise fail(f"{path} does not exist")
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)


@safety_app.command("bots")
def safety_bots(
    limit: Annotated[int, typer.Option(help="flagged accounts to print")] = 50,
    profile: ProfileOption = None,
) -> None:
    """Flag stream-farm accounts in the lake, print them with reasons, store the flags."""
    from crossfade.safety import paths
    from crossfade.safety.bots import FLAGGED, REASONS, SCORE, detect_bots, write_flags

    settings = settings_or_exit(profile)
    policy = paths.safety_policy(settings)
    flags = detect_bots(_events_or_exit(settings), policy.bots, settings.seed)
    path = write_flags(flags, paths.bot_flags_dir(settings))
    flagged = flags[flags[FLAGGED]]
    table = Table(title=f"{len(flagged)} of {len(flags)} accounts flagged", show_edge=False)
    for column in ("account", "score", "reasons"):
        table.add_column(column)
    for row in flagged.head(limit).itertuples(index=False):
        table.add_row(str(getattr(row, C.USER_ID)), str(getattr(row, SCORE)), getattr(row, REASONS))
    console.print(table)
    console.print(f"flags written to {path}")


@safety_app.command("audit")
def safety_audit(
    recs: Annotated[Path, typer.Option(help="recommendation lists: Parquet/CSV user_id,item_id")],
    profile: ProfileOption = None,
) -> None:
    """Bias-audit recommendation lists against the lake's listening (bots excluded)."""
    import json

    from crossfade.safety import paths
    from crossfade.safety.audits import audit_recommendations
    from crossfade.safety.bots import exclude_flagged, latest_flags

    settings = settings_or_exit(profile)
    policy = paths.safety_policy(settings)
    events = _events_or_exit(settings)
    flags = latest_flags(paths.bot_flags_dir(settings))
    if flags is not None:
        events = exclude_flagged(events, flags)
    try:
        result = audit_recommendations(
            _read_table(recs), events, _lake_frame(settings, "items"),
            _lake_frame(settings, "artists"), _lake_frame(settings, "users"), policy.audits,
        )  # fmt: skip
    except ValueError as exc:
        raise fail(str(exc)) from None
    for reason in result.reasons:
        colour = "green" if reason.endswith(": ok") else "red"
        console.print(f"[{colour}]{reason}[/{colour}]")
    typer.echo(json.dumps(result.metrics, sort_keys=True))
    if not result.passed:
        raise typer.Exit(1)


def _ids_and_pseudonym(settings: Settings, listener: str) -> tuple[frozenset[str], str, str]:
    """The ids to erase (as given and, with a key, its pseudonym), the audit pseudonym, key id."""
    from crossfade.safety.privacy import PrivacyError, key_id, pseudonym_key, pseudonymize

    if not listener.strip():
        raise fail("give a listener id")
    try:
        key = pseudonym_key(settings)
    except PrivacyError as exc:
        raise fail(f"{exc} (the erasure audit records only the pseudonym)") from None
    pseudonym = pseudonymize(listener, key)
    return frozenset({listener, pseudonym}), pseudonym, key_id(key)


def _print_findings(title: str, findings: list[Finding]) -> None:
    table = Table(title=title, show_edge=False)
    for column in ("store", "location", "rows", "what to do"):
        table.add_column(column)
    for f in findings:
        todo = f.note if not f.cleanable else "`crossfade privacy erase` removes it"
        table.add_row(f.store, f.location, str(f.rows), todo)
    console.print(table)


def _print_per_store(stores: list[Eraser], findings: list[Finding]) -> None:
    """One line per store: clean, or how many rows remain and whether erase can remove them."""
    for store in stores:
        mine = [f for f in findings if f.store == store.name]
        if not mine:
            console.print(f"[green]{store.name}: nothing found[/green]")
            continue
        cleanable = sum(f.rows for f in mine if f.cleanable)
        held = [f for f in mine if not f.cleanable]
        parts = [f"{cleanable} row(s) erase can remove"] if cleanable else []
        if held:
            parts.append(f"{sum(f.rows for f in held)} that erase cannot clean here")
        console.print(f"[red]{store.name}: {', '.join(parts)}[/red]")


@privacy_app.command("erase")
def privacy_erase(
    listener: Annotated[str, typer.Argument(help="the listener's id (raw or pseudonym)")],
    profile: ProfileOption = None,
) -> None:
    """Stop personalizing for a listener, remove them from every store, verify, audit.

    The erased-listeners set is written first, so serving answers the listener
    non-personalized within `privacy.erased_refresh_seconds` even while the stores are
    being cleaned; what cannot be cleaned here (inside trained models) is listed honestly.
    """
    from crossfade.safety.erased import record_erased
    from crossfade.safety.erasure import all_stores, audit_record, erase_listener, write_audit
    from crossfade.safety.privacy import PrivacyError, serving_ids

    settings = settings_or_exit(profile)
    ids, pseudonym, kid = _ids_and_pseudonym(settings, listener)
    try:
        erased = record_erased(settings, serving_ids(settings, listener))
    except PrivacyError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"serving ignores the listener from now on (within "
        f"{settings.privacy.erased_refresh_seconds:g} s): {erased}"
    )
    stores = all_stores(settings)
    removed, remaining = erase_listener(stores, ids)
    left = [f for f in remaining if f.cleanable]
    held = [f for f in remaining if not f.cleanable]
    record = audit_record(
        pseudonym, kid, stores, removed, sum(f.rows for f in left), sum(f.rows for f in held)
    )
    path = write_audit(settings, record)
    _print_findings(f"removed ({len(stores)} stores scanned)", removed)
    console.print(f"audit record appended to {path}")
    if held:
        _print_findings("NOT CLEANED HERE (the listener stays in these until retrained)", held)
        console.print(
            "[yellow]serving answers this listener non-personalized while the loaded models "
            "hold them; retrain and release to remove them from the models[/yellow]"
        )
    if left:
        _print_findings("STILL PRESENT", left)
        raise fail("erasure incomplete: the stores above still hold the listener; run it again")


@privacy_app.command("verify")
def privacy_verify(
    listener: Annotated[str, typer.Argument(help="the listener's id (raw or pseudonym)")],
    profile: ProfileOption = None,
) -> None:
    """Scan every store; exit 1 and say, per store, what remains and whether erase can
    remove it (anything inside a trained model needs a retrain)."""
    from crossfade.safety.erasure import all_stores, verify_listener

    settings = settings_or_exit(profile)
    ids, _, _ = _ids_and_pseudonym(settings, listener)
    stores = all_stores(settings)
    remaining = verify_listener(stores, ids)
    _print_per_store(stores, remaining)
    if remaining:
        _print_findings("listener data found", remaining)
        raise typer.Exit(1)
    names = ", ".join(s.name for s in stores)
    console.print(f"[green]nothing remains[/green] in {len(stores)} stores: {names}")


@privacy_app.command("retention")
def privacy_retention(
    days: Annotated[int | None, typer.Option(help="override privacy.retention_days")] = None,
    dry_run: Annotated[bool, typer.Option(help="only list what would be dropped")] = False,
    profile: ProfileOption = None,
) -> None:
    """Drop raw-event partitions of the lake older than the retention limit."""
    from crossfade.safety.privacy import apply_retention

    settings = settings_or_exit(profile)
    try:
        result = apply_retention(
            settings.lake_dir, days or settings.privacy.retention_days, dry_run=dry_run
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    verb = "would drop" if dry_run else "dropped"
    for table, files in result["dropped"].items():
        console.print(f"{table}: {verb} {len(files)} file(s) before {result['cutoff']}")


@report_app.command("creators")
def report_creators(
    impressions: Annotated[
        Path | None,
        typer.Option(
            help="impressions file (Parquet/CSV with item_id, country); default: what the "
            "recommenders served (<data root>/logs/requests)"
        ),
    ] = None,
    profile: ProfileOption = None,
) -> None:
    """Per artist and market: impressions and their share against listening share, and
    new-release exposure, as CSV and HTML under <data root>/reports/creators/."""
    from crossfade.safety import paths
    from crossfade.safety.bots import exclude_flagged, latest_flags
    from crossfade.safety.creators import (
        creator_report,
        served_impressions,
        write_creator_report,
    )

    settings = settings_or_exit(profile)
    events = _events_or_exit(settings)
    flags = latest_flags(paths.bot_flags_dir(settings))
    if flags is None:
        err_console.print("no bot flags yet (`crossfade safety bots`): counting every account")
    else:
        events = exclude_flagged(events, flags)
    if impressions is not None:
        shown = _read_table(impressions)
    else:
        shown = served_impressions(paths.logs_dir(settings) / "requests")
        if shown.empty:
            raise fail(
                "nothing served yet: no request logs under "
                f"{paths.logs_dir(settings) / 'requests'}; run `make run` or pass --impressions"
            )
    try:
        report = creator_report(
            shown, events, _lake_frame(settings, "items"),
            datetime.now(UTC).date(), settings.candidates.fresh_release_days,
        )  # fmt: skip
    except ValueError as exc:
        raise fail(str(exc)) from None
    csv_path, html_path = write_creator_report(report, settings.reports_dir / "creators")
    console.print(f"{len(report):,} artist-market rows: {csv_path} and {html_path}")


def register(app: typer.Typer) -> None:
    """Add the three command groups to the root app."""
    app.add_typer(safety_app, name="safety")
    app.add_typer(privacy_app, name="privacy")
    app.add_typer(report_app, name="report")
