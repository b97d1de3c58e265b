"""The online store gets each entity's newest snapshot in the TTL window, as Feast would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfade.features import catalog
from feature_repo.online_write import latest_snapshots

END = datetime(2026, 3, 15, tzinfo=UTC)
TTL = timedelta(days=3)

snapshots = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3", "u4"]),
        st.integers(-8, 2),  # day offset from END: some too old, some after END
        st.integers(0, 3),  # created, hours after the snapshot
        st.integers(0, 1_000),  # a feature value
    ),
    max_size=40,
)


def _frame(rows: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            catalog.EVENT_TIMESTAMP: [END + timedelta(days=r[1]) for r in rows],
            catalog.CREATED: [END + timedelta(days=r[1], hours=r[2]) for r in rows],
            "value": [r[3] for r in rows],
        }
    )


@settings(max_examples=60, deadline=None)
@given(rows=snapshots)
def test_each_entity_gets_its_newest_snapshot_within_the_ttl(
    rows: list[tuple[str, int, int, int]],
) -> None:
    got = latest_snapshots(_frame(rows), ["user_id"], END, TTL)
    assert got["user_id"].is_unique
    in_window = [r for r in rows if -TTL.days < r[1] <= 0]
    assert set(got["user_id"]) == {r[0] for r in in_window}
    for user, ts, created in zip(
        got["user_id"], got[catalog.EVENT_TIMESTAMP], got[catalog.CREATED], strict=True
    ):
        mine = [r for r in in_window if r[0] == user]
        newest = max((r[1], r[2]) for r in mine)
        assert (ts, created) == (
            END + timedelta(days=newest[0]),
            END + timedelta(days=newest[0], hours=newest[1]),
        )


def test_naive_end_is_read_as_utc() -> None:
    frame = _frame([("u1", 0, 0, 7), ("u1", -1, 0, 3)])
    got = latest_snapshots(frame, ["user_id"], END.replace(tzinfo=None), TTL)
    assert got["value"].tolist() == [7]
