"""The lifecycle: the whole platform as one flow, the way a schedule runs it every week.

ingest (the next batch of listening, validated) -> bot flags -> features -> candidates ->
ranker (evaluation, audits, registration gate) -> release (shadow, canary, blue/green under
guardrails) -> experiment (the new model against the champion) -> run report.

A stage that refuses (a quarantined batch, rejected feature tables, a refused ranker with no
new candidate model to release instead, a rolled back release) ends the run cleanly: the
reason goes into the run report and the champion is untouched. Every stage leaves a Prefect
artifact; the run report links them all.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.runtime import flow_run

from crossfade.config import Settings, load_settings
from crossfade.data import lake
from crossfade.data.simulator import split_days
from crossfade.log import get_logger
from crossfade.run_report import StageReport, rollout_timeline, write_run_report
from flows.bots import flag_bots_flow
from flows.experiment import experiment_flow
from flows.features import FeaturesRejected, features_flow
from flows.ingest import BatchRejected, ingest_flow, simulation_fingerprint
from flows.release import release_flow
from flows.train import train_candidates_flow
from flows.train_ranker import train_ranker_flow
from model_registry.ranker import MODEL_NAME as RANKER_MODEL
from model_registry.registry import CHAMPION, client, version_by_alias

log = get_logger("flows.lifecycle")


class StopRun(Exception):
    """A stage refused to go on; the run ends cleanly with this stage's report."""

    def __init__(self, stage: StageReport) -> None:
        super().__init__(stage.summary)
        self.stage = stage


@dataclass(frozen=True)
class ReleasePlan:
    """What the release stage puts in front of listeners: a ranker version with its alias
    (`champion` for the first version, else `challenger`) and the candidate model to serve
    it with (None: the one named in the ranker's lineage)."""

    candidates: str | None
    ranker: str
    alias: str
    why: str


@dataclass
class LifecycleRun:
    """State shared by the stages of one run: settings, outcomes and the report so far."""

    settings: Settings
    profile: str | None
    stages: list[StageReport] = field(default_factory=list)
    outcomes: dict[str, Any] = field(default_factory=dict)
    release_plan: ReleasePlan | None = None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))


def next_window(settings: Settings) -> tuple[int, int] | None:
    """The next part of the simulated window not yet in the lake, as (first day, stop), or
    None when the whole window has arrived (the run then retrains on what is there)."""
    published = lake.published_fingerprints(settings.lake_dir)
    sim = settings.simulator
    for span in split_days(sim.days, min(settings.lifecycle.holdback_days, sim.days - 1)):
        if simulation_fingerprint(settings, settings.seed, {}, span) not in published:
            return span.start, span.stop
    return None


def ingest_stage(run: LifecycleRun) -> StageReport:
    """Ingest the next batch of listening; a rejected batch stops the run."""
    window = next_window(run.settings)
    if window is None:
        return StageReport(
            "ingest",
            "skipped",
            "no new listening: the whole simulated window is already in the lake; retraining "
            "on what is there",
        )
    try:
        outcome = ingest_flow(profile=run.profile, window_days=window)
    except BatchRejected as exc:
        raise StopRun(
            StageReport(
                "ingest",
                "quarantined",
                f"batch {exc.outcome.batch_id} rejected and kept whole in quarantine; nothing "
                "downstream ran",
                {"failures": exc.outcome.failures[:5]},
                {"quarantine": exc.outcome.location, **_docs(exc.outcome.data_docs)},
            )
        ) from None
    run.outcomes["ingest"] = outcome
    start, stop = window
    return StageReport(
        "ingest",
        outcome["status"],
        f"days {start}..{stop - 1} of the simulated window: {outcome['rows_accepted']:,} rows "
        "validated and published",
        {"batch": outcome["batch_id"], "rows received": outcome["rows_received"]},
        {"validation report": outcome.get("report_path") or "", **_docs(outcome.get("data_docs"))},
    )


def _docs(data_docs: str | None) -> dict[str, str]:
    return {"Data Docs": data_docs} if data_docs else {}


def bots_stage(run: LifecycleRun) -> StageReport:
    """Flag stream-farm accounts before anything learns from the lake."""
    outcome = flag_bots_flow(profile=run.profile)
    run.outcomes["bots"] = outcome
    return StageReport(
        "bot flags",
        "ok",
        f"{outcome['flagged']:,} of {outcome['accounts']:,} accounts flagged "
        f"({outcome['share']:.1%}); excluded from training, popularity and creator counts",
        links={"flags": outcome["path"]},
    )


