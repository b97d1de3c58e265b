"""Bot detection on the simulator's planted stream farms: precision, recall and throughput.

Worlds of several seeds and sizes are simulated; the detector sees only the observable
events, the truth (labels.parquet) is used to score it. Baselines in the same process: the
IsolationForest alone (its own anomaly vote) and the rules alone (without the anomaly vote).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.report import median_time, write_section
from crossfade import columns as C
from crossfade.config import load_settings
from crossfade.data import lake
from crossfade.data.simulator import simulate
from crossfade.safety.bots import ANOMALY, FLAGGED, REASONS, detect_bots
from crossfade.safety.paths import safety_policy

WORLDS = (  # (seed, listeners, days, bot share)
    (1, 1_000, 14, 0.02),
    (2, 3_000, 14, 0.02),
    (3, 1_000, 14, 0.05),
    (4, 5_000, 7, 0.01),
)


def _pr(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    tp = float((flagged & truth).sum())
    return tp / max(float(flagged.sum()), 1.0), tp / max(float(truth.sum()), 1.0)


def measure(seed: int, users: int, days: int, bot_share: float) -> dict[str, float]:
    """Simulate one world and score the detector and its two baselines on it."""
    with tempfile.TemporaryDirectory(prefix="crossfade-bench-bots-") as tmp:
        settings = load_settings("local", data_root=Path(tmp))
        sim = settings.simulator.model_copy(
            update={"users": users, "days": days, "bot_share": bot_share}
        )
        batch = simulate(sim, seed, settings.staging_dir, settings.truth_dir)
        events = lake.read_batch_table(batch, "events").to_pandas()
        labels = pd.read_parquet(settings.truth_dir / batch.name / "labels.parquet")
    rules = safety_policy(settings).bots
    seconds, flags = median_time(lambda: detect_bots(events, rules, seed), repeats=3)
    truth = labels.set_index(C.USER_ID)[C.IS_BOT].reindex(flags[C.USER_ID]).to_numpy(dtype=bool)
    precision, recall = _pr(flags[FLAGGED].to_numpy(dtype=bool), truth)
    anomaly_vote = flags[REASONS].str.contains("anomalous").to_numpy()
    iso_p, iso_r = _pr(anomaly_vote, truth)
    rules_only = (flags["score"] - anomaly_vote.astype(int)).to_numpy() >= rules.threshold
    rule_p, rule_r = _pr(rules_only, truth)
    return {
        "events": float(len(events)),
        "accounts": float(len(flags)),
        "bots": float(truth.sum()),
        "flagged": float(flags[FLAGGED].sum()),
        "precision": precision,
        "recall": recall,
        "iso_precision": iso_p,
        "iso_recall": iso_r,
        "rules_precision": rule_p,
        "rules_recall": rule_r,
        "seconds": seconds,
        "events_per_s": len(events) / seconds,
        "max_human_anomaly": float(flags.loc[~truth, ANOMALY].max()),
    }


def main() -> None:
    """Measure every world and write the `bots` section of docs/benchmarks.md."""
    rows = []
    for seed, users, days, share in WORLDS:
        m = measure(seed, users, days, share)
        rows.append(
            f"| {seed} | {users:,} x {days} d, {share:.0%} bots | {m['events']:,.0f} "
            f"| {m['bots']:.0f} | {m['flagged']:.0f} | {m['precision']:.3f} | {m['recall']:.3f} "
            f"| {m['iso_precision']:.3f} / {m['iso_recall']:.3f} "
            f"| {m['rules_precision']:.3f} / {m['rules_recall']:.3f} "
            f"| {m['seconds']:.2f} | {m['events_per_s']:,.0f} |"
        )
        print(rows[-1], flush=True)
    body = (
        "Planted stream-farm rings of the simulator (truth used only to score). Detector at the "
        "default threshold of `configs/safety.yaml` (score >= 4 of 5 rules + 1 anomaly vote). "
        "Baselines measured in the same process on the same accounts: the IsolationForest vote "
        "alone, and the rules alone. Time: median of 3 detection runs over the whole log "
        "(features + IsolationForest + rules). Timings were taken on a machine shared with "
        "other jobs (under load).\n\n"
        "| seed | world | events | bots | flagged | precision | recall | IsolationForest P / R "
        "| rules only P / R | detect s | events/s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "Targets: precision >= 0.95, recall >= 0.90. The simulator's rings are blatant "
        "(lockstep within 20 s, every play 30.8-34.5 s, no engagement), so every signal "
        "separates them; the table shows what each part contributes, not a hard adversary."
    )
    write_section("bots", body, "python -m benchmarks.bots")


if __name__ == "__main__":
    main()
