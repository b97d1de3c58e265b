"""Render the data contracts as Markdown, so docs/data-contracts.md never drifts from code."""

from __future__ import annotations

from crossfade.data import domains as D
from crossfade.data.contracts import CONTRACTS, Contract


def _type_name(field_type: object) -> str:
    return str(field_type).replace("timestamp[us, tz=UTC]", "timestamp (UTC, µs)")


def contract_table(spec: Contract) -> str:
    """One Markdown table describing a contract's columns and rules."""
    lines = [
        f"### `{spec.name}`{' (dimension)' if spec.dimension else ''}",
        "",
        spec.description,
        "",
        f"Key: `{spec.key}`" + (f"; time column: `{spec.time_column}`" if spec.time_column else ""),
        "",
        "| column | type | nullable | rule | meaning |",
        "|---|---|---|---|---|",
    ]
    for field in spec.schema:
        rules = []
        if field.name in spec.domains:
            rules.append("one of " + ", ".join(f"`{v}`" for v in spec.domains[field.name]))
        if field.name in spec.ranges:
            low, high = spec.ranges[field.name]
            rules.append(
                f"in [{low if low is not None else '-∞'}, {high if high is not None else '∞'}]"
            )
        if field.name in spec.references:
            rules.append(f"must exist in `{spec.references[field.name]}`")
        if field.name in spec.id_columns:
            rules.append(f"id: {D.ID_RULE}")
        if field.name == spec.key:
            rules.append("unique")
        doc = (field.metadata or {}).get(b"doc", b"").decode()
        lines.append(
            f"| `{field.name}` | {_type_name(field.type)} | {'yes' if field.nullable else 'no'} "
            f"| {'; '.join(rules)} | {doc} |"
        )
    return "\n".join(lines)


def render_contracts() -> str:
    """All contracts, in dependency order, as Markdown."""
    return "\n\n".join(contract_table(spec) for spec in CONTRACTS.values()) + "\n"
