"""Content embeddings and content profiles: properties on a simulated catalogue, known answers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfade import columns as C
from crossfade.candidates.content import (
    BLOCK_WEIGHTS,
    SAVE_WEIGHT,
    SKIP_WEIGHT,
    ContentModel,
    ContentModelError,
    artist_vectors,
    content_profiles,
)
from crossfade.config import SimulatorSettings
from crossfade.data.lake import read_batch_table
from crossfade.data.simulator import World, simulate

SIM = SimulatorSettings(
    users=300, days=7, artists=60, tracks=600, episodes=40, start_date=date(2026, 1, 5)
)
NOW = datetime(2026, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("content-world")
    batch = simulate(SIM, 5, root / "staging", root / "truth")
    items = read_batch_table(batch, "items").to_pandas()
    events = read_batch_table(batch, "events").to_pandas()
    model = ContentModel.fit(items, dim=32, seed=3)
    return {
        "items": items,
        "events": events,
        "model": model,
        "vectors": model.transform(items),
        "truth": World.load(root / "truth" / batch.name),
    }


def _mean_similarity(vectors: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Mean cosine of pairs where `same` holds vs all distinct pairs."""
    sims = vectors @ vectors.T
    off = ~np.eye(len(vectors), dtype=bool)
    return float(sims[same & off].mean()), float(sims[off].mean())


def test_embeddings_are_normalised_and_deterministic(world: dict) -> None:
    vectors: np.ndarray = world["vectors"]
    model: ContentModel = world["model"]
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(world["items"]), model.output_dim)
    assert model.text_dim == 32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = ContentModel.fit(world["items"], dim=32, seed=3).transform(world["items"])
    np.testing.assert_array_equal(vectors, again)
    assert sum(BLOCK_WEIGHTS.values()) == pytest.approx(1.0)


def test_same_artist_and_same_genre_are_closer_than_random(world: dict) -> None:
    items: pd.DataFrame = world["items"]
    vectors: np.ndarray = world["vectors"]
    artist = items[C.ARTIST_ID].to_numpy()
    genre = items[C.GENRE].to_numpy()
    same_artist = artist[:, None] == artist[None, :]
    same_genre = (genre[:, None] == genre[None, :]) & ~same_artist
    artist_sim, overall = _mean_similarity(vectors, same_artist)
    genre_sim, _ = _mean_similarity(vectors, same_genre)
    assert artist_sim > genre_sim > overall + 0.2


def test_transform_embeds_items_never_seen_at_fit(world: dict) -> None:
    items: pd.DataFrame = world["items"]
    artists = sorted(items[C.ARTIST_ID].unique())
    held_out = set(artists[::5])
    seen = items[~items[C.ARTIST_ID].isin(held_out)]
    unseen = items[items[C.ARTIST_ID].isin(held_out)].reset_index(drop=True)
    model = ContentModel.fit(seen, dim=16, seed=0)
    vectors = model.transform(unseen)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    artist = unseen[C.ARTIST_ID].to_numpy()
    same = artist[:, None] == artist[None, :]
    same_artist, _ = _mean_similarity(vectors, same)
    other_artist, _ = _mean_similarity(vectors, ~same)
    assert same_artist > other_artist + 0.2
    # words, an artist and a genre nobody has seen, no audio features at all
    odd = pd.DataFrame(
        {
            C.ARTIST_ID: ["a-brand-new"],
            C.GENRE: ["not-a-genre"],
            C.LANGUAGE: ["xx"],
            C.CONTENT_TYPE: ["track"],
            C.TITLE: ["zyzzyva quux"],
            C.TAGS: [None],
        }
    )
    out = model.transform(odd)
    assert out.shape == (1, model.output_dim)
    assert np.isfinite(out).all()
    assert np.linalg.norm(out) == pytest.approx(1.0, abs=1e-5)


def test_catalogue_without_audio_or_text(world: dict) -> None:
    items: pd.DataFrame = world["items"].copy()
    for name in C.AUDIO_FEATURES:
        items[name] = np.nan  # an imported catalogue has no audio features
    model = ContentModel.fit(items, dim=8, seed=0)
    np.testing.assert_array_equal(model.audio_mean, 0.0)
    vectors = model.transform(items)
    assert np.isfinite(vectors).all()
    bare = items.assign(**{C.TITLE: "", C.TAGS: None, C.GENRE: "unknown"}).head(3)
    tiny = ContentModel.fit(bare, dim=8, seed=0)
    assert tiny.text_dim <= 1
    assert np.isfinite(tiny.transform(bare)).all()


