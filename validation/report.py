"""Validation reports on disk: the full result as JSON, and a short Markdown summary beside it."""

from __future__ import annotations

import json
from pathlib import Path

from crossfade.data import lake
from validation.result import ValidationResult

SAMPLES_IN_SUMMARY = 3


def report_paths(reports_dir: Path, batch_id: str) -> tuple[Path, Path]:
    """The JSON and Markdown report paths of a batch."""
    folder = reports_dir / "validation"
    return folder / f"{batch_id}.json", folder / f"{batch_id}.md"


def markdown_summary(result: ValidationResult) -> str:
    """A page a person can read: verdict, row counts and each failure with a few rows."""
    verdict = "passed" if result.success else "FAILED"
    lines = [
        f"# Validation of batch {result.batch_id}: {verdict}",
        "",
        f"- checks run: {result.checks_run}",
        f"- failures: {len(result.failures)}",
    ]
    if result.data_docs:
        lines.append(f"- Data Docs: {result.data_docs}")
    if result.row_counts:
        lines += ["", "| table | rows |", "|---|---:|"]
        lines += [f"| {t} | {n:,} |" for t, n in result.row_counts.items()]
    if result.failures:
        lines += ["", "## Failures", ""]
        for f in result.failures:
            where = f"{f.table}.{f.column}" if f.column else f.table
            lines.append(f"- **{where}** `{f.check}`: {f.message}")
            for row in f.sample[:SAMPLES_IN_SUMMARY]:
                lines.append(f"  - `{json.dumps(row, default=str)}`")
    return "\n".join(lines) + "\n"


def write_reports(result: ValidationResult, reports_dir: Path) -> Path:
    """Write both reports atomically and record the JSON path in the result; returns it."""
    json_path, md_path = report_paths(reports_dir, result.batch_id)
    result.report_path = str(json_path)
    lake.atomic_write_text(json_path, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    lake.atomic_write_text(md_path, markdown_summary(result))
    return json_path
