"""The checkpoint runner: validate a staged batch against its contracts, file by file.

Order of work, so that a broken input is reported as a sentence and never a traceback:

1. batch level: the folder exists, batch.json is readable, no unknown table folders, no
   stray non-Parquet files, an events table is present;
2. per Parquet part: the file opens as Parquet (`files`) and its Arrow schema matches the
   contract (`schema`); then the rows suite runs in GX on the part, with cross-table
   columns appended (`cross_table`). Consecutive clean parts share one GX run up to
   `MAX_ROWS_PER_RUN` rows, so memory is bounded by that budget (or by the largest part)
   plus the key column of the table;
3. per table: the table suite runs on the key column of all parts together (duplicate ids
   across parts) and on its row count (volume band, `volume`);
4. results are merged per rule into `Failure`s, Data Docs are built, and the JSON and
   Markdown reports are written under `reports/validation/`.

Validation only reads the lake (published keys, the previous batch's counts): it never
writes to it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.contracts import CONTRACTS, TABLE_ORDER, Contract
from validation import cross_table, schema
from validation.docs import build_data_docs
from validation.files import UnreadableFile, open_parquet, read_parquet
from validation.findings import Finding, Findings, from_gx_result
from validation.gx_runtime import GxRuntime
from validation.report import write_reports
from validation.result import ValidationResult
from validation.suites import (
    FILE,
    SuiteParams,
    build_suite,
    build_table_suite,
    derived_columns,
)
from validation.volume import VolumeBand, volume_bands

log = logging.getLogger("crossfade.validation")
REQUIRED_TABLES = ("events",)
# Parts of a table are validated together up to this many rows: GX's cost is mostly per
# expectation and run, so many small parts in one run are much faster, while memory stays
# bounded by this budget (or by one part, if a single part is larger).
MAX_ROWS_PER_RUN = 500_000


def _to_pandas(data: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas the way GX's pandas engine is fastest.

    Strings become Arrow-backed (no per-value Python objects); float32 becomes float64,
    because GX's between-check is only vectorized for the default numpy dtypes and would
    otherwise compare value by value in Python.
    """
    floats = [i for i, f in enumerate(data.schema) if f.type == pa.float32()]
    for i in floats:
        data = data.set_column(i, data.field(i).name, data.column(i).cast(pa.float64()))
    return data.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass
class _Run:
    """State of one validation run."""

    batch_dir: Path
    batch_id: str
    settings: Settings
    findings: Findings
    runtime: GxRuntime | None = None
    checks: int = 0
    row_counts: dict[str, int] = field(default_factory=dict)
    troubled: set[str] = field(default_factory=set)  # tables with unreadable/drifted files

    def label(self, path: Path) -> str:
        """How a file is named in messages: its path inside the batch."""
        return path.relative_to(self.batch_dir).as_posix()

    @property
    def gx(self) -> GxRuntime:
        """The GX runtime (created once the batch-level checks are done)."""
        assert self.runtime is not None
        return self.runtime

    def fail(
        self,
        table: str,
        check: str,
        message: str,
        *,
        rule: str,
        column: str | None = None,
        files: list[str] | None = None,
        count: int = 0,
        sample: list[dict] | None = None,
    ) -> None:
        """Record a non-GX failure (file, schema or batch-level check)."""
        self.findings.add(
            Finding(
                rule=rule,
                table=table,
                check=check,
                column=column,
                kind="custom",
                count=count,
                samples=sample or [],
                files=files or [],
                details={"message": message},
            )
        )


# --- batch level --------------------------------------------------------------------------


def _batch_info(run: _Run) -> lake.BatchInfo | None:
    run.checks += 1
    try:
        info = lake.read_batch_info(run.batch_dir)
        if info.window_end < info.window_start:
            run.fail(
                "batch",
                "batch_info",
                f"{lake.BATCH_FILE} has a window that ends ({info.window_end}) before it "
                f"starts ({info.window_start}); timestamps cannot be checked against it",
                rule="batch.*.batch_window",
            )
        return info
    except lake.LakeError:
        run.fail(
            "batch",
            "batch_info",
            f"{lake.BATCH_FILE} is missing: the batch has no id, source "
            "or time window, so window and volume checks cannot run; re-stage the batch",
            rule="batch.*.batch_info",
        )
    except (ValueError, TypeError, KeyError, OSError) as exc:
        run.fail(
            "batch",
            "batch_info",
            f"{lake.BATCH_FILE} cannot be read ({type(exc).__name__}: {exc}); re-stage the batch",
            rule="batch.*.batch_info",
        )
    return None


