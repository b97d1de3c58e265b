"""How much of the ML-100K result is the split: the same full stack and baselines on other
draws of the per-user random 80/20 split.

The quality target names one draw (seed 42), and its gap to the STACK-NOTES anchors is about
the spread between draws (docs/ranking.md). This benchmark repeats `benchmarks.quality`'s
procedure, unchanged, on other seeds and reports per seed the full stack, the best plain
baseline and their paired difference, then the mean with a t interval over seeds. Every
setting of the stack was chosen on inner splits of the seed-42 TRAINING data, which holds
about 80 % of any other seed's test rows: a mild link (a handful of hyperparameters), stated
beside the numbers.

Run: `python -m benchmarks.quality_seeds [--seeds 43,44,45,46,47]` (about 100 s per seed on
the reference machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's ALS wants BLAS single-threaded

from scipy import stats

from benchmarks.quality import TARGET_NDCG, K
from benchmarks.report import write_section
from crossfade.evaluation.protocol import ml100k_side_info, ml100k_split
from crossfade.evaluation.quality import MODELS, run_quality_details

COMMAND = "python -m benchmarks.quality_seeds"
DEFAULT_SEEDS = (43, 44, 45, 46, 47)


def one_seed(seed: int) -> dict[str, float]:
    """NDCG@10 of every model on the split drawn with `seed` (the stack seeded alike)."""
    train, test = ml100k_split(seed)
    result = run_quality_details(train, test, K, seed, side=ml100k_side_info())
    return {name: m[f"ndcg@{K}"] for name, m in result.metrics.items()}


def interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Two-sided t interval of the mean of `values` (the mean twice with one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values)
    return mean - half / len(values) ** 0.5, mean + half / len(values) ** 0.5


def main() -> None:
    """Run every seed, print one JSON line each, write section `quality_seeds`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)))
    seeds = [int(s) for s in parser.parse_args().seeds.split(",") if s.strip()]
    if not seeds:
        parser.error("--seeds needs at least one seed, e.g. --seeds 43,44")
    rows, stacks, gains = [], [], []
    start = time.perf_counter()
    for seed in seeds:
        ndcg = one_seed(seed)
        best = max(MODELS, key=lambda m: ndcg[m])
        stacks.append(ndcg["full_stack"])
        gains.append(ndcg["full_stack"] - ndcg[best])
        print(json.dumps({"seed": seed, **ndcg}), flush=True)
        rows.append(
            f"| {seed} | {ndcg['full_stack']:.4f} | {best} {ndcg[best]:.4f} | "
            f"{gains[-1]:+.4f} | " + " | ".join(f"{ndcg[m]:.4f}" for m in MODELS) + " |"
        )
    elapsed = time.perf_counter() - start
    low, high = interval(stacks)
    gain_low, gain_high = interval(gains)
    header = (
        "| seed | full stack | best baseline | stack - best | "
        + " | ".join(MODELS)
        + " |\n|"
        + "---|" * (4 + len(MODELS))
    )
    body = (
        header
        + "\n"
        + "\n".join(rows)
        + f"\n\nOver {len(seeds)} seeds: full stack mean {statistics.fmean(stacks):.4f} (95 % t"
        f" interval {low:.4f} to {high:.4f}), {sum(s >= TARGET_NDCG for s in stacks)} of"
        f" {len(seeds)} at or above {TARGET_NDCG}; paired gain over the best plain baseline of"
        f" the same seed {statistics.fmean(gains):+.4f} ({gain_low:+.4f} to {gain_high:+.4f}),"
        f" positive on {sum(g > 0 for g in gains)} of {len(seeds)}. The procedure is"
        " `benchmarks.quality`'s, unchanged (section `quality` has seed 42, the one the target"
        " names); only the split's seed (and the stack's, which seeds its inner splits) moves."
        " Caveat: the stack's settings were chosen on inner splits of the seed-42 training"
        " data, which holds about 80 % of another seed's test rows. Whole run"
        f" {elapsed:.0f} s."
    )
    write_section("quality_seeds", body, COMMAND)


if __name__ == "__main__":
    main()
