"""From raw check outcomes (GX results, schema drift, file errors) to human `Failure`s.

A `Finding` is one failed rule in one GX run or file. Findings of the same rule across the
parts of a table are merged (counts summed, samples pooled up to `sample_rows`), and only
then turned into a `Failure` whose message states the total: "12 event ids appear more than
once".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from validation.result import Failure
from validation.suites import FILE

MAX_VALUES = 8  # distinct unexpected values kept for the message
MAX_TEXT = 80  # longer text values are cut in reports (a 10 MB id must not fill one)
SET_PREVIEW = 6  # domain values shown in a message before "..."


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a cell value (timestamps as ISO text, NaN/NA as None)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return f"{value[:MAX_TEXT]}... ({len(value):,} characters)"
    if isinstance(value, int | float | str | bool):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


@dataclass
class Finding:
    """One failed rule, possibly merged over several files of a table."""

    rule: str
    table: str
    check: str
    column: str | None
    kind: str
    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: Finding, sample_rows: int) -> None:
        """Fold another file's finding of the same rule into this one."""
        self.count += other.count
        room = sample_rows - len(self.samples)
        if room > 0:
            self.samples.extend(other.samples[:room])
        self.files.extend(f for f in other.files if f not in self.files)
        for value in other.values:
            if value not in self.values and len(self.values) < MAX_VALUES:
                self.values.append(value)


class Findings:
    """Findings keyed by rule, in the order rules first failed."""

    def __init__(self, sample_rows: int) -> None:
        """Collect findings; each failure keeps at most `sample_rows` example rows."""
        self.sample_rows = sample_rows
        self._by_rule: dict[str, Finding] = {}

    def add(self, finding: Finding) -> None:
        """Add one finding, merging it into an earlier one of the same rule."""
        finding.samples = finding.samples[: self.sample_rows]
        earlier = self._by_rule.get(finding.rule)
        if earlier is None:
            self._by_rule[finding.rule] = finding
        else:
            earlier.merge(finding, self.sample_rows)

    def all(self) -> list[Finding]:
        """The findings so far (live objects: details may still be annotated)."""
        return list(self._by_rule.values())

    def __len__(self) -> int:
        """Number of distinct failed rules."""
        return len(self._by_rule)

    def failures(self) -> list[Failure]:
        """The merged findings as `Failure`s with their final messages."""
        return [
            Failure(
                table=f.table,
                check=f.check,
                column=f.column,
                message=message(f),
                unexpected_count=f.count,
                sample=f.samples,
                rule=f.rule,
            )
            for f in self._by_rule.values()
        ]


# --- GX results -> findings ---------------------------------------------------------------


def _exception_text(info: dict[str, Any]) -> str | None:
    """The message of an exception GX caught while evaluating an expectation, if any."""
    if not info:
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "unknown error")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "unknown error")
    return None


