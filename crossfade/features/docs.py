"""Render docs/features.md from the catalogue, the freshness budgets and the policy."""

from __future__ import annotations

from crossfade.features import catalog
from crossfade.features.policy import FeaturePolicy

HEADER = """# Features

Generated from `crossfade/features/catalog.py`, the freshness budgets in `configs/<profile>.yaml`
(`features.freshness_hours`) and the minimization policy `configs/feature_policy.yaml`
(`crossfade features docs` prints it; a test fails when this page and the code disagree).

Batch views are daily snapshots stamped at 00:00 UTC, computed only from events before that
instant (point-in-time correct). Online, a value older than its view's budget is *stale* and,
like a missing value, replaced by the documented default; the serving path counts both.
Where a listener's region and age group may not use a feature's sensitivity class, the
feature is replaced by its default in training sets and at serving time alike.

Feature services: `candidate_features_v1` (listener taste and market for retrieval) and
`ranker_features_v1` (all listener, item and artist views plus request context).
"""


def _where(policy: FeaturePolicy, spec: catalog.FeatureSpec) -> str:
    cells = []
    for region in policy.regions:
        groups = [g for g in ("adult", "minor") if spec.sensitivity in policy.allow[region][g]]
        cells.append(f"{region}: {', '.join(groups) if groups else 'nobody'}")
    return "; ".join(cells)


def _default(value: object) -> str:
    if isinstance(value, list):
        return f"{len(value)} zeros"
    return f"`{value}`"


def render_features_doc(freshness_hours: dict[str, float], policy: FeaturePolicy) -> str:
    """The whole page: one table per view."""
    parts = [HEADER]
    regions = ", ".join(f"**{r}** ({', '.join(codes)})" for r, codes in policy.regions.items())
    parts.append(f"Regions: {regions}. Minors include listeners of unknown age.\n")
    for view in (catalog.USER_VIEW, catalog.ITEM_VIEW, catalog.ARTIST_VIEW, catalog.CONTEXT_VIEW):
        specs = catalog.view_features(view)
        budget = freshness_hours.get(view)
        fresh = f"{budget:g} h" if budget is not None else "computed per request"
        parts.append(f"## `{view}` (entity: {specs[0].entity}; freshness budget: {fresh})\n")
        parts.append("| feature | type | default | source | class | may be used by | meaning |")
        parts.append("|---|---|---|---|---|---|---|")
        for spec in specs:
            parts.append(
                f"| `{spec.name}` | {spec.dtype} | {_default(spec.default)} | {spec.source} "
                f"| {spec.sensitivity} | {_where(policy, spec)} | {spec.description} |"
            )
        parts.append("")
    return "\n".join(parts)
