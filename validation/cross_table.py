"""Cross-table checks: references that must resolve, and values bounded by a joined table.

An id resolves when the same batch's referenced table has it, or when the lake already
published it (`lake.known_keys`): a batch of new plays for existing listeners is fine. The
lake is consulted lazily, only when some id is not in the batch, so a self-contained batch
never reads the lake at all.

The results become derived columns appended to each part (see `validation.suites`), which the
rows suite checks with ordinary expectations, so they show up in the GX run and Data Docs.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crossfade.data import domains as D
from crossfade.data import lake
from crossfade.data.contracts import CONTRACTS, Contract, contract
from validation.suites import LOOKUP_RULES, LookupRule, id_flag, lookup_rules, reference_flag

log = logging.getLogger("crossfade.validation")


def referenced_tables() -> dict[str, set[str]]:
    """Tables other tables point at -> the columns of them the checks need (key, lookups)."""
    needed: dict[str, set[str]] = defaultdict(set)
    for spec in CONTRACTS.values():
        for table in spec.references.values():
            needed[table].add(contract(table).key)
    for rule in LOOKUP_RULES:
        needed[rule.lookup_table].update({contract(rule.lookup_table).key, rule.lookup_column})
    return dict(needed)


def _any_true(mask: pa.Array | pa.ChunkedArray) -> bool:
    return bool(pc.any(mask).as_py())


class ReferenceIndex:
    """Keys and lookup values of referenced tables: this batch first, then the lake."""

    def __init__(self, lake_dir: Path) -> None:
        """Start empty; feed the batch's referenced tables with `add_batch_part`."""
        self.lake_dir = lake_dir
        self._parts: dict[str, list[pa.Table]] = defaultdict(list)
        self._keys: dict[str, pa.Array] = {}
        self._lake_keys: dict[str, pa.Array] = {}
        self._lookups: dict[LookupRule, tuple[pa.Array, pa.Array, bool]] = {}
        self.incomplete: set[str] = set()  # tables with files the index could not use

    def add_batch_part(self, table: str, data: pa.Table) -> None:
        """Remember the key (and lookup) columns of one readable part of a referenced table."""
        spec = contract(table)
        wanted = referenced_tables().get(table, set())
        usable = [
            name
            for name in spec.column_names
            if name in wanted
            and name in data.column_names
            and data.schema.field(name).type == spec.schema.field(name).type
        ]
        if spec.key not in usable:
            self.incomplete.add(table)
            return
        self._parts[table].append(data.select(usable))

    def _batch_keys(self, table: str) -> pa.Array:
        if table not in self._keys:
            parts = [p.select([contract(table).key]) for p in self._parts.get(table, [])]
            if parts:
                column = pa.concat_tables(parts)[contract(table).key].combine_chunks()
                self._keys[table] = pc.unique(column.drop_null())
            else:
                self._keys[table] = pa.array([], pa.string())
        return self._keys[table]

    def _lake_keys_of(self, table: str) -> pa.Array:
        if table not in self._lake_keys:
            keys = lake.known_keys(self.lake_dir, table)
            self._lake_keys[table] = pa.array(sorted(k for k in keys if k is not None), pa.string())
            log.debug("loaded published keys", extra={"table": table, "keys": len(keys)})
        return self._lake_keys[table]

    def resolves(self, table: str, values: pa.ChunkedArray | pa.Array) -> pa.Array:
        """True where an id exists in `table` (batch or lake), False where not, null where null."""
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        known = pc.is_in(values, value_set=self._batch_keys(table))
        missing = pc.and_(pc.invert(known), pc.is_valid(values))
        if _any_true(missing):
            known = pc.or_(known, pc.is_in(values, value_set=self._lake_keys_of(table)))
        return pc.if_else(pc.is_null(values), pa.scalar(None, pa.bool_()), known)

    def _lookup_table(self, rule: LookupRule, with_lake: bool) -> tuple[pa.Array, pa.Array]:
        cached = self._lookups.get(rule)
        if cached is not None and (cached[2] or not with_lake):
            return cached[0], cached[1]
        key = contract(rule.lookup_table).key
        frames = [
            p.select([key, rule.lookup_column]).to_pandas()
            for p in self._parts.get(rule.lookup_table, [])
            if rule.lookup_column in p.column_names
        ]
        if with_lake:
            published = lake.read_lake_table(
                self.lake_dir, rule.lookup_table, columns=[key, rule.lookup_column]
            )
            frames.append(published.to_pandas())
        merged = (
            pd.concat(frames, ignore_index=True).drop_duplicates(key, keep="first")
            if frames
            else pd.DataFrame({key: pd.Series(dtype=object), rule.lookup_column: []})
        )
        lookup_type = contract(rule.lookup_table).schema.field(rule.lookup_column).type
        keys = pa.array(merged[key].tolist(), pa.string())
        vals = pa.array(merged[rule.lookup_column].tolist(), lookup_type)
        self._lookups[rule] = (keys, vals, with_lake)
        return keys, vals

    def lookup(self, rule: LookupRule, via: pa.ChunkedArray | pa.Array) -> pa.Array:
        """`rule.lookup_column` of the row each `via` id names; null where it is unknown."""
        via = via.combine_chunks() if isinstance(via, pa.ChunkedArray) else via
        keys, vals = self._lookup_table(rule, with_lake=False)
        index = pc.index_in(via, value_set=keys)
        if _any_true(pc.and_(pc.is_null(index), pc.is_valid(via))):
            keys, vals = self._lookup_table(rule, with_lake=True)
            index = pc.index_in(via, value_set=keys)
        return pc.take(vals, index)


def annotate(spec: Contract, data: pa.Table, refs: ReferenceIndex) -> pa.Table:
    """Append the derived columns of the rows suite: reference flags, lookup values, id flags.

    A column that is missing or retyped (already a schema failure) yields nulls, which the
    expectations skip, so one broken column is reported once, not once per dependent check.
    """

    def usable(name: str) -> bool:
        return (
            name in data.column_names
            and data.schema.field(name).type == spec.schema.field(name).type
        )

    for column, table in spec.references.items():
        if usable(column):
            flags = refs.resolves(table, data[column])
        else:
            flags = pa.nulls(data.num_rows, pa.bool_())
        data = data.append_column(reference_flag(column), flags)
    for rule in lookup_rules(spec.name):
        lookup_type = contract(rule.lookup_table).schema.field(rule.lookup_column).type
        if usable(rule.via):
            values = refs.lookup(rule, data[rule.via])
        else:
            values = pa.nulls(data.num_rows, lookup_type)
        data = data.append_column(rule.derived, values)
    for column in spec.id_columns:
        ok = D.valid_ids(data[column]) if usable(column) else pa.nulls(data.num_rows, pa.bool_())
        data = data.append_column(id_flag(column), ok)
    return data