def sample_rows_of(
    frame: pd.DataFrame,
    index: list[Any],
    columns: list[str],
    rename: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Offending rows as JSON-safe dicts: the listed columns plus the file they came from."""
    if not index:
        return []
    present = [c for c in [*columns, FILE] if c in frame.columns]
    rows = frame.loc[index, present].rename(columns=rename or {})
    return [{str(k): jsonable(v) for k, v in r.items()} for r in rows.to_dict("records")]


def _outside(column: pd.Series, kwargs: dict[str, Any]) -> pd.Series:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    bad = pd.Series(False, index=column.index)
    if low is not None:
        bad |= (column <= low) if kwargs.get("strict_min") else (column < low)
    if high is not None:
        bad |= (column >= high) if kwargs.get("strict_max") else (column > high)
    return bad & column.notna()


def unexpected_mask(check: str, kwargs: dict[str, Any], frame: pd.DataFrame) -> pd.Series | None:
    """Rows a failed expectation objects to, computed from its kwargs as GX defines them.

    GX's BASIC result format gives the count and a few values but no row positions (asking
    for them makes every run about a third slower, even when nothing fails), so the rows
    behind the samples are found again here, for failed expectations only.
    """
    if check == "expect_column_values_to_not_be_null":
        return frame[kwargs["column"]].isna()
    if check == "expect_column_values_to_be_in_set":
        column = frame[kwargs["column"]]
        return column.notna() & ~column.isin(list(kwargs["value_set"]))
    if check == "expect_column_values_to_be_between":
        return _outside(frame[kwargs["column"]], kwargs)
    if check == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = frame[kwargs["column_A"]], frame[kwargs["column_B"]]
        ok = (a >= b) if kwargs.get("or_equal") else (a > b)
        return a.notna() & b.notna() & ~ok.fillna(False).astype(bool)
    return None


def unexpected_index(
    config: Any, result: dict[str, Any], frame: pd.DataFrame, limit: int
) -> list[Any]:
    """Index labels of up to `limit` offending rows: GX's own list if it gave one, else derived."""
    given = result.get("partial_unexpected_index_list")
    if given is not None:
        return list(given)[:limit]
    try:
        mask = unexpected_mask(config.type, dict(config.kwargs), frame)
    except (KeyError, TypeError, ValueError):
        return []
    if mask is None:
        return []
    positions = np.flatnonzero(mask.to_numpy(dtype=bool, na_value=False))[:limit]
    return list(frame.index[positions])


def from_gx_result(
    result: Any,
    frame: pd.DataFrame,
    *,
    sample_columns: list[str],
    sample_rows: int,
    skip_columns: set[str],
    schema_drifted: bool,
) -> Finding | None:
    """One failed GX expectation on some parts -> a Finding (None when it passed or is moot).

    Moot means a consequence of a schema failure already reported for this file: checks on a
    missing or retyped column, and GX's own column-list check when the Arrow schema check
    has already described the drift precisely.
    """
    if result.success:
        return None
    config = result.expectation_config
    meta = dict(config.meta or {})
    kind, column = meta.get("kind", "error"), meta.get("column")
    if column in skip_columns or (schema_drifted and kind == "columns"):
        return None
    details = {k: v for k, v in meta.items() if k not in ("rule", "table", "column", "kind")}
    res = dict(result.result or {})
    error = _exception_text(dict(result.exception_info or {}))
    if error is not None:
        kind = "error"
        details["error"] = error
    count = res.get("unexpected_count")
    if count is None:
        count = len(frame)  # table-level expectations concern every row of the part
    scalars = (jsonable(v) for v in res.get("partial_unexpected_list") or [])
    values = list(dict.fromkeys(v for v in scalars if not isinstance(v, list | dict)))
    if kind == "domain":
        details["domain"] = list(config.kwargs.get("value_set") or [])
    if kind == "columns":
        details["observed"] = jsonable(res.get("observed_value"))
    rename = {meta["derived"]: meta["lookup"]} if kind == "lookup" else None
    columns = sample_columns + ([meta["derived"]] if kind == "lookup" else [])
    index = unexpected_index(config, res, frame, sample_rows) if error is None else []
    samples = sample_rows_of(frame, index, columns, rename)
    if kind in ("reference", "id_format"):  # GX saw the derived flag; show the ids themselves
        values = list(dict.fromkeys(s.get(str(column)) for s in samples))
    return Finding(
        rule=meta.get("rule", config.type),
        table=meta.get("table", "?"),
        check=config.type,
        column=column,
        kind=kind,
        count=int(count),
        samples=samples,
        files=list(dict.fromkeys(str(s[FILE]) for s in samples if s.get(FILE))),
        values=values[:MAX_VALUES],
        details=details,
    )


# --- messages -----------------------------------------------------------------------------


def _set_preview(values: list[Any]) -> str:
    shown = ", ".join(str(v) for v in values[:SET_PREVIEW])
    return "{" + shown + (", ..." if len(values) > SET_PREVIEW else "") + "}"


