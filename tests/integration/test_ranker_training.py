"""The ranker on impressions logged from the simulator's response model, with listener and
item features joined from the feature store as of each request (as the flow does)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.candidates.model import train_candidates
from crossfade.config import CandidateSettings, Settings, load_settings
from crossfade.data import lake
from crossfade.data.simulator import World, simulate
from crossfade.evaluation.metrics import graded_ndcg_by_group
from crossfade.ranking.dataset import REQUEST, History, simulated_impressions
from crossfade.ranking.features import FEATURES
from crossfade.ranking.labels import LABEL, load_label_policy
from crossfade.ranking.ranker import fit_ranker
from flows.features import apply_definitions, compute_tables, publish_tables
from flows.train_ranker import join_store_features

WORLD = {"users": 400, "days": 14, "start_date": date(2026, 1, 5)}
CUTOFF = pd.Timestamp("2026-01-15", tz="UTC").to_pydatetime()


def _ndcg10_by_tier(frame: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    per_request = graded_ndcg_by_group(frame, scores, REQUEST, LABEL, k=10)
    tiers = frame.drop_duplicates(REQUEST).set_index(REQUEST)["tier"].reindex(per_request.index)
    return {str(t): float(v) for t, v in per_request.groupby(tiers.to_numpy()).mean().items()}


def test_ranker_beats_candidate_score_order_in_every_tier(tmp_path: Path) -> None:
    settings: Settings = load_settings("local", data_root=tmp_path / "data", simulator=WORLD)
    batch = simulate(settings.simulator, 3, settings.staging_dir, settings.truth_dir)
    lake.publish_batch(batch, settings.lake_dir)
    frames = {
        n: lake.read_lake_table(settings.lake_dir, n).to_pandas()
        for n in ("events", "items", "users", "onboarding")
    }
    world = World.load(settings.truth_dir / batch.name)
    # the flow's own feature tasks, without Prefect: tables, then `feast apply`
    publish_tables.fn(settings, compute_tables.fn(settings))
    apply_definitions.fn(settings)
    past = frames["events"][frames["events"][C.TS] < CUTOFF]
    model = train_candidates(
        past,
        frames["items"],
        frames["users"],
        frames["onboarding"],
        CandidateSettings(),
        3,
        now=CUTOFF,
    )
    policy = load_label_policy(settings.config_path / "labels.yaml")
    users = sorted(set(past[C.USER_ID]))[:250]
    log = simulated_impressions(
        model,
        world,
        frames["items"],
        History.from_events(past, frames["items"]),
        users,
        CUTOFF,
        4,
        policy,
        seed=3,
    )
    log = join_store_features.fn(settings, log)
    assert log[list(FEATURES)].notna().all().all()
    log["tier"] = log[C.USER_ID].map(frames["users"].set_index(C.USER_ID)[C.TIER])
    assert set(log[LABEL].unique()) <= {0, 1, 2, 3, 4}
    train = log[log[C.TS] < CUTOFF + timedelta(days=2)]
    valid = log[
        (log[C.TS] >= CUTOFF + timedelta(days=2)) & (log[C.TS] < CUTOFF + timedelta(days=3))
    ]
    test = log[log[C.TS] >= CUTOFF + timedelta(days=3)]  # later requests only: temporal validation
    ranker = fit_ranker(train, valid, list(FEATURES), REQUEST, "tier", policy)
    ours = _ndcg10_by_tier(test, ranker.predict(test, "tier"))
    baseline = _ndcg10_by_tier(test, test["source_score"].to_numpy())
    for tier in ("premium", "ad_supported"):
        assert ours[tier] > baseline[tier], (tier, ours, baseline)
