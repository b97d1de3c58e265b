"""Ingest flow: stage a batch (simulate, import or given), validate it, then publish or quarantine.

The flow is thin: staging, validation and lake I/O live in `crossfade` and `validation`.
It adds retries where a step is safe to repeat, Prefect artifacts that summarise the outcome,
and two rules: what is already in the lake is never published again (identical content is a
no-op whatever the file is called; fact rows already published, or repeated inside the batch,
are counted as duplicates and left out), and a batch is published whole or quarantined whole,
so rows accepted + rows quarantined + duplicates always equal rows received.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from crossfade.config import Settings, load_settings
from crossfade.data import lake
from crossfade.data.contracts import CONTRACTS
from crossfade.log import get_logger
from validation import validate_batch
from validation.result import ValidationResult

log = get_logger("flows.ingest")
BATCH_PUBLISHED = "crossfade.lake.batch.published"  # event name; prefect.yaml triggers on it


@dataclass
class IngestOutcome:
    """What an ingest run did, for the CLI, artifacts and the run report."""

    batch_id: str
    status: str  # "published" | "quarantined" | "skipped"
    rows_received: int
    rows_accepted: int
    rows_quarantined: int
    location: str  # lake manifest, quarantine folder, or the earlier batch when skipped
    rows_duplicate: int = 0  # already in the lake, or repeated inside the batch: left out
    # table -> received, accepted, quarantined, duplicates (in_batch, in_lake)
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    report_path: str | None = None
    data_docs: str | None = None
    failures: list[str] = field(default_factory=list)
    flow_run_id: str | None = None
    flow_run_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @property
    def balanced(self) -> bool:
        """The invariant: received = accepted + quarantined + duplicates."""
        return self.rows_received == (
            self.rows_accepted + self.rows_quarantined + self.rows_duplicate
        )


class BatchRejected(RuntimeError):
    """The batch failed validation and was quarantined; carries the outcome."""

    def __init__(self, outcome: IngestOutcome) -> None:
        super().__init__(
            f"batch {outcome.batch_id} rejected and quarantined at {outcome.location}: "
            + "; ".join(outcome.failures[:5])
        )
        self.outcome = outcome


def simulation_fingerprint(
    settings: Settings, seed: int, overrides: dict[str, int], window_days: range | None = None
) -> str:
    """Identify a simulated batch by what produced it, so re-running ingest is a no-op."""
    sim = settings.simulator.model_copy(update=overrides).model_dump(mode="json")
    content: dict[str, Any] = {"source": "simulator", "seed": seed, "simulator": sim}
    if window_days is not None and window_days != range(int(sim["days"])):
        content["days"] = [window_days.start, window_days.stop]
    payload = json.dumps(content, sort_keys=True)
    return "sim-" + hashlib.sha256(payload.encode()).hexdigest()[:24]


def file_fingerprint(fmt: str, path: Path) -> str:
    """Identify an imported dataset by its format and content, never by its name.

    A single file is identified by its bytes alone, so the same export under another name is
    recognised; in a folder the layout matters (which file is the ratings file), so each
    file's path inside the folder is hashed with its bytes, but not the folder's own name.
    """
    digest = hashlib.sha256(fmt.encode())
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        named = [(p.relative_to(path).as_posix(), p) for p in files]
    else:
        named = [("", path)]
    for rel, item in named:
        digest.update(rel.encode() + b"\x00")
        with item.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"{fmt}-" + digest.hexdigest()[:24]


def _warn_old_lake(settings: Settings) -> list[str]:
    """One warning line when the lake holds imports whose event ids new imports cannot match."""
    from crossfade.data.importers import FORMATS

    keyed = settings.privacy.pseudonymize_at_ingest
    expected = lake.KEYED_CONTENT_IDS if keyed else lake.CONTENT_IDS
    old = lake.old_style_imports(settings.lake_dir, FORMATS, expected)
    if old:
        log.warning(
            f"the lake holds {len(old)} imported batch(es) with old-style event ids "
            f"({', '.join(old[:3])}{', ...' if len(old) > 3 else ''}): re-sent rows of those "
            f"exports will be published again; rebuild the lake: move {settings.lake_dir} "
            "aside and ingest the exports again (docs/ingestion.md, old lakes)"
        )
    return old


def _key_event_ids(settings: Settings, batch_dir: Path) -> None:
    """Key an imported batch's event ids under the pseudonym key (they hash raw listener ids)."""
    from crossfade.data.importers.staging import key_event_ids
    from crossfade.safety.privacy import key_id, pseudonym_key

    key = pseudonym_key(settings)
    key_event_ids(batch_dir, key, key_id(key))