def _found(values: list[Any]) -> str:
    return ("; found " + ", ".join(repr(v) for v in values[:5])) if values else ""


def _where(f: Finding) -> str:
    if not f.files:
        return ""
    if len(f.files) == 1:
        return f" ({f.files[0]})"
    return f" ({len(f.files)} files, e.g. {f.files[0]})"


def _rows(n: int) -> str:
    """`1 row has` / `3 rows have`: the subject of most messages."""
    return f"{n:,} row has" if n == 1 else f"{n:,} rows have"


def _noun(column: str, n: int = 2) -> str:
    """`user_id` -> `user ids` (or `user id` for n == 1); other columns -> `X values`."""
    suffix = "" if n == 1 else "s"
    return column[:-3] + f" id{suffix}" if column.endswith("_id") else f"{column} value{suffix}"


def message(f: Finding) -> str:
    """The human sentence for a finding: what was expected and what was found."""
    d, n, col = f.details, f.count, f.column or "*"
    if "message" in d:
        return str(d["message"]) + _where(f)
    if f.kind == "not_null":
        return f"{_rows(n)} no {col} (null)"
    if f.kind == "domain":
        return f"{_rows(n)} {col} outside {_set_preview(d['domain'])}{_found(f.values)}"
    if f.kind == "range":
        low, high = d.get("min"), d.get("max")
        if high is None:
            return f"{_rows(n)} {col} below {low}{_found(f.values)}"
        if low is None:
            return f"{_rows(n)} {col} above {high}{_found(f.values)}"
        return f"{_rows(n)} {col} outside [{low}, {high}]{_found(f.values)}"
    if f.kind == "window":
        return (
            f"{_rows(n)} {col} outside the batch window [{d['start']}, {d['end']}) "
            f"(window_start .. window_end + 1 day){_found(f.values[:3])}"
        )
    if f.kind == "plausible":
        return (
            f"{_rows(n)} implausible {col}: before {d['earliest']}, the later of "
            f"validation.earliest_event ({d.get('earliest_event')}) and "
            f"validation.max_event_age_days ({d.get('max_age_days'):,}) before the data clock "
            f"{d.get('clock')}{_found(f.values[:3])}"
        )
    if f.kind == "id_format":
        return (
            f"{_rows(n)} {_noun(col)} that serving would refuse: ids must be {d['rule_text']}"
            f"{_found(f.values)}"
        )
    if f.kind == "future":
        return (
            f"{_rows(n)} {col} in the future: after {d['latest']} "
            f"(now + {d['skew_minutes']} min){_found(f.values[:3])}"
        )
    if f.kind == "reference":
        verb = "row references" if n == 1 else "rows reference"
        return (
            f"{n:,} {verb} unknown {_noun(col)}: not in this batch's {d['ref_table']} table "
            f"nor already published in the lake{_found(f.values)}{d.get('note', '')}"
        )
    if f.kind == "lookup":
        via = str(d["via"])
        owner = via[:-3] if via.endswith("_id") else via
        bound = str(d["lookup"]).split(".", 1)[-1]
        return (
            f"{_rows(n)} {col} greater than the {bound} of its {owner} "
            f"({d['lookup']}, joined on {via})"
        )
    if f.kind == "unique":
        ids = int(d["distinct"])
        verb = "appears" if ids == 1 else "appear"
        across = ", across parts" if d.get("across_files") else ""
        return f"{ids:,} {_noun(col, ids)} {verb} more than once ({n:,} rows{across})"
    if f.kind == "columns":
        return f"{f.table}: columns do not match the contract; found {d.get('observed')}"
    if f.kind == "error":
        return f"{f.check} on {f.table}.{col} could not be evaluated: {d['error']}{_where(f)}"
    return f"{n:,} rows fail {f.check}{_where(f)}"