def _inventory(run: _Run) -> dict[str, list[Path]]:
    """Parquet files per known table; unknown folders and stray files become failures."""
    run.checks += 1
    for name in lake.unknown_tables(run.batch_dir):
        run.fail(
            name,
            "known_table",
            f"folder {name}/ matches no data contract (known tables: {', '.join(CONTRACTS)}); "
            "a batch may only carry contracted tables",
            rule=f"{name}.*.known_table",
            files=[f"{name}/"],
        )
    files: dict[str, list[Path]] = {}
    for name in CONTRACTS:
        folder = run.batch_dir / name
        if not folder.is_dir():
            continue
        files[name] = lake.table_files(run.batch_dir, name)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".parquet":
                run.fail(
                    name,
                    "parquet_readable",
                    f"{run.label(path)} is not a .parquet file; tables hold Parquet parts only",
                    rule=f"{name}.*.stray:{run.label(path)}",
                    files=[run.label(path)],
                )
    for name in REQUIRED_TABLES:
        run.checks += 1
        if not files.get(name):
            run.fail(
                name,
                "table_present",
                f"the batch has no {name} table (no Parquet files under {name}/); "
                f"every batch must carry {name}",
                rule=f"{name}.*.table_present",
            )
    return files


def _index_references(run: _Run, files: dict[str, list[Path]]) -> cross_table.ReferenceIndex:
    """Read the key (and lookup) columns of the batch's referenced tables."""
    refs = cross_table.ReferenceIndex(run.settings.lake_dir)
    for table, wanted in cross_table.referenced_tables().items():
        for path in files.get(table, []):
            try:
                handle = open_parquet(path, run.label(path))
                columns = [c for c in handle.schema_arrow.names if c in wanted]
                refs.add_batch_part(table, handle.read(columns=columns))
            except (UnreadableFile, OSError, pa.ArrowException, ValueError):
                refs.incomplete.add(table)  # reported when the table itself is validated
    return refs


# --- per part and per table ---------------------------------------------------------------


def _check_schema(
    run: _Run, spec: Contract, handle: pq.ParquetFile, label: str
) -> list[schema.Drift]:
    found = handle.schema_arrow
    rows = handle.metadata.num_rows
    drifts = schema.compare_schema(spec, found)
    run.checks += 1
    for d in drifts:
        col = d.column or "*"
        text = {
            "missing": f"{spec.name}.{col}: column is missing",
            "renamed": f"{spec.name}.{col}: column is missing and {d.found!r} appears in its "
            "place (renamed?)",
            "extra": f"{spec.name}.{col}: column is not in the contract (type {d.found})",
            "retyped": f"{spec.name}.{col}: expected {d.expected}, found {d.found}",
            "order": f"{spec.name}: columns are out of contract order: expected [{d.expected}], "
            f"found [{d.found}]",
        }[d.kind]
        sample = {FILE: label, "expected": d.expected, "found": d.found}
        run.fail(
            spec.name,
            d.check,
            text,
            rule=f"{spec.name}.{col}.{d.kind}",
            column=d.column,
            files=[label],
            count=rows,
            sample=[sample],
        )
    if drifts:
        run.troubled.add(spec.name)
    return drifts


@dataclass
class _Part:
    """One readable Parquet part and how its schema drifts from the contract."""

    label: str
    data: pa.Table
    drifts: list[schema.Drift]


def _read_part(run: _Run, spec: Contract, path: Path) -> _Part | None:
    """Open, schema-check and read one part; None (after recording why) if unreadable."""
    label = run.label(path)
    run.checks += 1
    try:
        handle = open_parquet(path, label)
        drifts = _check_schema(run, spec, handle, label)
        data = read_parquet(handle, label)
    except UnreadableFile as exc:
        run.troubled.add(spec.name)
        run.fail(
            spec.name,
            "parquet_readable",
            str(exc),
            rule=f"{spec.name}.*.file:{label}",
            sample=[{FILE: label}],
        )
        return None
    run.row_counts[spec.name] = run.row_counts.get(spec.name, 0) + data.num_rows
    return _Part(label, data, drifts)


def _combine(parts: list[_Part]) -> pa.Table:
    """Concatenate parts with the column of the file each row came from."""
    tables = [p.data for p in parts]
    if len(tables) > 1:  # parquet keeps nullability flags and metadata: ignore them here
        loose = [t.cast(pa.schema([f.with_nullable(True) for f in t.schema])) for t in tables]
        tables = [pa.concat_tables([t.replace_schema_metadata(None) for t in loose])]
    codes = np.repeat(np.arange(len(parts), dtype=np.int32), [p.data.num_rows for p in parts])
    files = pa.DictionaryArray.from_arrays(codes, pa.array([p.label for p in parts]))
    return tables[0].append_column(FILE, files)


