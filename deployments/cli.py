"""Release commands (`crossfade release ...`), added to the CLI through an entry point.

The CLI runs with the settings' own credentials (it can open the rollout store directly), so a
person at the shell acts as a release-manager named `cli:<os user>` unless --actor says who
(never a system actor such as `controller`: see deployments/rollout/auth.py); the gateway's
admin HTTP API is the token-authenticated way in for everyone else.

Every change acts on one state version: the one given with --expect-version (what `release
status` showed), else the one the command reads first and prints ("acting on ..."). When the
rollout moved on in between, the command exits 3 naming the state it lost to.
"""

from __future__ import annotations

import getpass
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from crossfade.cli import ProfileOption, console, err_console, fail, settings_or_exit

if TYPE_CHECKING:
    from deployments.rollout.api import ReleaseService
    from deployments.rollout.auth import Principal

release_app = typer.Typer(
    help="Release models: shadow, canary, blue/green switch, bake, promote or roll back.",
    no_args_is_help=True,
)

ActorOption = Annotated[
    str | None, typer.Option("--actor", help="who acts (audit log); default cli:<os user>")
]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="why (kept in the audit log)")]
ExpectOption = Annotated[
    int | None,
    typer.Option(
        "--expect-version",
        min=0,
        help="act only if the rollout is still at this state_version (see `release status`); "
        "default: the version read just before acting",
    ),
]
CONFLICT_EXIT = 3  # the rollout moved on before this command's change
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def _service(profile: str | None) -> ReleaseService:
    from deployments.rollout.api import ReleaseService
    from deployments.rollout.guardrails import GuardrailsError

    settings = settings_or_exit(profile)
    try:
        return ReleaseService(settings)
    except GuardrailsError as exc:
        raise fail(str(exc), 2) from None


def _principal(actor: str | None) -> Principal:
    from deployments.rollout.auth import Principal, ReservedActor, check_actor

    if actor is None:
        return Principal(f"cli:{getpass.getuser()}", "release-manager")
    try:
        return Principal(check_actor(actor), "release-manager")
    except ReservedActor as exc:
        raise fail(f"--actor: {exc}", 2) from None


def _expected(service: ReleaseService, expect: int | None) -> int:
    """The state version a change acts on, printed: --expect-version, else the current one."""
    from deployments.rollout.store import position_line

    if expect is not None:
        console.print(f"acting on state version {expect} (--expect-version)")
        return expect
    state = service.store.read_state()
    console.print(f"acting on {position_line(state)}")
    return state.version


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    at = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = ts - time.time()
    rel = f"in {delta:.0f} s" if delta >= 0 else f"{-delta:.0f} s ago"
    return f"{at} ({rel})"


def _versions(refs: dict[str, str] | None) -> str:
    if not refs:
        return "[dim]idle[/dim]"
    return ", ".join(f"{k} v{v}" for k, v in sorted(refs.items()))


def print_status(doc: dict[str, Any]) -> None:
    """Status at a glance: phase, slots and versions, split, guardrails, next step."""
    phase = doc["phase"] + (" [yellow](paused)[/yellow]" if doc["paused"] else "")
    lines = [
        f"rollout   {doc['rollout_id'] or '-'}   phase [bold]{phase}[/bold]"
        + (f"   step {doc['step']}" if doc["step"] else ""),
        f"split     green {doc['green_percent']:g} %   shadow share {doc['shadow_share']:g}"
        f"   canary steps {' -> '.join(f'{s:g}' for s in doc['canary_steps'])} %",
    ]
    for slot in ("blue", "green", "shadow"):
        refs = (doc["slots"] or {}).get(slot)
        shown = "champion (no rollout yet)" if slot == "blue" and not doc["slots"] else None
        lines.append(f"{slot:<9} {shown or _versions(refs)}")
    if doc["pause_reason"]:
        lines.append(f"paused    {doc['pause_reason']}")
    windows = (
        f" ({doc['windows_passed']}/{doc['windows_needed']} passing windows)"
        if doc["windows_needed"]
        else ""
    )
    lines.append(f"next      {doc['next']}{windows}")
    lines.append(f"evaluates {_when(doc['next_evaluation_at'])}")
    lines.append(f"controller {_liveness(doc.get('controller'))}")
    change = (
        f", last change {doc.get('last_action')} by {doc['updated_by']} "
        f"{_when(doc.get('updated_at'))}"
        if doc.get("updated_by")
        else ""
    )
    lines.append(f"state     version {doc['state_version']}{change}")
    console.print(Panel("\n".join(lines), title="release status", border_style="cyan"))
    window = doc.get("last_window")
    if window:
        table = Table(
            title=f"last window: {window['verdict']} ({window['phase']}, {window['slot']})"
        )
        for column in ("guardrail", "verdict", "value", "vs blue", "compared", "limit", "samples"):
            table.add_column(column)
        colours = {"PASS": "green", "INCONCLUSIVE": "yellow", "BREACH": "red"}
        for r in window["results"]:
            colour = colours.get(r["verdict"], "white")
            bound = "<=" if r["direction"] == "lower_is_better" else ">="
            table.add_row(
                r["name"],
                f"[{colour}]{r['verdict']}[/{colour}]",
                _num(r["value"]),
                _num(r["blue_value"]),
                _num(r["compared"]),
                f"{bound} {r['threshold']:g}"
                + (" rel" if r["comparison"] == "relative_to_blue" else ""),
                f"{r['samples']}/{r['min_samples']}",
            )
        console.print(table)


