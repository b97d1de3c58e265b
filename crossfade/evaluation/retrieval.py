"""Retrieval metrics: candidate recall@N overall, per source and per slice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def recall_at(
    candidates: Mapping[str, Sequence[str]], relevant: Mapping[str, set[str]], n: int
) -> float:
    """Mean over listeners with relevant items of |top-n candidates ∩ relevant| / |relevant|.

    Listeners absent from `candidates` count as zero recall: a retrieval that returns nothing
    for someone is a miss, not an exclusion.
    """
    scores = []
    for user, items in relevant.items():
        if not items:
            continue
        top = set(list(candidates.get(user, ()))[:n])
        scores.append(len(top & items) / len(items))
    return float(np.mean(scores)) if scores else float("nan")


def restrict(
    relevant: Mapping[str, set[str]],
    items: Iterable[str] | None = None,
    users: Iterable[str] | None = None,
) -> dict[str, set[str]]:
    """Relevant sets limited to some items (e.g. new releases) and/or listeners (e.g. new)."""
    keep_items = set(items) if items is not None else None
    keep_users = set(users) if users is not None else None
    out: dict[str, set[str]] = {}
    for user, found in relevant.items():
        if keep_users is not None and user not in keep_users:
            continue
        chosen = found & keep_items if keep_items is not None else set(found)
        if chosen:
            out[user] = chosen
    return out
