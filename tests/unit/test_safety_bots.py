"""Bot detection on the simulator's planted stream farms (truth used only to measure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.simulator import simulate
from crossfade.safety import paths
from crossfade.safety.bot_features import FEATURES, account_features
from crossfade.safety.bots import (
    FLAGGED,
    REASONS,
    detect_bots,
    exclude_flagged,
    flagged_ids,
    latest_flags,
    write_flags,
)
from crossfade.safety.policy import SafetyPolicyError, load_safety_policy


def _world(settings: Settings, seed: int, users: int) -> tuple[pd.DataFrame, pd.Series]:
    sim = settings.simulator.model_copy(update={"users": users, "bot_share": 0.04})
    batch = simulate(sim, seed, settings.staging_dir, settings.truth_dir)
    events = lake.read_batch_table(batch, "events").to_pandas()
    labels = pd.read_parquet(settings.truth_dir / batch.name / "labels.parquet")
    return events, labels.set_index(C.USER_ID)[C.IS_BOT]


@pytest.mark.parametrize(("seed", "users"), [(1, 200), (7, 400)])
def test_planted_bots_are_found_with_precision_and_recall(
    settings: Settings, seed: int, users: int
) -> None:
    events, is_bot = _world(settings, seed, users)
    flags = detect_bots(events, paths.safety_policy(settings).bots, settings.seed)
    truth = is_bot.reindex(flags[C.USER_ID]).to_numpy(dtype=bool)
    flagged = flags[FLAGGED].to_numpy(dtype=bool)
    assert truth.sum() >= 4
    precision = (flagged & truth).sum() / max(flagged.sum(), 1)
    recall = (flagged & truth).sum() / truth.sum()
    assert precision >= 0.95 and recall >= 0.90, (precision, recall)
    reasons = flags.loc[flags[FLAGGED], REASONS]
    assert reasons.str.contains("lockstep").all() and reasons.str.contains("30 s").all()


def test_flagged_accounts_leave_training_signals(settings: Settings) -> None:
    events, _ = _world(settings, 3, 200)
    flags = detect_bots(events, paths.safety_policy(settings).bots, settings.seed)
    ids = flagged_ids(flags)
    clean = exclude_flagged(events, flags)
    assert ids and not set(clean[C.USER_ID]) & ids
    assert len(clean) + events[C.USER_ID].isin(ids).sum() == len(events)
    assert exclude_flagged(events, frozenset()) is events
    path = write_flags(flags, paths.bot_flags_dir(settings))
    stored = latest_flags(path.parent)
    assert stored is not None and flagged_ids(stored) == ids


def test_a_lone_human_heavy_listener_is_not_flagged(settings: Settings) -> None:
    rng = np.random.default_rng(0)
    n = 400
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.sort(rng.integers(0, 7 * 86_400, n)), unit="s"
    )
    events = pd.DataFrame(
        {
            C.USER_ID: "u-human",
            C.ITEM_ID: rng.choice([f"i{k}" for k in range(3)], n),  # a narrow, looping taste
            C.TS: ts,
            C.MS_PLAYED: rng.integers(31_000, 33_000, n),  # short tracks
            C.SAVED: False,
        }
    )
    flags = detect_bots(events, paths.safety_policy(settings).bots, settings.seed)
    # Alone it has no lockstep partner, so at most the behavioural rules fire.
    assert "lockstep" not in flags[REASONS].iloc[0]


@hsettings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),
            st.sampled_from(["x", "y", "z"]),
            st.integers(0, 3 * 86_400),
            st.integers(0, 400_000),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_features_are_bounded_for_any_log(rows: list[tuple[str, str, int, int]]) -> None:
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.TS, C.MS_PLAYED])
    frame[C.TS] = pd.to_datetime(frame[C.TS], unit="s", utc=True)
    features = account_features(frame)
    assert set(features.index) == set(frame[C.USER_ID])
    shares = features[[f for f in FEATURES if f != "plays"]].to_numpy()
    assert np.isfinite(shares).all() and (shares >= -1e-9).all() and (shares <= 1 + 1e-9).all()
    assert features["plays"].sum() == len(frame)


def test_policy_file_is_strict(tmp_path: Path, settings: Settings) -> None:
    text = (settings.config_path / "safety.yaml").read_text()
    bad = tmp_path / "safety.yaml"
    bad.write_text(text.replace("lockstep_share:", "lockstep_shar:"))
    with pytest.raises(SafetyPolicyError, match="lockstep"):
        load_safety_policy(bad)


def test_bot_features_name_missing_columns() -> None:
    with pytest.raises(ValueError, match="ms_played"):
        account_features(pd.DataFrame({C.USER_ID: ["a"], C.ITEM_ID: ["x"], C.TS: [0]}))