def _validate_rows(
    run: _Run, spec: Contract, parts: list[_Part], refs: cross_table.ReferenceIndex
) -> None:
    """Run the rows suite once on one or more parts (same schema) of a table."""
    drifts = [d for p in parts for d in p.drifts]
    broken = schema.broken_columns(drifts)
    # A file column named like a derived one is already reported as an extra column; drop it
    # so the joined columns are unambiguous.
    reserved = set(derived_columns(spec))
    for part in parts:
        clash = [c for c in part.data.column_names if c in reserved]
        part.data = part.data.drop_columns(clash) if clash else part.data
    data = _combine(parts)
    files = data.column(FILE)
    data = data.drop_columns([FILE])
    frame = _to_pandas(cross_table.annotate(spec, data, refs).append_column(FILE, files))
    del data, files
    label = parts[0].label + (f" (+{len(parts) - 1} more)" if len(parts) > 1 else "")
    try:
        results = run.gx.run(f"{spec.name}.rows", frame, label)
    except Exception as exc:  # a GX failure must reject the batch, not crash the gate
        run.fail(
            spec.name,
            "gx_run",
            f"GX could not validate {label}: {type(exc).__name__}: {exc}",
            rule=f"{spec.name}.*.gx_run:{label}",
        )
        return
    sample_columns = [c for c in spec.column_names if c in frame.columns]
    for result in results:
        run.checks += 1
        finding = from_gx_result(
            result,
            frame,
            sample_columns=sample_columns,
            sample_rows=run.settings.validation.sample_rows,
            skip_columns=broken,
            schema_drifted=bool(drifts),
        )
        if finding is not None:
            run.findings.add(finding)


def _validate_table(
    run: _Run,
    spec: Contract,
    files: list[Path],
    refs: cross_table.ReferenceIndex,
    band: VolumeBand | None,
) -> None:
    """Rows suite over the parts (batched up to MAX_ROWS_PER_RUN), then the table suite.

    A part whose schema drifts is validated on its own, so one bad file does not hide the
    data checks of the others. Only the key column of every part is kept until the end.
    """
    keys: list[tuple[str, pa.Array]] = []
    pending: list[_Part] = []
    for path in files:
        part = _read_part(run, spec, path)
        if part is None:
            continue
        if spec.key not in schema.broken_columns(part.drifts):
            keys.append((part.label, part.data[spec.key].combine_chunks()))
        if part.drifts:
            _validate_rows(run, spec, [part], refs)
            continue
        if pending and sum(p.data.num_rows for p in pending) + part.data.num_rows > (
            MAX_ROWS_PER_RUN
        ):
            _validate_rows(run, spec, pending, refs)
            pending = []
        pending.append(part)
    if pending:
        _validate_rows(run, spec, pending, refs)
    del pending
    _validate_table_suite(run, spec, keys, band)


def _key_frame(spec: Contract, keys: list[tuple[str, pa.Array]]) -> pd.DataFrame:
    """All parts' key values with the file each came from (the table suite's batch)."""
    if not keys:
        return pd.DataFrame({spec.key: pd.Series([], dtype=object), FILE: []})
    values = _to_pandas(pa.table({spec.key: pa.chunked_array([k for _, k in keys])}))[spec.key]
    codes = np.repeat(np.arange(len(keys), dtype=np.int32), [len(k) for _, k in keys])
    labels = pd.Categorical.from_codes(
        cast(Any, codes), categories=pd.Index([label for label, _ in keys])
    )
    return pd.DataFrame({spec.key: values, FILE: labels})


def _unique_finding(run: _Run, spec: Contract, frame: pd.DataFrame, count: int) -> Finding:
    dups = frame[frame[spec.key].duplicated(keep=False) & frame[spec.key].notna()]
    per_key_files = dups.groupby(spec.key, observed=True)[FILE].nunique()
    sample = dups.sort_values(spec.key, kind="stable").head(run.settings.validation.sample_rows)
    return Finding(
        rule=f"{spec.name}.{spec.key}.unique",
        table=spec.name,
        check="expect_column_values_to_be_unique",
        column=spec.key,
        kind="unique",
        count=count,
        samples=[{spec.key: r[spec.key], FILE: str(r[FILE])} for r in sample.to_dict("records")],
        files=sorted({str(f) for f in dups[FILE].unique()}),
        details={
            "distinct": int(dups[spec.key].nunique()),
            "across_files": bool((per_key_files > 1).any()),
        },
    )


def _validate_table_suite(
    run: _Run, spec: Contract, keys: list[tuple[str, pa.Array]], band: VolumeBand | None
) -> None:
    frame = _key_frame(spec, keys)
    try:
        results = run.gx.run(f"{spec.name}.table", frame, "table")
    except Exception as exc:  # see _validate_rows
        run.fail(
            spec.name,
            "gx_run",
            f"GX could not validate {spec.name}: {exc}",
            rule=f"{spec.name}.*.gx_run",
        )
        return
    for result in results:
        run.checks += 1
        if result.success:
            continue
        kind = (result.expectation_config.meta or {}).get("kind")
        if kind == "unique":
            count = int((result.result or {}).get("unexpected_count") or 0)
            run.findings.add(_unique_finding(run, spec, frame, count))
        elif kind == "volume" and band is not None:
            run.findings.add(
                Finding(
                    rule=f"{spec.name}.*.volume",
                    table=spec.name,
                    check=result.expectation_config.type,
                    column=None,
                    kind="volume",
                    count=len(frame),
                    details={"message": band.describe(len(frame))},
                )
            )


