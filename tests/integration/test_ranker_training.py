"""The ranker on impressions logged from the simulator's response model."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.candidates.model import train_candidates
from crossfade.config import CandidateSettings, Settings, SimulatorSettings
from crossfade.data import lake
from crossfade.data.simulator import World, simulate
from crossfade.ranking.dataset import FEATURES, REQUEST, History, simulated_impressions
from crossfade.ranking.labels import LABEL, load_label_policy
from crossfade.ranking.ranker import fit_ranker

WORLD = SimulatorSettings(users=400, days=14, start_date=date(2026, 1, 5))
CUTOFF = pd.Timestamp("2026-01-15", tz="UTC").to_pydatetime()


def _ndcg10_by_tier(frame: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for tier, rows in frame.assign(_s=scores).groupby("tier"):
        values = []
        for _, g in rows.groupby(REQUEST):
            gains = 2.0 ** g.sort_values("_s", ascending=False)[LABEL].to_numpy()[:10] - 1
            ideal = 2.0 ** np.sort(g[LABEL].to_numpy())[::-1][:10] - 1
            discount = 1 / np.log2(np.arange(2, 2 + len(gains)))
            if ideal.sum() > 0:
                values.append(float((gains * discount).sum() / (ideal * discount).sum()))
        out[str(tier)] = float(np.mean(values))
    return out


def test_ranker_beats_candidate_score_order_in_every_tier(
    settings: Settings, tmp_path: Path
) -> None:
    batch = simulate(WORLD, 3, tmp_path / "staging", tmp_path / "truth")
    frames = {
        n: lake.read_batch_table(batch, n).to_pandas()
        for n in ("events", "items", "users", "onboarding")
    }
    world = World.load(tmp_path / "truth" / batch.name)
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