def test_save_load_round_trip(world: dict, tmp_path: Path) -> None:
    model: ContentModel = world["model"]
    path = model.save(tmp_path / "content")
    assert path.is_file()
    loaded = ContentModel.load(tmp_path / "content")
    np.testing.assert_array_equal(loaded.transform(world["items"]), world["vectors"])
    with pytest.raises(ContentModelError, match="train one"):
        ContentModel.load(tmp_path / "missing")


def test_bad_input_is_named() -> None:
    with pytest.raises(ContentModelError, match="lacks column"):
        ContentModel.fit(pd.DataFrame({C.TITLE: ["x"]}), dim=4, seed=0)
    with pytest.raises(ContentModelError, match="one vector per id"):
        content_profiles(_events([("u", "a", 1.0)]), ["a", "b"], np.eye(3), NOW, 7.0)


def test_artist_vectors_are_stable_and_spread() -> None:
    ids = np.array([f"a{i}" for i in range(200)])
    first = artist_vectors(ids, seed=1)
    np.testing.assert_array_equal(first, artist_vectors(ids, seed=1))
    assert not np.allclose(first, artist_vectors(ids, seed=2))
    sims = first @ first.T
    assert abs(sims[~np.eye(200, dtype=bool)].mean()) < 0.05


# --- content profiles ---------------------------------------------------------------------


def _events(rows: list[tuple[str, str, float]], **flags: list[bool]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            C.USER_ID: [r[0] for r in rows],
            C.ITEM_ID: [r[1] for r in rows],
            C.TS: [NOW - timedelta(days=r[2]) for r in rows],
        }
    )
    for name, values in flags.items():
        frame[name] = values
    return frame


def test_profiles_favour_recent_plays_known_answer() -> None:
    vectors = np.eye(3, dtype=np.float32)
    events = _events([("u2", "b", 1.0), ("u1", "a", 14.0), ("u1", "b", 0.0), ("u1", "c", -1.0)])
    users, profiles = content_profiles(events, ["a", "b", "c"], vectors, NOW, half_life_days=7.0)
    assert users == ["u1", "u2"]  # sorted; the future play of "c" is ignored
    expected = np.array([0.25, 1.0, 0.0])
    np.testing.assert_allclose(profiles[0], expected / np.linalg.norm(expected), rtol=1e-6)
    np.testing.assert_allclose(profiles[1], [0.0, 1.0, 0.0])
    assert profiles.dtype == np.float32


def test_profiles_weigh_skips_down_and_saves_up() -> None:
    vectors = np.eye(3, dtype=np.float32)
    events = _events(
        [("u", "a", 0.0), ("u", "b", 0.0), ("u", "c", 0.0), ("u", "zzz", 0.0)],
        skipped=[True, False, False, False],
        saved=[False, False, True, False],
    )
    _, profiles = content_profiles(events, ["a", "b", "c"], vectors, NOW, 7.0)
    expected = np.array([SKIP_WEIGHT, 1.0, SAVE_WEIGHT])
    np.testing.assert_allclose(profiles[0], expected / np.linalg.norm(expected), rtol=1e-6)
    empty_users, empty = content_profiles(events.iloc[:0], ["a"], vectors[:1], NOW, 7.0)
    assert empty_users == [] and empty.shape == (0, 3)


def test_profiles_point_at_what_listeners_truly_like(world: dict) -> None:
    items: pd.DataFrame = world["items"]
    vectors: np.ndarray = world["vectors"]
    truth: World = world["truth"]
    users, profiles = content_profiles(
        world["events"], items[C.ITEM_ID].tolist(), vectors, NOW, half_life_days=7.0
    )
    assert len(users) > 100
    scores = profiles[:80] @ vectors.T
    item_ids = items[C.ITEM_ID].to_numpy()
    top, overall = [], []
    for row, user in enumerate(users[:80]):
        affinity = truth.true_affinity(user, item_ids)
        top.append(affinity[np.argsort(-scores[row])[:20]].mean())
        overall.append(affinity.mean())
    assert np.mean(top) > np.mean(overall) + 0.5