def _liveness(beat: dict[str, Any] | None) -> str:
    if not beat:
        return "[yellow]never seen[/yellow] (start it: `crossfade release watch` or `make serve`)"
    tick = f", ticks every {beat['tick_seconds']:g} s" if beat.get("tick_seconds") else ""
    age = f"heartbeat {beat['age_seconds']:.0f} s ago, pid {beat['pid']}{tick}"
    if beat["stale"]:
        limit = beat["stale_after_seconds"]
        return f"[red]STALE[/red]: {age} (limit {limit:g} s); rollouts pause until it is back"
    return f"[green]alive[/green]: {age}"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _run(action: Any) -> Any:
    """Call a release action, turning refusals and conflicts into a message and exit code."""
    from deployments.rollout.api import http_status
    from deployments.rollout.store import ConflictError

    try:
        return action()
    except Exception as exc:
        if isinstance(exc, ConflictError):
            raise fail(f"conflict: {exc}", CONFLICT_EXIT) from None
        code = http_status(exc)
        if code == 500:
            raise
        kind = {403: "forbidden", 401: "unauthorized"}.get(code, "refused")
        raise fail(f"{kind}: {exc}", 1) from None


@release_app.command()
def status(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Phase, slots and versions, split, last window's guardrails vs thresholds, next step."""
    service = _service(profile)
    doc = _run(lambda: service.status(_principal(None)))
    if as_json:
        console.print_json(json.dumps(doc, default=str))
    else:
        print_status(doc)


@release_app.command()
def start(
    candidates: Annotated[
        str, typer.Option("--candidates", help="candidates model: alias or version")
    ] = "challenger",
    ranker: Annotated[str, typer.Option("--ranker", help="ranker model: alias or version")] = (
        "challenger"
    ),
    reason: ReasonOption = "",
    actor: ActorOption = None,
    expect: ExpectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Start a rollout: shadow first, then the canary steps of configs/guardrails.yaml."""
    service = _service(profile)
    who = _principal(actor)
    version = _expected(service, expect)
    doc = _run(lambda: service.start(who, candidates, ranker, reason, expected_version=version))
    print_status(doc)


@release_app.command()
def promote(
    full: Annotated[bool, typer.Option("--full", help="skip every remaining step")] = False,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    expect: ExpectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Approve the current step now (with --full: champion moves to the candidate now)."""
    service = _service(profile)
    who = _principal(actor)
    version = _expected(service, expect)
    print_status(_run(lambda: service.promote(who, reason, full, expected_version=version)))


@release_app.command()
def pause(
    reason: ReasonOption = "",
    actor: ActorOption = None,
    expect: ExpectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Hold the rollout at its current split; guardrails stop advancing it."""
    service = _service(profile)
    who = _principal(actor)
    version = _expected(service, expect)
    print_status(_run(lambda: service.pause(who, reason, expected_version=version)))


@release_app.command()
def resume(
    reason: ReasonOption = "",
    actor: ActorOption = None,
    expect: ExpectOption = None,
    profile: ProfileOption = None,
) -> None:
    """Continue a paused rollout with a fresh evaluation window."""
    service = _service(profile)
    who = _principal(actor)
    version = _expected(service, expect)
    print_status(_run(lambda: service.resume(who, reason, expected_version=version)))


@release_app.command()
def rollback(
    reason: ReasonOption = "",
    actor: ActorOption = None,
    expect: ExpectOption = None,
    profile: ProfileOption = None,
) -> None:
    """All traffic to blue, MLflow aliases restored, incident recorded and notified."""
    service = _service(profile)
    who = _principal(actor)
    version = _expected(service, expect)
    doc = _run(lambda: service.rollback(who, reason, expected_version=version))
    print_status(doc)
    console.print(f"[red]rolled back[/red]: incident #{doc['incident_id']}")


@release_app.command()
def history(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
) -> None:
    """The audit log, newest first: time, actor, action, outcome, phases, reason."""
    service = _service(profile)
    rows = _run(lambda: service.history(_principal(None), limit))
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table(title="release history")
    for column in ("time (UTC)", "rollout", "actor", "action", "outcome", "phases", "reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        at = datetime.fromtimestamp(row["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        colour = "green" if row["outcome"] == "ok" else "red"
        table.add_row(
            at,
            row["rollout_id"] or "-",
            row["actor"],
            row["action"],
            f"[{colour}]{row['outcome']}[/{colour}]",
            f"{row['from_phase']} -> {row['to_phase']}",
            row["reason"],
        )
    console.print(table)


@release_app.command()
def watch(
    interval: Annotated[
        float | None, typer.Option("--interval", min=0.1, help="seconds between ticks [1]")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="one tick, then exit")] = False,
    profile: ProfileOption = None,
) -> None:
    """Run the controller: evaluate each window, advance, pause or roll back by itself.

    Its heartbeat records `--interval` (the gateway judges it against that) and is written
    from a separate thread, so a slow tick does not make it look dead."""
    service = _service(profile)
    ctl = service.controller
    if interval is not None:
        ctl.tick_seconds = interval
    interval = ctl.tick_seconds
    beats = threading.Event()
    if not once:
        ctl.beating(beats)
    try:
        _watch(ctl, interval, once)
    finally:
        beats.set()


def _watch(ctl: Any, interval: float, once: bool) -> None:
    last = None
    while True:
        try:
            outcome = ctl.tick()
        except Exception as exc:  # the store or registry is down: report, retry next tick
            err_console.print(f"[red]tick failed[/red]: {type(exc).__name__}: {exc}")
            if once:
                raise typer.Exit(1) from None
            time.sleep(interval)
            continue
        if outcome.action not in ("wait", "idle", "paused") or outcome.state.phase != last:
            verdict = outcome.window.verdict if outcome.window else "-"
            console.print(
                f"{datetime.now(UTC):%H:%M:%S} {outcome.action:<8} phase {outcome.state.phase}"
                f" green {outcome.state.green_percent:g} % window {verdict}"
                + (f" ({outcome.detail})" if outcome.detail else "")
            )
            last = outcome.state.phase
        if once:
            return
        time.sleep(interval)


@release_app.command()
def token(
    actor: Annotated[str, typer.Option("--actor", help="who the token belongs to")],
    role: Annotated[str, typer.Option("--role", help="viewer or release-manager")] = "viewer",
    profile: ProfileOption = None,
) -> None:
    """Issue an admin API token; only its SHA-256 is stored, so copy it now."""
    from deployments.rollout.auth import ROLES, ReservedActor, check_actor, issue_token, tokens_file

    settings = settings_or_exit(profile)
    if role not in ROLES:
        raise fail(f"unknown role {role!r}; choose one of {', '.join(ROLES)}", 2)
    try:
        actor = check_actor(actor)
    except ReservedActor as exc:
        raise fail(f"--actor: {exc}", 2) from None
    secret = issue_token(settings, actor, role)  # type: ignore[arg-type]
    console.print(f"token for {actor} ({role}), stored as a digest in {tokens_file(settings)}:")
    console.print(secret, soft_wrap=True, highlight=False)


@release_app.command("k8s")
def k8s(
    out: Annotated[Path | None, typer.Option("--out", help="write here (default: print)")] = None,
    interval: Annotated[str, typer.Option("--interval", help="analysis interval")] = "5m",
    profile: ProfileOption = None,
) -> None:
    """Generate the Argo Rollouts AnalysisTemplates from configs/guardrails.yaml."""
    from deployments.rollout.guardrails import GuardrailsError, guardrails_path, load_guardrails
    from deployments.rollout.k8s import render

    settings = settings_or_exit(profile)
    try:
        text = render(load_guardrails(guardrails_path(settings)), interval)
    except GuardrailsError as exc:
        raise fail(str(exc), 2) from None
    if out is None:
        console.print(text, highlight=False, markup=False, soft_wrap=True, end="")
        return
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    console.print(f"wrote {out}")


def register(groups: dict[str, Any]) -> None:
    """Add the release commands to the root `crossfade` app."""
    groups["root"].add_typer(release_app, name="release")
