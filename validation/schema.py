"""Schema drift: compare a file's Arrow schema with its contract, before any pandas conversion.

Pandas would blur the evidence (an int column with a null becomes float, every string is
`object`), so types are compared on the Parquet file's own Arrow schema and reported
exactly: "events.ms_played: expected int64, found string".
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from crossfade.data.contracts import Contract

# Drift kind -> the GX expectation type it corresponds to (what `Failure.check` says).
CHECKS = {
    "missing": "expect_column_to_exist",
    "renamed": "expect_table_columns_to_match_ordered_list",
    "extra": "expect_table_columns_to_match_ordered_list",
    "order": "expect_table_columns_to_match_ordered_list",
    "retyped": "expect_column_values_to_be_of_type",
}


@dataclass(frozen=True)
class Drift:
    """One difference between a file's schema and its contract."""

    kind: str  # missing | renamed | extra | order | retyped
    column: str | None  # the contract column (or the extra column for `extra`)
    expected: str | None = None
    found: str | None = None

    @property
    def check(self) -> str:
        """The GX expectation type this drift fails."""
        return CHECKS[self.kind]


def type_name(typ: pa.DataType) -> str:
    """Short, familiar name of an Arrow type (int64, string, timestamp[us, tz=UTC])."""
    return str(typ)


def _pair_renames(
    spec: Contract, found: pa.Schema, missing: list[str], extra: list[str]
) -> dict[str, str]:
    """Missing contract column -> extra file column that most likely is it, renamed."""
    pairs: dict[str, str] = {}
    free = list(extra)
    for name in missing:
        expected_type = spec.schema.field(name).type
        candidates = [e for e in free if found.field(e).type == expected_type]
        if len(candidates) > 1:
            position = spec.column_names.index(name)
            candidates = [e for e in candidates if found.names.index(e) == position]
        if len(candidates) == 1:
            pairs[name] = candidates[0]
            free.remove(candidates[0])
    return pairs


def compare_schema(spec: Contract, found: pa.Schema) -> list[Drift]:
    """Every way `found` differs from the contract: missing, renamed, extra, retyped, order."""
    expected = spec.column_names
    missing = [n for n in expected if n not in found.names]
    extra = [n for n in found.names if n not in expected]
    renames = _pair_renames(spec, found, missing, extra)
    drifts: list[Drift] = []
    for name in missing:
        if name in renames:
            drifts.append(Drift("renamed", name, expected=name, found=renames[name]))
        else:
            drifts.append(Drift("missing", name, expected=type_name(spec.schema.field(name).type)))
    drifts.extend(
        Drift("extra", name, found=type_name(found.field(name).type))
        for name in extra
        if name not in renames.values()
    )
    for name in expected:
        if name in found.names:
            want, got = spec.schema.field(name).type, found.field(name).type
            if want != got:
                drifts.append(Drift("retyped", name, type_name(want), type_name(got)))
    present = [n for n in found.names if n in expected]
    if not missing and not extra and present != expected:
        drifts.append(Drift("order", None, expected=", ".join(expected), found=", ".join(present)))
    return drifts


def broken_columns(drifts: list[Drift]) -> set[str]:
    """Contract columns whose data cannot be checked as such (missing, renamed, retyped)."""
    return {d.column for d in drifts if d.column and d.kind in ("missing", "renamed", "retyped")}