def _tag_batch(batch_dir: Path, fingerprint: str) -> None:
    info = lake.read_batch_info(batch_dir)
    info.details["fingerprint"] = fingerprint
    lake.update_batch_info(batch_dir, info)


def _announce(batch_id: str, manifest: dict[str, Any]) -> None:
    """Emit the Prefect event that triggers work waiting for new data (see prefect.yaml)."""
    emit_event(
        event=BATCH_PUBLISHED,
        resource={"prefect.resource.id": f"crossfade.lake.batch.{batch_id}"},
        payload={"row_counts": manifest.get("row_counts", {})},
    )


@task(name="stage-simulation", cache_policy=NO_CACHE)
def stage_simulation(
    settings: Settings, seed: int, overrides: dict[str, int], window_days: range | None = None
) -> Path:
    """Simulate the listening world (or the window days given) into a staged batch."""
    from crossfade.data.simulator import simulate

    sim = settings.simulator.model_copy(update=overrides)
    return simulate(sim, seed, settings.staging_dir, settings.truth_dir, days=window_days)


@task(name="stage-import", cache_policy=NO_CACHE)
def stage_import(settings: Settings, fmt: str, path: Path) -> Path:
    """Map a real dataset onto the contracts as a staged batch."""
    from crossfade.data.importers import import_path

    return import_path(fmt, path, settings.staging_dir)


@task(name="validate", cache_policy=NO_CACHE)
def validate(settings: Settings, batch_dir: Path) -> ValidationResult:
    """Run the GX gate over the staged batch."""
    return validate_batch(batch_dir, settings)


@task(name="drop-duplicates", cache_policy=NO_CACHE)
def drop_duplicates(settings: Settings, batch_dir: Path) -> dict[str, dict[str, int]]:
    """Leave out fact rows already in the lake (or repeated in the batch); count them."""
    return lake.drop_published(batch_dir, settings.lake_dir)


@task(name="publish", cache_policy=NO_CACHE)
def publish(settings: Settings, batch_dir: Path) -> dict[str, Any]:
    """Publish the batch to the lake, all or nothing (safe to retry)."""
    return lake.publish_batch(batch_dir, settings.lake_dir)


@task(name="quarantine", cache_policy=NO_CACHE)
def quarantine(settings: Settings, batch_dir: Path, result: ValidationResult) -> Path:
    """Move the whole batch to quarantine with its validation report."""
    return lake.quarantine_batch(batch_dir, settings.quarantine_dir, result.to_dict())


def _with_retries(settings: Settings, fn: Any) -> Any:
    return fn.with_options(
        retries=settings.ingest.retries, retry_delay_seconds=settings.ingest.retry_delay_seconds
    )


def _publish_artifacts(outcome: IngestOutcome) -> None:
    verdict = {"published": "✅ published", "quarantined": "⛔ quarantined", "skipped": "⏭ skipped"}
    lines = [
        f"# Ingest {outcome.batch_id}: {verdict[outcome.status]}",
        "",
        f"- rows received: {outcome.rows_received:,}",
        f"- rows accepted: {outcome.rows_accepted:,}",
        f"- rows quarantined: {outcome.rows_quarantined:,}",
        f"- duplicates left out: {outcome.rows_duplicate:,}",
        f"- balanced (received = accepted + quarantined + duplicates): {outcome.balanced}",
        f"- location: `{outcome.location}`",
    ]
    if outcome.report_path:
        lines.append(f"- validation report: `{outcome.report_path}`")
    if outcome.data_docs:
        lines.append(f"- Data Docs: [{outcome.data_docs}](file://{outcome.data_docs})")
    if outcome.failures:
        lines += ["", "## Failed checks", "", *[f"- {line}" for line in outcome.failures]]
    create_markdown_artifact("\n".join(lines), key="ingest-summary", description="ingest outcome")
    if outcome.tables:
        create_table_artifact(
            [{"table": k, **v} for k, v in outcome.tables.items()],
            key="ingest-row-counts",
            description="rows per table in the batch",
        )


