"""How many days of slates the ranker learns from, and how they split in time."""

from __future__ import annotations

import pandas as pd
import pytest

from crossfade import columns as C
from flows.train_ranker import log_days, temporal_split


@pytest.mark.parametrize(("history", "days"), [(4, 4), (7, 4), (8, 4), (14, 7), (16, 8), (90, 8)])
def test_log_days_is_half_the_history_between_four_and_eight(history: int, days: int) -> None:
    assert log_days(history) == days


def test_temporal_split_trains_on_all_but_the_last_two_days() -> None:
    cutoff = pd.Timestamp("2026-01-01", tz="UTC")
    log = pd.DataFrame({C.TS: [cutoff + pd.Timedelta(hours=12 + 24 * d) for d in range(7)]})
    train, valid, test = temporal_split(log, cutoff, 7)
    assert len(train) == 5 and len(valid) == 1 and len(test) == 1
    assert train[C.TS].max() < valid[C.TS].min() < test[C.TS].min()
