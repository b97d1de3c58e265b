"""Listening windows: known windows on hand-made sequences, properties on random ones, and the
collective EASE that counts them (the closed form against an explicit design matrix, and
the order in time deciding between items that plain EASE cannot tell apart)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.candidates.weights import WEIGHT
from crossfade.evaluation.baselines import EASE
from crossfade.evaluation.collective import CollectiveEASE
from crossfade.evaluation.quality import enriched
from crossfade.evaluation.sessions import has_sequences, session_windows

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def timed(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """(user, item, minute) rows as interactions with timestamps."""
    out = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, "minute"])
    out[C.TS] = T0 + pd.to_timedelta(out.pop("minute"), unit="min")
    return out.assign(**{WEIGHT: 1.0})


def windows_as_sets(frame: pd.DataFrame, size: int, stride: int) -> list[set[str]]:
    items = sorted(set(frame[C.ITEM_ID]))
    matrix = session_windows(frame, {t: i for i, t in enumerate(items)}, size, stride)
    return [{items[j] for j in matrix[r].indices} for r in range(matrix.shape[0])]


def test_windows_follow_time_not_row_order_and_cover_the_tail() -> None:
    # u's rows arrive shuffled; in time they are a b c d e f. Size 3, stride 2: starts at
    # 0, 2 and 4 (the last, shorter, window covers f). v has fewer items than a window.
    frame = timed(
        [
            *[("u", "d", 4), ("u", "a", 1), ("v", "x", 9), ("u", "f", 6), ("u", "b", 2)],
            *[("u", "e", 5), ("u", "c", 3), ("v", "y", 8)],
        ]
    )
    assert windows_as_sets(frame, 3, 2) == [
        {"a", "b", "c"},
        {"c", "d", "e"},
        {"e", "f"},
        {"x", "y"},
    ]
    assert windows_as_sets(frame, 2, 1) == [
        {"a", "b"},
        {"b", "c"},
        {"c", "d"},
        {"d", "e"},
        {"e", "f"},
        {"x", "y"},
    ]


def test_equal_timestamps_order_by_item_and_unordered_data_has_no_windows() -> None:
    tied = timed([("u", "c", 1), ("u", "a", 1), ("u", "b", 2), ("v", "a", 1), ("v", "b", 3)])
    assert windows_as_sets(tied, 2, 1) == [{"a", "c"}, {"b", "c"}, {"a", "b"}]
    flat = timed([("u", "a", 1), ("u", "b", 1), ("v", "a", 2), ("v", "b", 2)])
    no_ts = flat.drop(columns=C.TS)
    for frame in (flat, no_ts):
        assert not has_sequences(frame)
        assert session_windows(frame, {"a": 0, "b": 1}, 2, 1).shape == (0, 2)
    assert has_sequences(tied)
    # an order in time changes the stack's EASE only (ALS has no use for it)
    assert not enriched(no_ts, None) and enriched(tied, None) == {"ease": "ease_collective"}


def test_bad_window_settings_are_refused() -> None:
    frame = timed([("u", "a", 1), ("u", "b", 2)])
    with pytest.raises(ValueError, match="size and stride"):
        session_windows(frame, {"a": 0, "b": 1}, 0, 1)
    with pytest.raises(ValueError, match="stride <= size"):
        session_windows(frame, {"a": 0, "b": 1}, 1, 2)
    with pytest.raises(ValueError, match="item index"):
        session_windows(frame, {"a": 0}, 2, 1)
    with pytest.raises(ValueError, match="session_weight"):
        CollectiveEASE(session_weight=-1.0)
    with pytest.raises(ValueError, match="session_size"):
        CollectiveEASE(session_stride=0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 12), min_size=1, max_size=6),
    st.integers(1, 6),
    st.integers(0, 5),
    st.booleans(),
    st.integers(0, 10_000),
)
def test_windows_are_consecutive_runs_covering_every_interaction(
    lengths: list[int], size: int, overlap: int, ties: bool, seed: int
) -> None:
    """Reference: sort each user's rows by (time, item), start a window every `stride` rows
    and stop after the first window that reaches the last row. Users may repeat an item
    and share timestamps (`ties`)."""
    stride = max(size - overlap, 1)
    rng = np.random.default_rng(seed)
    rows, in_time = [], {}
    for u, n in enumerate(lengths):
        minutes = rng.integers(0, max(n // 2, 1), n) if ties else rng.permutation(n) * 10 + u
        items = [f"i{j:02d}" for j in rng.integers(0, 8 if ties else 30, n)]
        rows += [(f"u{u}", item, int(m)) for item, m in zip(items, minutes, strict=True)]
        in_time[f"u{u}"] = [item for _, item in sorted(zip(minutes, items, strict=True))]
    frame = timed(rows).sample(frac=1.0, random_state=seed)
    if not has_sequences(frame):  # nothing to order: no windows at all
        assert windows_as_sets(frame, size, stride) == []
        return
    expected = []
    for seq in in_time.values():
        start = 0
        while True:
            expected.append(set(seq[start : start + size]))
            if start + size >= len(seq):
                break
            start += stride
    got = windows_as_sets(frame, size, stride)
    assert got == expected
    assert set().union(*got) == set(frame[C.ITEM_ID])
    assert all(0 < len(w) <= size for w in got)


def test_text_timestamps_order_too_and_rows_without_a_time_join_no_window() -> None:
    text = timed([("u", "a", 2), ("u", "b", 1), ("u", "c", 3)])
    text[C.TS] = text[C.TS].astype(str)
    assert has_sequences(text)
    assert windows_as_sets(text, 2, 1) == [{"a", "b"}, {"a", "c"}]
    gap = timed([("u", "a", 2), ("u", "b", 1), ("u", "c", 3), ("u", "d", 4)])
    gap.loc[gap[C.ITEM_ID] == "c", C.TS] = pd.NaT
    assert windows_as_sets(gap, 2, 1) == [{"a", "b"}, {"a", "d"}]


def test_collective_ease_counts_windows_as_weighted_pseudo_rows() -> None:
    """Window rows counted `session_weight` times = those rows scaled by its square root in
    an explicit design matrix; they shape B but are never a user's input."""
    frame = timed(
        [
            *[("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "c", 1), ("u2", "d", 2)],
            *[("u3", "a", 1), ("u3", "d", 5), ("u3", "b", 7)],
        ]
    )
    model = CollectiveEASE(
        l2=2.0, rating_slope=0.0, session_weight=0.5, session_size=2, session_stride=1
    ).fit(frame)
    assert model.n_windows == 5
    x = np.zeros((3, 4))
    for user, item in zip(frame[C.USER_ID], frame[C.ITEM_ID], strict=True):
        x[int(user[1]) - 1, "abcd".index(item)] = 1.0
    windows = np.array(
        [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1], [0, 1, 0, 1]], dtype=float
    )
    design = np.vstack([x, np.sqrt(0.5) * windows])
    p = np.linalg.inv(design.T @ design + 2.0 * np.eye(4))
    b = np.eye(4) - p / np.diag(p)[np.newaxis, :]
    assert np.allclose(model.scores(np.arange(3)), x @ b)


def test_the_order_in_time_breaks_a_tie_plain_ease_cannot() -> None:
    """Every user has a, b and c; b always comes right after a, c long after (fillers in
    between). Plain EASE scores b and c alike for a listener with only a; with windows of
    two, b is a's neighbour in time and ranks first. Without windows the model is EASE."""
    rows = []
    for u in range(4):
        rows += [(f"u{u}", "a", 0), (f"u{u}", "b", 1), (f"u{u}", "c", 9)]
        rows += [(f"u{u}", f"f{u}_{n}", 2 + n) for n in range(5)]
    rows.append(("new", "a", 0))
    frame = timed(rows)
    plain = EASE(l2=1.0).fit(frame)
    row = np.array([plain.user_ids.index("new")])
    scores = plain.scores(row)[0]
    assert scores[plain.item_ids.index("b")] == pytest.approx(scores[plain.item_ids.index("c")])
    off = CollectiveEASE(l2=1.0, rating_slope=0.0).fit(frame)
    assert np.allclose(off.weights, plain.weights) and off.n_windows == 0
    model = CollectiveEASE(l2=1.0, rating_slope=0.0, session_weight=1.0, session_size=2).fit(frame)
    assert model.recommend(["new"], 1, {"new": {"a"}}) == {"new": ["b"]}