def _annotate_references(run: _Run, present: set[str]) -> None:
    """Say in reference failures when the referenced table itself is absent or broken."""
    for finding in run.findings.all():
        if finding.kind != "reference":
            continue
        table = finding.details.get("ref_table")
        if table not in present:
            finding.details["note"] = f" (the batch has no {table} table)"
        elif table in run.troubled:
            finding.details["note"] = (
                f" (note: {table} has files that could not be read or drift from the "
                "contract; fix those first)"
            )


def _plausible(settings: Settings, info: lake.BatchInfo | None, moment: datetime) -> dict[str, Any]:
    """The plausible-time floor: `earliest_event`, or `max_event_age_days` before the data
    clock (the end of the newest data in the lake or in this batch, never after now)."""
    rules = settings.validation
    ends = [d for d in (lake.data_end(settings.lake_dir), info and info.window_end) if d]
    clock = min(_midnight(max(ends)) + timedelta(days=1), moment) if ends else moment
    floor = max(_midnight(rules.earliest_event), clock - timedelta(days=rules.max_event_age_days))
    return {
        "earliest_ts": floor,
        "clock": clock,
        "max_age_days": rules.max_event_age_days,
        "earliest_event": rules.earliest_event,
    }


# --- entry point --------------------------------------------------------------------------


def validate_batch(
    batch_dir: Path, settings: Settings, *, now: datetime | None = None
) -> ValidationResult:
    """Validate a staged batch against its data contracts; never raises on bad data.

    Returns the verdict with one `Failure` per failed rule (table, check, column, message,
    count and sample rows), writes it to `reports/validation/<batch_id>.json` (plus a
    Markdown summary) and, if enabled, GX Data Docs under `reports/data_docs/<batch_id>/`.
    `now` fixes the clock of the future-timestamp check (default: the current UTC time).
    """
    started = time.perf_counter()
    batch_dir = Path(batch_dir)
    rules = settings.validation
    moment = _utc(now or datetime.now(UTC))
    run = _Run(batch_dir, batch_dir.name, settings, Findings(rules.sample_rows))
    if not batch_dir.is_dir():
        run.fail(
            "batch",
            "batch_present",
            f"{batch_dir} does not exist or is not a folder",
            rule="batch.*.batch_present",
        )
        return _finish(run, started, data_docs=None)
    info = _batch_info(run)
    if info is not None:
        run.batch_id = info.batch_id
    files = _inventory(run)
    bands = volume_bands(settings.lake_dir, info, rules)
    window = info is not None and info.window_start <= info.window_end
    params = SuiteParams(
        window_start=_midnight(info.window_start) if info and window else None,
        window_end=_midnight(info.window_end) + timedelta(days=1) if info and window else None,
        latest_ts=moment + timedelta(minutes=rules.max_future_skew_minutes),
        skew_minutes=rules.max_future_skew_minutes,
        volume={t: (b.min_rows, b.max_rows) for t, b in bands.items()},
        **_plausible(settings, info, moment),
    )
    run.runtime = runtime = GxRuntime(run.batch_id, rules.sample_rows)
    refs = _index_references(run, files)
    for name in TABLE_ORDER:
        spec = CONTRACTS[name]
        table_files = files.get(name, [])
        if not table_files and name not in bands:
            continue
        runtime.register(build_suite(spec, params))
        runtime.register(build_table_suite(spec, params))
        _validate_table(run, spec, table_files, refs, bands.get(name))
    _annotate_references(run, {n for n, f in files.items() if f})
    docs = None
    if rules.build_data_docs:
        docs = build_data_docs(runtime, settings.reports_dir, run.batch_id)
    return _finish(run, started, data_docs=docs)


def _finish(run: _Run, started: float, data_docs: str | None) -> ValidationResult:
    failures = run.findings.failures()
    result = ValidationResult(
        batch_id=run.batch_id,
        success=not failures,
        row_counts=dict(run.row_counts),
        failures=failures,
        checks_run=run.checks,
        data_docs=data_docs,
    )
    write_reports(result, run.settings.reports_dir)
    log.info(
        "batch validated",
        extra={
            "batch_id": run.batch_id,
            "success": result.success,
            "failures": len(failures),
            "checks": result.checks_run,
            "rows": sum(run.row_counts.values()),
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    return result
