"""Candidate recall on a holdout: overall, per source, for new items and for new listeners."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd

from crossfade import columns as C
from crossfade.candidates.generator import SOURCES
from crossfade.candidates.model import CandidateModel, train_candidates
from crossfade.config import CandidateSettings
from crossfade.evaluation.retrieval import recall_at, restrict
from crossfade.evaluation.splits import positives

NS: tuple[int, ...] = (100, 200, 500)


def evaluate_candidates(
    model: CandidateModel,
    relevant: dict[str, set[str]],
    items: pd.DataFrame,
    train_events: pd.DataFrame,
    cutoff: datetime,
    ns: Sequence[int] = NS,
    new_item_days: int = 14,
) -> dict[str, float]:
    """recall@N for each N overall, per source, on new releases and on new listeners."""
    k = max(ns)
    merged: dict[str, list[str]] = {}
    by_source: dict[str, dict[str, list[str]]] = {s: {} for s in SOURCES}
    for user in relevant:
        found = model.generate(user, now=cutoff, k=k)
        merged[user] = [c.item_id for c in found]
        for cand in found:
            for source in cand.sources:
                by_source[source].setdefault(user, []).append(cand.item_id)
    release = pd.to_datetime(items.set_index(C.ITEM_ID)[C.RELEASE_DATE])
    new_items = set(
        release[release >= pd.Timestamp(cutoff.date() - timedelta(days=new_item_days))].index
    )
    plays = train_events.groupby(C.USER_ID).size()
    new_users = set(relevant) - set(plays[plays >= model.settings.new_user_max_plays].index)
    metrics: dict[str, float] = {}
    for n in ns:
        metrics[f"recall_at_{n}"] = recall_at(merged, relevant, n)
        metrics[f"recall_at_{n}_new_items"] = recall_at(
            merged, restrict(relevant, items=new_items), n
        )
        metrics[f"recall_at_{n}_new_listeners"] = recall_at(
            merged, restrict(relevant, users=new_users), n
        )
    for source, lists in by_source.items():
        metrics[f"recall_at_{k}_{source}"] = recall_at(lists, relevant, k)
    metrics["eval_listeners"] = float(len(relevant))
    metrics["eval_new_listeners"] = float(len(new_users))
    metrics["eval_new_item_positives"] = float(
        sum(len(v) for v in restrict(relevant, items=new_items).values())
    )
    return {k: v for k, v in metrics.items() if v == v}  # drop NaN (empty slices)


def holdout_recall(
    split_train: pd.DataFrame,
    split_test: pd.DataFrame,
    cutoff: datetime,
    frames: dict[str, pd.DataFrame],
    settings: CandidateSettings,
    seed: int,
) -> dict[str, float]:
    """Train candidates on the past of a split, measure recall@N on what follows, and the
    popular-in-market baseline on the same listeners (`baseline_popular_recall_at_N`)."""
    model = train_candidates(
        split_train,
        frames["items"],
        frames["users"],
        frames["onboarding"],
        settings,
        seed,
        now=cutoff,
    )
    relevant = positives(split_test, split_train)
    metrics = evaluate_candidates(model, relevant, frames["items"], split_train, cutoff)
    baseline = {
        user: model.popularity.popular_in_market(model.listener(user).country, max(NS))[0]
        for user in relevant
    }
    for n in NS:
        metrics[f"baseline_popular_recall_at_{n}"] = recall_at(baseline, relevant, n)
    return metrics
