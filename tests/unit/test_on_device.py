"""On-device reranker: leakage-free session features, exact NumPy scoring, JSON checks."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from crossfade import columns as C
from crossfade.config import SimulatorSettings
from crossfade.data.lake import read_batch_table
from crossfade.data.simulator import simulate
from crossfade.ranking.on_device import (
    ARTIST_SKIPPED,
    COMPLETED,
    FEATURE_NAMES,
    GENRE_SKIPPED,
    LABEL,
    RECENT_SKIPS,
    VERSION,
    OnDeviceModel,
    OnDeviceModelError,
    OnDeviceScorer,
    SessionState,
    session_features,
    train_on_device,
)

SIM = SimulatorSettings(
    users=200, days=3, artists=60, tracks=600, episodes=20, start_date=date(2026, 1, 5)
)
T0 = datetime(2026, 1, 5, 20, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def _synthetic_sessions(n_sessions: int = 600, seed: int = 0) -> pd.DataFrame:
    """Sessions where a skipped artist is very likely skipped again (0.9 vs 0.25 otherwise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        skipped_artists: set[str] = set()
        device = str(rng.choice(["phone", "desktop", "car"]))
        for k in range(12):
            artist = f"a{rng.integers(6)}"
            p_skip = 0.9 if artist in skipped_artists else 0.25
            skipped = bool(rng.random() < p_skip)
            if skipped:
                skipped_artists.add(artist)
            rows.append(
                {
                    C.USER_ID: f"u{s % 50}",
                    C.SESSION_ID: f"s{s}",
                    C.TS: T0 + timedelta(minutes=10 * s + 3 * k),
                    C.ITEM_ID: f"t{artist}_{rng.integers(30)}",
                    C.SKIPPED: skipped,
                    C.DEVICE: device,
                    C.ARTIST_ID: artist,
                    C.GENRE: f"g{rng.integers(4)}",
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def synthetic() -> tuple[pd.DataFrame, OnDeviceModel]:
    features = session_features(_synthetic_sessions())
    return features, train_on_device(features, seed=0)


@pytest.fixture(scope="module")
def sim_events(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("on-device-world")
    batch = simulate(SIM, 7, root / "staging", root / "truth")
    events = read_batch_table(batch, "events").to_pandas()
    items = read_batch_table(batch, "items").to_pandas()
    return events, items


def test_session_features_known_answer() -> None:
    plays = [  # item, artist, genre, skipped
        ("t1", "a1", "pop", True),
        ("t2", "a2", "rock", False),
        ("t3", "a1", "jazz", False),
        ("t2", "a3", "pop", False),
    ]
    events = pd.DataFrame(
        {
            C.USER_ID: "u1",
            C.SESSION_ID: "s1",
            C.TS: [T0 + timedelta(minutes=i) for i in range(4)],
            C.ITEM_ID: [p[0] for p in plays],
            C.ARTIST_ID: [p[1] for p in plays],
            C.GENRE: [p[2] for p in plays],
            C.SKIPPED: [p[3] for p in plays],
            C.DEVICE: "toaster",  # outside the domain: counts as "unknown"
        }
    ).iloc[::-1]  # input order must not matter
    raw = session_features(events)
    assert raw.index.equals(events.index)  # rows come back in the input order
    f = raw.sort_values(C.TS)
    assert f[RECENT_SKIPS].tolist() == [0, 1, 1, 1]
    assert f[ARTIST_SKIPPED].tolist() == [0, 0, 1, 0]
    assert f[GENRE_SKIPPED].tolist() == [0, 0, 0, 1]
    assert f[COMPLETED].tolist() == [0, 0, 0, 1]
    assert f[LABEL].tolist() == [0, 1, 1, 1]
    assert (f["server_score"] == 0).all()
    assert (f["device_unknown"] == 1).all()
    assert f["hour_sin"].iloc[0] == pytest.approx(np.sin(2 * np.pi * 20 / 24))
    # the device computes the same row from its own session memory
    state = SessionState(device="toaster", local_hour=20 + 3 / 60)
    for item, artist, genre, skipped in plays[:3]:
        state.record(item, artist, genre, skipped)
    last = f.iloc[3]
    on_device = state.features("t2", 0.0, "a3", "pop")
    assert on_device == pytest.approx({n: float(last[n]) for n in FEATURE_NAMES})


def test_recent_skips_window_is_last_five() -> None:
    n = 8
    events = pd.DataFrame(
        {
            C.USER_ID: "u",
            C.SESSION_ID: "s",
            C.TS: [T0 + timedelta(minutes=i) for i in range(n)],
            C.ITEM_ID: [f"t{i}" for i in range(n)],
            C.ARTIST_ID: [f"a{i}" for i in range(n)],
            C.GENRE: [f"g{i}" for i in range(n)],
            C.SKIPPED: [True] * 6 + [False] * 2,
            C.DEVICE: "phone",
        }
    )
    assert session_features(events)[RECENT_SKIPS].tolist() == [0, 1, 2, 3, 4, 5, 5, 4]


def test_no_leakage_from_later_plays(sim_events: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, items = sim_events
    base = session_features(events, items)
    rng = np.random.default_rng(1)
    # per session a random cut: every play after it gets a new item, skip flag and device
    ranks = events.groupby(C.SESSION_ID)[C.TS].rank(method="first")
    sizes = events.groupby(C.SESSION_ID)[C.TS].transform("size")
    cut = np.floor(rng.random(len(events)) * sizes)  # differs per row; take the session's first
    cut = pd.Series(cut, index=events.index).groupby(events[C.SESSION_ID]).transform("first")
    later = ranks > cut
    assert later.any() and (~later).any()
    altered = events.copy()
    altered.loc[later, C.SKIPPED] = ~altered.loc[later, C.SKIPPED]
    altered.loc[later, C.ITEM_ID] = rng.choice(items[C.ITEM_ID].to_numpy(), size=int(later.sum()))
    altered.loc[later, C.DEVICE] = "tv"
    again = session_features(altered, items)
    pd.testing.assert_frame_equal(base.loc[~later], again.loc[~later])
    assert not base.loc[later].equals(again.loc[later])  # the alteration did bite


def test_numpy_scorer_matches_sklearn_after_json_round_trip(
    synthetic: tuple[pd.DataFrame, OnDeviceModel],
) -> None:
    features, model = synthetic
    text = model.to_json()
    scorer = OnDeviceScorer.from_json(json.loads(json.dumps(text)))  # a string survives transport
    expected = model.predict_proba(features)
    np.testing.assert_allclose(
        scorer.score(features[list(FEATURE_NAMES)].to_numpy()), expected, rtol=1e-12, atol=1e-12
    )
    rows = features[list(FEATURE_NAMES)].head(50).to_dict("records")
    np.testing.assert_allclose(scorer.score(rows), expected[:50], rtol=1e-12, atol=1e-12)


def test_scorer_needs_neither_sklearn_nor_pandas(
    synthetic: tuple[pd.DataFrame, OnDeviceModel], tmp_path: Path
) -> None:
    _, model = synthetic
    path = tmp_path / "model.json"
    path.write_text(model.to_json())
    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None; sys.modules['pandas'] = None\n"
        "from crossfade.ranking.on_device import OnDeviceScorer, SessionState\n"
        f"s = OnDeviceScorer.from_json(open({str(path)!r}).read())\n"
        "st = SessionState(device='phone', local_hour=21)\n"
        "st.record('t1', 'a1', 'pop', True)\n"
        "print(s.rerank(['t9', 't2'], [0.0, 0.0], st, ['a1', 'a2'], ['rock', 'rock']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['t2', 't9']"


def test_learns_skipped_artist_and_reranks_it_down(
    synthetic: tuple[pd.DataFrame, OnDeviceModel],
) -> None:
    _, model = synthetic
    assert model.weights[ARTIST_SKIPPED] < -0.3
    scorer = OnDeviceScorer.from_json(model.to_json())
    session = SessionState(device="phone", local_hour=21)
    session.record("tx", "a1", "g0", skipped=True)
    session.record("ty", "a2", "g1", skipped=False)
    items = ["t_a1", "t_a2", "t_a3"]
    # the server put the skipped artist first, narrowly
    ranked = scorer.rerank(items, [0.2, 0.1, 0.0], session, ["a1", "a2", "a3"], ["g2"] * 3)
    assert ranked[-1] == "t_a1"
    # without the session signal the server order stands
    fresh = SessionState(device="phone", local_hour=21)
    assert scorer.rerank(items, [0.2, 0.1, 0.0], fresh, ["a1", "a2", "a3"], ["g2"] * 3) == items
    # beta = 0 is the server ranking
    zero = OnDeviceScorer.from_json(model.to_json().replace('"beta":1.0', '"beta":0.0'))
    assert zero.beta == 0.0
    assert zero.rerank(items, [0.2, 0.1, 0.0], session, ["a1", "a2", "a3"]) == items
    assert scorer.rerank([], [], session) == []


def test_json_is_small_and_versioned(synthetic: tuple[pd.DataFrame, OnDeviceModel]) -> None:
    _, model = synthetic
    text = model.to_json()
    assert len(text.encode()) < 4096
    doc = json.loads(text)
    assert doc["version"] == VERSION
    assert doc["format"] == "crossfade.on_device_reranker"
    assert doc["feature_names"] == list(FEATURE_NAMES)
    assert len(doc["weights"]) == len(doc["mean"]) == len(doc["scale"]) == len(FEATURE_NAMES)
    assert doc["beta"] == 1.0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: "[1, 2]", "must be an object"),
        (lambda d: {**d, "version": 99}, "unsupported on-device model version 99"),
        (lambda d: {**d, "format": "other"}, "not an on-device reranker model"),
        (lambda d: {k: v for k, v in d.items() if k != "weights"}, r"lacks keys \['weights'\]"),
        (lambda d: {**d, "weights": d["weights"][:-1]}, "weights must be a list of 15"),
        (lambda d: {**d, "scale": [0.0] * len(d["scale"])}, "scale must be positive"),
        (lambda d: {**d, "mean": ["x"] * len(d["mean"])}, "mean must hold numbers"),
        (lambda d: {**d, "intercept": "1"}, "intercept must be a finite number"),
    ],
)
def test_bad_json_gives_clear_error(
    synthetic: tuple[pd.DataFrame, OnDeviceModel], mutate: object, message: str
) -> None:
    _, model = synthetic
    doc = json.loads(model.to_json())
    bad = mutate(doc)  # type: ignore[operator]
    text = bad if isinstance(bad, str) else json.dumps(bad)
    with pytest.raises(OnDeviceModelError, match=message):
        OnDeviceScorer.from_json(text)


def test_simulator_model_beats_chance_on_a_later_day(
    sim_events: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    events, items = sim_events
    features = session_features(events, items)
    split = pd.Timestamp(SIM.start_date + timedelta(days=2), tz="UTC")
    train, test = features[features[C.TS] < split], features[features[C.TS] >= split]
    model = train_on_device(train, seed=0)
    auc = roc_auc_score(
        test[LABEL],
        OnDeviceScorer.from_json(model.to_json()).score(test[list(FEATURE_NAMES)].to_numpy()),
    )
    assert auc > 0.65  # 0.74 at the time of writing
    # a skip-heavy session predicts more skips
    assert model.weights[RECENT_SKIPS] < 0
