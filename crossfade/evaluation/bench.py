"""`crossfade bench quality`: the full stack and the baselines on any interactions dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crossfade import columns as C
from crossfade.evaluation.datasets import load_dataset
from crossfade.evaluation.quality import run_quality
from crossfade.evaluation.splits import ratio_split

PROTOCOLS = ("random-per-user", "temporal")


def load_interactions(fmt: str, path: Path) -> pd.DataFrame:
    """Import a dataset through the contracts; every interaction counts as a positive
    (weight 1.0), its rating (NaN when the source has none) kept as a training value."""
    return load_dataset(fmt, path, side=False).events


def split(
    events: pd.DataFrame, protocol: str, test_share: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random split, or a global temporal cut at the (1 - test_share) time quantile."""
    if protocol == "random-per-user":
        s = ratio_split(events, test_share, seed)
        return s.train.reset_index(drop=True), s.test.reset_index(drop=True)
    if protocol == "temporal":
        cut = events[C.TS].quantile(1 - test_share)
        return (
            events[events[C.TS] < cut].reset_index(drop=True),
            events[events[C.TS] >= cut].reset_index(drop=True),
        )
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def bench_quality(
    fmt: str, path: Path, protocol: str, ratios: tuple[float, float], seed: int, k: int
) -> dict[str, dict[str, float]]:
    """Metrics per model (most popular, item kNN, ALS, EASE, full stack, and the stack's own
    ALS / EASE wherever they differ from those baselines: ratings, side information or an
    order in time) on one dataset."""
    if abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) <= 0:
        raise ValueError(f"--ratios must be two positive shares summing to 1, got {ratios}")
    data = load_dataset(fmt, path)
    train, test = split(data.events, protocol, ratios[1], seed)
    return run_quality(train, test, k=k, seed=seed, side=data.side)
