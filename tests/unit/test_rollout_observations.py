"""The observation recorder: cheap appends, batched flushes, rows kept while the store is down."""

from __future__ import annotations

import time

from sqlalchemy import text

from crossfade.config import Settings
from deployments.rollout.observations import ObservationRecorder
from deployments.rollout.store import RolloutStore, metadata


def test_rows_survive_a_failed_flush(settings: Settings) -> None:
    store = RolloutStore.from_settings(settings)
    rec = ObservationRecorder(store, start=False, max_buffer=50)
    for i in range(40):
        rec.record_request("blue", float(i), False, False, [f"t{i}"], at=float(i))
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE rollout_observations"))
    assert rec.flush() == 0 and rec.flush_errors == 1
    for i in range(40, 60):
        rec.record_feedback("green", "skip", at=float(i))
    assert rec.dropped == 10  # bounded: the oldest rows go first
    metadata.create_all(store.engine)
    assert rec.flush() == 50
    rows = store.observations(0, 100)
    assert len(rows) == 50 and min(r["at"] for r in rows) == 10.0
    assert rec.flush() == 0


def test_background_thread_flushes_full_batches(settings: Settings) -> None:
    store = RolloutStore.from_settings(settings)
    rec = ObservationRecorder(store, flush_seconds=3600, batch_size=10)
    for i in range(25):
        rec.record_pair(0.5, 0.1, 0.0, 10.0, False, at=float(i))
    # a full batch wakes the thread long before its hour-long interval
    for _ in range(200):
        if len(store.observations(0, 100)) >= 10:
            break
        time.sleep(0.05)
    assert len(store.observations(0, 100)) >= 10
    rec.close()  # close flushes whatever the thread has not yet written
    assert len(store.observations(0, 100)) == 25
