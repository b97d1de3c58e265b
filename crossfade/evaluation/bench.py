"""`crossfade bench quality`: the full stack and the baselines on any interactions dataset."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from crossfade import columns as C
from crossfade.candidates.weights import WEIGHT
from crossfade.evaluation.quality import run_quality
from crossfade.evaluation.splits import ratio_split

PROTOCOLS = ("random-per-user", "temporal")


def load_interactions(fmt: str, path: Path) -> pd.DataFrame:
    """Import a dataset through the contracts; every interaction counts as a positive."""
    from crossfade.data.importers import import_path
    from crossfade.data.lake import read_batch_table

    with tempfile.TemporaryDirectory(prefix="crossfade-bench-") as tmp:
        batch = import_path(fmt, path, Path(tmp))
        events = read_batch_table(batch, "events").to_pandas()
    return events[[C.USER_ID, C.ITEM_ID, C.TS]].assign(**{WEIGHT: 1.0}).reset_index(drop=True)


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
    """Metrics per model (most popular, item kNN, ALS, EASE, full stack) on one dataset."""
    if abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) <= 0:
        raise ValueError(f"--ratios must be two positive shares summing to 1, got {ratios}")
    train, test = split(load_interactions(fmt, path), protocol, ratios[1], seed)
    return run_quality(train, test, k=k, seed=seed)