def data_clock(settings: Settings) -> datetime:
    """The time the lifecycle runs "as of": the end of the newest data in the lake (a replay
    of earlier weeks runs as of those weeks), never later than the wall clock."""
    ends = [m["window_end"] for m in lake.manifests(settings.lake_dir) if m.get("window_end")]
    now = datetime.now(UTC)
    if not ends:
        return now
    end = datetime.combine(date.fromisoformat(max(ends)), time.min, UTC) + timedelta(days=1)
    return min(end, now)


def features_stage(run: LifecycleRun) -> StageReport:
    """Compute, validate and materialize features as of the data clock; rejected tables stop
    the run."""
    try:
        outcome = features_flow(profile=run.profile, now=data_clock(run.settings))
    except FeaturesRejected as exc:
        raise StopRun(
            StageReport(
                "features",
                "failed",
                "feature tables rejected; the online store keeps its last good values",
                {"failures": exc.outcome.failures[:5]},
                {"quarantine": exc.outcome.quarantine or ""},
            )
        ) from None
    run.outcomes["features"] = outcome
    return StageReport(
        "features",
        "ok",
        f"materialized until {outcome.get('materialized_until')}",
        {
            "rows per view": outcome.get("rows", {}),
            "materialization": outcome.get("materialization_id"),
        },
        {"validation report": outcome.get("report_path") or ""},
    )


def candidates_stage(run: LifecycleRun) -> StageReport:
    """Train, evaluate, register and gate the candidate model."""
    outcome = train_candidates_flow(profile=run.profile)
    run.outcomes["candidates"] = outcome
    m = outcome["metrics"]
    return StageReport(
        "candidates",
        "passed" if outcome["gate_passed"] else "refused",
        f"crossfade-candidates v{outcome['version']}: " + "; ".join(outcome["reasons"]),
        {
            f"recall@{n}": f"{m.get(f'recall_at_{n}', float('nan')):.3f} (popular in market "
            f"{m.get(f'baseline_popular_recall_at_{n}', float('nan')):.3f})"
            for n in (100, 200, 500)
        },
    )


def candidates_alone(run: LifecycleRun) -> ReleasePlan | None:
    """When the retrained ranker is refused but this run learnt from new listening and its
    candidate model passed its gate, the new candidate model goes out with the champion
    ranker: a retrieval model that has seen the newest listeners, items and tastes, under the
    same rollout guardrails (and, if promoted, the same experiment) as any release. The
    candidate gate only shows it beats popularity, not the champion candidate model: live
    traffic is the comparison. None when nothing new was ingested (a retrain on the same data
    has nothing to offer), the candidate gate refused, there is no champion ranker yet, or
    `lifecycle.release_candidates_alone` is off."""
    candidates = run.outcomes.get("candidates") or {}
    if not (
        run.settings.lifecycle.release_candidates_alone
        and candidates.get("gate_passed")
        and run.outcomes.get("ingest")
    ):
        return None
    champion = version_by_alias(client(run.settings.tracking_uri), RANKER_MODEL, CHAMPION)
    if champion is None:
        return None
    return ReleasePlan(
        str(candidates["version"]),
        str(champion.version),
        "challenger",
        f"crossfade-candidates v{candidates['version']} (trained on new listening, passed its "
        f"gate) with the champion ranker v{champion.version}",
    )


def ranker_stage(run: LifecycleRun) -> StageReport:
    """Train, evaluate, gate and register the ranker and plan the release: the new ranker if
    it passed, else the new candidate model alone (`candidates_alone`), else stop the run."""
    outcome = train_ranker_flow(profile=run.profile)
    run.outcomes["ranker"] = outcome
    links = {"evaluation report": outcome["report"]} if outcome.get("report") else {}
    facts = {k: v for k, v in outcome["metrics"].items() if k.startswith("ndcg@10")}
    stage = StageReport(
        "ranker",
        "passed" if outcome["passed"] else "refused",
        f"crossfade-ranker v{outcome['version']} "
        + (f"earned alias {outcome['alias']}" if outcome["passed"] else "was refused")
        + ": "
        + "; ".join(outcome["reasons"][:4]),
        facts,
        links,
    )
    if outcome["passed"]:
        run.release_plan = ReleasePlan(
            None, str(outcome["version"]), str(outcome["alias"]), "the new ranker passed its gate"
        )
        return stage
    plan = candidates_alone(run)
    if plan is None:
        raise StopRun(stage)
    run.release_plan = plan
    stage.summary += f". Released instead: {plan.why}"
    return stage