def _import_or_quarantine(
    settings: Settings, fmt: str, path: Path, run_id: str, run_name: str
) -> Path:
    """Import a dataset; if it cannot even be read, keep the raw files in quarantine."""
    from crossfade.data.importers import ImportFormatError, count_rows

    try:
        return stage_import(settings, fmt, path)  # not retried: a bad file stays bad
    except ImportFormatError as exc:
        batch_id = lake.new_batch_id(f"{fmt}-rejected")
        rows, how = count_rows(path)  # honest even when parsing failed
        report = {
            "batch_id": batch_id, "success": False, "error": str(exc), "input": str(path),
            "rows_received": rows, "rows_counted_as": how,
        }  # fmt: skip
        where = lake.quarantine_files([path], settings.quarantine_dir, batch_id, report)
        outcome = IngestOutcome(
            batch_id=batch_id, status="quarantined", rows_received=rows, rows_accepted=0,
            rows_quarantined=rows, location=str(where),
            failures=[f"unreadable input: {exc}", f"rows received counted as {how}"],
            tables={"events": {"received": rows, "accepted": 0, "quarantined": rows,
                               "duplicates": 0, "in_batch": 0, "in_lake": 0}},
            flow_run_id=run_id, flow_run_name=run_name,
        )  # fmt: skip
        _publish_artifacts(outcome)
        raise BatchRejected(outcome) from None


