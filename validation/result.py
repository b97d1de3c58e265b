"""The structured outcome of validating a batch: what failed, where, with example rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Failure:
    """One failed expectation or check, with enough detail to act on it."""

    table: str
    check: str  # expectation type or cross-table check name
    column: str | None
    message: str  # human sentence: what was expected, what was found
    unexpected_count: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)  # a few offending rows
    rule: str | None = None  # stable id of the rule, e.g. "events.ts.window" (table.column.kind)


@dataclass
class ValidationResult:
    """The gate's verdict on a batch; `success` is False when any check failed."""

    batch_id: str
    success: bool
    row_counts: dict[str, int]
    failures: list[Failure] = field(default_factory=list)
    checks_run: int = 0
    data_docs: str | None = None  # path of the GX Data Docs index, when built
    report_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored beside quarantined batches and under reports/."""
        return asdict(self)

    def summary_lines(self, limit: int = 20) -> list[str]:
        """One line per failure (capped), for terminals and Prefect artifacts."""
        lines = [
            f"{f.table}.{f.column or '*'}: {f.check}: {f.message} ({f.unexpected_count} rows)"
            for f in self.failures[:limit]
        ]
        if len(self.failures) > limit:
            lines.append(f"... and {len(self.failures) - limit} more failures")
        return lines