def release_stage(run: LifecycleRun) -> StageReport:
    """First version: make it live. Later versions: shadow, canary, blue/green under
    guardrails; a rollback or a pause ends the run with the champion untouched."""
    plan = run.release_plan
    if plan is None:
        raise RuntimeError("the release stage runs only after a ranker stage that planned it")
    outcome = release_flow(
        ranker_version=plan.ranker,
        alias=plan.alias,
        profile=run.profile,
        candidates_version=plan.candidates,
        reason=f"lifecycle: {plan.why}",
    )
    run.outcomes["release"] = outcome
    traffic = outcome.get("traffic") or {}
    facts: dict[str, Any] = {"gateway": outcome.get("gateway"), "candidate": outcome["candidate"]}
    if outcome.get("rollout_id"):
        facts.update(
            {
                "rollout": outcome["rollout_id"],
                "champion before": outcome["baseline"],
                "listener requests": f"{traffic.get('requests', 0):,} sent, "
                f"{traffic.get('failed', 0):,} failed",
                "listener p99 latency (ms)": traffic.get("p99_ms"),
                "duration (s)": round(float(outcome.get("seconds", 0.0)), 1),
            }
        )
    figure = rollout_timeline(outcome.get("transitions", []), outcome.get("windows", []))
    rows = [
        {"phase": w["phase"], "verdict": w["verdict"], **(w.get("values") or {})}
        for w in outcome.get("windows", [])
    ]
    stage = StageReport(
        "release",
        outcome["status"],
        outcome["summary"],
        facts,
        figures=[figure] if figure else [],
        rows=rows,
    )
    if outcome["status"] not in ("live", "promoted"):
        raise StopRun(stage)
    return stage


def experiment_stage(run: LifecycleRun) -> StageReport:
    """The new version against the champion it replaced, on simulated listeners."""
    release = run.outcomes.get("release", {})
    if release.get("status") != "promoted":
        return StageReport(
            "experiment", "not run", "first version: there is no earlier champion to test against"
        )
    baseline, candidate = release["baseline"], release["candidate"]
    outcome = experiment_flow(
        profile=run.profile,
        control_ref=baseline["ranker"],
        treatment_ref=candidate["ranker"],
        experiment=run.settings.lifecycle.experiment,
        control_candidates=baseline["candidates"],
        treatment_candidates=candidate["candidates"],
    )
    run.outcomes["experiment"] = outcome
    return StageReport(
        "experiment",
        str(outcome["decision"]).lower(),
        f"{_pair(candidate)} against {_pair(baseline)}: {outcome['decision']}",
        {"reasons": outcome["reasons"][:8]},
        {"experiment report": outcome["report"]},
    )


def _pair(models: dict[str, str]) -> str:
    return f"ranker v{models['ranker']} with candidates v{models['candidates']}"


STAGES: tuple[Callable[[LifecycleRun], StageReport], ...] = (
    ingest_stage,
    bots_stage,
    features_stage,
    candidates_stage,
    ranker_stage,
    release_stage,
    experiment_stage,
)


def _report(run: LifecycleRun, status: str) -> Path:
    run_id = str(flow_run.id or run.started.strftime("%Y%m%dT%H%M%S"))
    folder = run.settings.reports_dir / "runs" / run_id
    meta = {
        "status": status,
        "profile": run.settings.profile,
        "started": run.started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "flow run": flow_run.name or "",
    }
    path = write_run_report(
        folder, f"crossfade lifecycle run {flow_run.name or run_id}", run.stages, meta
    )
    create_link_artifact(path.as_uri(), link_text="run report", key="lifecycle-report")
    return path


@flow(name="lifecycle")
def lifecycle_flow(profile: str | None = None) -> dict[str, Any]:
    """Run the whole lifecycle once; returns the outcome of each stage and the report path."""
    run = LifecycleRun(load_settings(profile), profile)
    status = "completed"
    try:
        for stage in STAGES:
            report = stage(run)
            run.stages.append(report)
            create_markdown_artifact(
                f"# {report.name}: {report.status}\n\n{report.summary}\n",
                key="lifecycle-" + "-".join(report.name.lower().split()),
            )
    except StopRun as stop:
        run.stages.append(stop.stage)
        status = f"stopped at {stop.stage.name}: {stop.stage.status}"
        log.warning(
            "lifecycle stopped", extra={"stage": stop.stage.name, "reason": stop.stage.summary}
        )
    except Exception as exc:
        run.stages.append(
            StageReport("error", "failed", f"{type(exc).__name__}: {exc}",
                        {"traceback": traceback.format_exc(limit=4)})
        )  # fmt: skip
        _report(run, "failed")
        raise
    path = _report(run, status)
    return {"status": status, "report": str(path), "stages": run.outcomes}