@flow(name="ingest")
def ingest_flow(
    batch: str | None = None,
    fmt: str | None = None,
    path: str | None = None,
    users: int | None = None,
    days: int | None = None,
    seed: int | None = None,
    profile: str | None = None,
    window_days: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Stage, validate, then publish or quarantine one batch; raises BatchRejected on rejection.

    With no arguments the batch is a freshly simulated world from the profile's settings;
    `window_days` (first, stop) limits it to those days of the window (the lifecycle ingests a
    world in consecutive batches, as new listening arrives).
    `batch` ingests an already staged batch; `fmt` + `path` import a real dataset.
    """
    settings = load_settings(profile)
    run_id, run_name = str(flow_run.id or ""), str(flow_run.name or "")
    span: range | None = None
    if batch:
        batch_dir = Path(batch)
        fingerprint = lake.read_batch_info(batch_dir).details.get("fingerprint")
    elif fmt:
        if path is None:
            raise ValueError("importing needs a path as well as a format")
        fingerprint = file_fingerprint(fmt, Path(path))
        batch_dir = None
    else:
        overrides = {k: v for k, v in {"users": users, "days": days}.items() if v is not None}
        seed = settings.seed if seed is None else seed
        span = range(*window_days) if window_days is not None else None
        fingerprint = simulation_fingerprint(settings, seed, overrides, span)
        batch_dir = None

    earlier = lake.published_fingerprints(settings.lake_dir).get(fingerprint or "")
    if earlier:
        outcome = _already_published(settings, earlier, fmt, path)
        outcome.flow_run_id, outcome.flow_run_name = run_id, run_name
        _publish_artifacts(outcome)
        return outcome.to_dict()

    if fmt:
        _warn_old_lake(settings)
    if batch_dir is None and fmt:
        batch_dir = _import_or_quarantine(settings, fmt, Path(path or ""), run_id, run_name)
    elif batch_dir is None:
        batch_dir = _with_retries(settings, stage_simulation)(settings, seed or 0, overrides, span)
    assert batch_dir is not None
    if fingerprint:
        _tag_batch(batch_dir, fingerprint)
    if settings.privacy.pseudonymize_at_ingest:  # before validation: nothing raw is published
        from crossfade.safety.privacy import pseudonymize_staged

        pseudonymize_staged(settings, batch_dir)
        _key_event_ids(settings, batch_dir)

    dups = drop_duplicates(settings, batch_dir)
    counts, _ = lake.staged_row_counts(batch_dir)
    tables = _table_rows(counts, dups)
    received = sum(t["received"] for t in tables.values())
    duplicates = sum(t["duplicates"] for t in tables.values())
    if duplicates and not _has_new_facts(counts):
        return _nothing_new(settings, batch_dir, tables, run_id, run_name)
    result = validate(settings, batch_dir)
    if result.success:
        manifest = _with_retries(settings, publish)(settings, batch_dir)
        _announce(result.batch_id, manifest)
        for name, row in tables.items():
            row["accepted"] = int(manifest["row_counts"].get(name, 0))
        outcome = IngestOutcome(
            batch_id=result.batch_id, status="published", rows_received=received,
            rows_accepted=sum(manifest["row_counts"].values()), rows_quarantined=0,
            rows_duplicate=duplicates, tables=tables,
            location=str(settings.lake_dir / lake.MANIFESTS / f"{result.batch_id}.json"),
            report_path=result.report_path, data_docs=result.data_docs,
            flow_run_id=run_id, flow_run_name=run_name,
        )  # fmt: skip
    else:
        where = quarantine(settings, batch_dir, result)
        for name, row in tables.items():
            row["quarantined"] = counts.get(name, 0)
        outcome = IngestOutcome(
            batch_id=result.batch_id, status="quarantined", rows_received=received,
            rows_accepted=0, rows_quarantined=sum(counts.values()), rows_duplicate=duplicates,
            tables=tables, location=str(where),
            report_path=result.report_path, data_docs=result.data_docs,
            failures=result.summary_lines(), flow_run_id=run_id, flow_run_name=run_name,
        )  # fmt: skip
    _check_balance(outcome)
    log.info("ingest finished", extra={"batch_id": outcome.batch_id, "status": outcome.status})
    _publish_artifacts(outcome)
    if outcome.status == "quarantined":
        raise BatchRejected(outcome)
    return outcome.to_dict()


def _table_rows(
    counts: dict[str, int], dups: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """Per table: rows received (staged + duplicates left out) and the duplicates."""
    out: dict[str, dict[str, int]] = {}
    for name in sorted(set(counts) | set(dups)):
        left = dups.get(name, {})
        in_batch, in_lake = int(left.get("in_batch", 0)), int(left.get("in_lake", 0))
        out[name] = {
            "received": counts.get(name, 0) + in_batch + in_lake,
            "accepted": 0,
            "quarantined": 0,
            "duplicates": in_batch + in_lake,
            "in_batch": in_batch,
            "in_lake": in_lake,
        }
    return out


def _has_new_facts(counts: dict[str, int]) -> bool:
    return any(
        rows for name, rows in counts.items() if name in CONTRACTS and not CONTRACTS[name].dimension
    )


def _check_balance(outcome: IngestOutcome) -> None:
    """Fail loudly (a crossfade bug, not bad input) if rows went missing or were doubled."""
    if not outcome.balanced:
        raise RuntimeError(
            f"batch {outcome.batch_id}: rows received {outcome.rows_received:,} != accepted "
            f"{outcome.rows_accepted:,} + quarantined {outcome.rows_quarantined:,} + duplicates "
            f"{outcome.rows_duplicate:,}"
        )


def _already_published(
    settings: Settings, earlier: str, fmt: str | None, path: str | None
) -> IngestOutcome:
    """The outcome of content identical to a published batch: a no-op, said plainly."""
    manifest_path = settings.lake_dir / lake.MANIFESTS / f"{earlier}.json"
    manifest = json.loads(manifest_path.read_text())
    rows = {t: int(n) for t, n in manifest.get("row_counts", {}).items()}
    total = sum(rows.values())
    what = f"{path} ({fmt})" if fmt else "this batch"
    tables = {
        t: {"received": n, "accepted": 0, "quarantined": 0, "duplicates": n, "in_batch": 0,
            "in_lake": n}
        for t, n in rows.items()
    }  # fmt: skip
    return IngestOutcome(
        batch_id=earlier, status="skipped", rows_received=total, rows_accepted=0,
        rows_quarantined=0, rows_duplicate=total, tables=tables, location=str(manifest_path),
        failures=[
            f"identical content already published as batch {earlier}: {what} has the same "
            "bytes (whatever its file name), so nothing was imported or written"
        ],
    )  # fmt: skip


def _nothing_new(
    settings: Settings, batch_dir: Path, tables: dict[str, dict[str, int]], run_id: str,
    run_name: str,
) -> dict[str, Any]:  # fmt: skip
    """Every fact row is already in the lake: drop the staged batch and say so."""
    info = lake.read_batch_info(batch_dir)
    facts = sum(
        row["duplicates"]
        for name, row in tables.items()
        if name in CONTRACTS and not CONTRACTS[name].dimension
    )
    for row in tables.values():  # the listeners and items come with the events already in
        row["duplicates"] = row["received"]
        row["in_lake"] = row["received"] - row["in_batch"]
    received = sum(row["received"] for row in tables.values())
    shutil.rmtree(batch_dir, ignore_errors=True)
    outcome = IngestOutcome(
        batch_id=info.batch_id, status="skipped", rows_received=received, rows_accepted=0,
        rows_quarantined=0, rows_duplicate=received, tables=tables,
        location=str(settings.lake_dir / lake.MANIFESTS),
        failures=[
            f"nothing new: all {facts:,} events (and the listeners and items they describe) "
            "are already in the lake or repeat each other; nothing was written"
        ],
        flow_run_id=run_id, flow_run_name=run_name,
    )  # fmt: skip
    _check_balance(outcome)
    _publish_artifacts(outcome)
    return outcome.to_dict()
