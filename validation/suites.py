"""Great Expectations suites generated from the data contracts.

Every contract yields two suites:

- the *rows* suite (`build_suite`), run on the Parquet parts of a table (one part, or a few
  consecutive ones up to a row budget, per run): the ordered column
  list, non-null required columns, value domains, numeric ranges, ids serving accepts, the
  time window, plausible times (not before the configured floor or too long before the data
  clock), no future timestamps, references that resolve, and lookup rules such as
  ``ms_played <= duration_ms``;
- the *table* suite (`build_table_suite`), run once on the key column of the whole table
  (all parts together): unique keys, and the row-count band of the volume check.

Column types are not in the suites: they are compared on the Parquet file's Arrow schema
before pandas conversion (`validation.schema`), which GX on pandas cannot do exactly (an int
column with a null arrives as float, every string as `object`). Per-column existence is
covered by the ordered column list, and reported per column by the same schema check; GX
pays a fixed cost per expectation and part, so redundant expectations are left out.

Nothing here is written by hand per table: change a contract (add a domain value, a range,
a reference) and the expectations change with it. Each expectation carries `meta` saying
which rule it is (`rule`), which contract column it is about (`column`) and what kind of
check (`kind`), so results map back to a precise `Failure`.

Cross-table checks run through GX too: before a part is validated, the runner appends
derived columns (see `reference_flag`, `LookupRule.derived`) computed by joining the part
with the referenced tables, and the suite checks those columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.data.contracts import Contract

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite


@dataclass(frozen=True)
class LookupRule:
    """`table.column` must not exceed `lookup_table.lookup_column` of the row its `via` names."""

    table: str
    column: str
    via: str
    lookup_table: str
    lookup_column: str

    @property
    def derived(self) -> str:
        """Name of the joined column the runner appends (e.g. `_items_duration_ms`)."""
        return f"_{self.lookup_table}_{self.lookup_column}"


# Rules that span two tables and are not expressible in a single contract.
LOOKUP_RULES: tuple[LookupRule, ...] = (
    LookupRule("events", C.MS_PLAYED, C.ITEM_ID, "items", C.DURATION_MS),
)


@dataclass(frozen=True)
class SuiteParams:
    """The per-run values the suites need besides the contract."""

    window_start: datetime | None = None  # inclusive, UTC
    window_end: datetime | None = None  # exclusive, UTC (last window day + 1 day)
    latest_ts: datetime | None = None  # now + max_future_skew_minutes
    skew_minutes: int = 0
    # Plausibility: no time before this (earliest_event, or max_event_age_days before clock)
    earliest_ts: datetime | None = None
    clock: datetime | None = None  # the data clock the plausible window hangs from
    max_age_days: int | None = None
    earliest_event: date | None = None  # the configured floor, whatever the clock
    # table -> (min rows, max rows) of the volume check; absent tables are not checked
    volume: dict[str, tuple[int, int]] = field(default_factory=dict)


FILE = "_file"  # derived column: the part (path inside the batch) each row came from


def reference_flag(column: str) -> str:
    """Name of the derived boolean column saying whether `column`'s id resolves."""
    return f"_known_{column}"


def id_flag(column: str) -> str:
    """Name of the derived boolean column saying whether `column` follows the id rule."""
    return f"_valid_{column}"


def lookup_rules(table: str) -> list[LookupRule]:
    """The lookup rules that apply to a table."""
    return [rule for rule in LOOKUP_RULES if rule.table == table]


def derived_columns(spec: Contract) -> list[str]:
    """Columns the runner appends to a part before GX sees it, in a fixed order."""
    flags = [reference_flag(column) for column in spec.references]
    ids = [id_flag(column) for column in spec.id_columns]
    return [*flags, *(rule.derived for rule in lookup_rules(spec.name)), *ids, FILE]


def _meta(spec: Contract, column: str | None, kind: str, **extra: Any) -> dict[str, Any]:
    rule = f"{spec.name}.{column or '*'}.{kind}"
    return {"rule": rule, "table": spec.name, "column": column, "kind": kind, **extra}


def build_suite(spec: Contract, params: SuiteParams) -> ExpectationSuite:
    """The rows suite of a contract: every per-row rule, ready to run on Parquet parts."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    items: list[Any] = [
        gxe.ExpectTableColumnsToMatchOrderedList(
            column_list=spec.column_names + derived_columns(spec),
            meta=_meta(spec, None, "columns"),
        )
    ]
    for column in spec.required:
        items.append(
            gxe.ExpectColumnValuesToNotBeNull(column=column, meta=_meta(spec, column, "not_null"))
        )
    for column, domain in spec.domains.items():
        items.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=column, value_set=list(domain), meta=_meta(spec, column, "domain")
            )
        )
    for column, (low, high) in spec.ranges.items():
        items.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column,
                min_value=low,
                max_value=high,
                meta=_meta(spec, column, "range", min=low, max=high),
            )
        )
    for column in spec.id_columns:
        items.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=id_flag(column),
                value_set=[True],
                meta=_meta(spec, column, "id_format", rule_text=D.ID_RULE),
            )
        )
    if spec.time_column is not None:
        items.extend(_time_expectations(spec, spec.time_column, params))
    for column, table in spec.references.items():
        items.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=reference_flag(column),
                value_set=[True],
                meta=_meta(spec, column, "reference", ref_table=table),
            )
        )
    for rule in lookup_rules(spec.name):
        items.append(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=rule.derived,
                column_B=rule.column,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                meta=_meta(
                    spec,
                    rule.column,
                    "lookup",
                    via=rule.via,
                    lookup=f"{rule.lookup_table}.{rule.lookup_column}",
                    derived=rule.derived,
                ),
            )
        )
    return gx.ExpectationSuite(name=f"{spec.name}.rows", expectations=items)


def _time_expectations(spec: Contract, column: str, params: SuiteParams) -> list[Any]:
    import great_expectations.expectations as gxe

    out: list[Any] = []
    if params.window_start is not None and params.window_end is not None:
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column,
                min_value=params.window_start,
                max_value=params.window_end,
                strict_max=True,
                meta=_meta(
                    spec,
                    column,
                    "window",
                    start=params.window_start.date().isoformat(),
                    end=params.window_end.date().isoformat(),
                ),
            )
        )
    if params.earliest_ts is not None:
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column,
                min_value=params.earliest_ts,
                meta=_meta(
                    spec,
                    column,
                    "plausible",
                    earliest=params.earliest_ts.date().isoformat(),
                    earliest_event=params.earliest_event.isoformat()
                    if params.earliest_event
                    else None,
                    clock=params.clock.date().isoformat() if params.clock else None,
                    max_age_days=params.max_age_days,
                ),
            )
        )
    if params.latest_ts is not None:
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column,
                max_value=params.latest_ts,
                meta=_meta(
                    spec,
                    column,
                    "future",
                    latest=params.latest_ts.isoformat(),
                    skew_minutes=params.skew_minutes,
                ),
            )
        )
    return out


def build_table_suite(spec: Contract, params: SuiteParams) -> ExpectationSuite:
    """The table suite of a contract: checks that need all parts at once (key column only)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    items: list[Any] = [
        gxe.ExpectColumnValuesToBeUnique(column=spec.key, meta=_meta(spec, spec.key, "unique"))
    ]
    if spec.name in params.volume:
        low, high = params.volume[spec.name]
        items.append(
            gxe.ExpectTableRowCountToBeBetween(
                min_value=low, max_value=high, meta=_meta(spec, None, "volume", min=low, max=high)
            )
        )
    return gx.ExpectationSuite(name=f"{spec.name}.table", expectations=items)
