"""The World: catalogue, listeners, latent taste and bot rings, built from settings and a seed.

`build_world(sim, seed)` is deterministic: every part draws from its own child generator of
`numpy.random.SeedSequence(seed)`, so adding a draw to one part does not shift the others.
`World.save` writes the ground truth (kept apart from the observable logs) and `World.load`
reads it back, so an online experiment can ask the same listeners to respond to new rankings.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from crossfade import columns as C
from crossfade.config import SimulatorSettings
from crossfade.data.lake import atomic_write_bytes, atomic_write_parquet, atomic_write_text
from crossfade.data.simulator import ids
from crossfade.data.simulator.catalogue import Catalogue, build_catalogue
from crossfade.data.simulator.latent import Latent, build_latent
from crossfade.data.simulator.listeners import (
    Listeners,
    Onboarding,
    Rings,
    build_listeners,
    form_rings,
    pick_onboarding,
)

TRUTH_VERSION = 1
WORLD_FILE = "world.json"
LABELS_FILE = "labels.parquet"
ITEM_TRUTH_FILE = "items.parquet"
FACTORS_FILE = "factors.npz"
# Independent random streams, one per part of the world (and per simulated day).
STREAM_CATALOGUE, STREAM_LISTENERS, STREAM_LATENT, STREAM_ONBOARDING, STREAM_RINGS = range(5)
STREAM_TAG, STREAM_ROTATION, STREAM_DAYS = 5, 6, 100


def child_rng(seed: int, *key: int) -> np.random.Generator:
    """A generator derived from the seed and a stream key (reproducible, independent)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


class WorldFileError(ValueError):
    """A truth folder is missing or unreadable; the message names the folder and the fix."""


def _save_arrays(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{f.name: getattr(obj, f.name) for f in fields(obj)})
    atomic_write_bytes(path, buffer.getvalue())


def _load_arrays(cls: type[Any], path: Path) -> Any:
    with np.load(path, allow_pickle=False) as data:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass
class World:
    """Everything that is true about the simulated world (most of it never observable)."""

    sim: SimulatorSettings
    seed: int
    tag: str  # short seeded hex used in event, session and impression ids
    catalogue: Catalogue
    listeners: Listeners
    latent: Latent
    onboarding: Onboarding
    rings: Rings
    _index: dict[str, dict[str, int]] = field(default_factory=dict, repr=False, compare=False)

    _PARTS: ClassVar[dict[str, type[Any]]] = {
        "catalogue": Catalogue,
        "listeners": Listeners,
        "onboarding": Onboarding,
        "rings": Rings,
    }

    # --- time --------------------------------------------------------------------------
    @property
    def start(self) -> date:
        """First day of the window."""
        return self.sim.start_date

    def day_start_us(self, day: int) -> int:
        """UTC midnight of window day `day`, in microseconds since the epoch."""
        d = self.start + timedelta(days=day)
        return (d - date(1970, 1, 1)).days * 86_400_000_000

    # --- lookups -----------------------------------------------------------------------
    def user_index(self, user_ids: list[str] | np.ndarray) -> np.ndarray:
        """Row indices of listener ids (KeyError naming the unknown ids)."""
        return _lookup(self._index, self.listeners.user_ids, user_ids, "listener")

    def item_index(self, item_ids: list[str] | np.ndarray) -> np.ndarray:
        """Row indices of item ids (KeyError naming the unknown ids)."""
        return _lookup(self._index, self.catalogue.item_ids, item_ids, "item")

    def true_affinity(self, user_id: str, item_ids: list[str] | np.ndarray) -> np.ndarray:
        """The true (hidden) affinity of one listener for each item: the quantity every
        recommender is trying to estimate; higher means more liked (mean ~0, sd ~1)."""
        u = self.user_index([user_id])
        items = self.item_index(item_ids)
        return self.latent.affinity_pairs(np.repeat(u, len(items)), items)

    def respond(
        self,
        user_id: str,
        ranked_item_ids: list[str],
        ts: datetime,
        rng: np.random.Generator,
        context: str = "home_shelf",
    ) -> pa.Table:
        """Play a ranked list to a listener and return the resulting events (events contract).

        The listener walks down the list; see `crossfade.data.simulator.respond`.
        """
        from crossfade.data.simulator.respond import respond

        return respond(self, user_id, ranked_item_ids, ts, rng, context=context)

    # --- persistence -------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write the ground truth to `folder`: world.json (settings, seed), factors.npz
        (user/item/artist factors, item bias, centroids), labels.parquet (is_bot, bot_ring),
        items.parquet (item bias and popularity), and the arrays that rebuild the World."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "version": TRUTH_VERSION,
            "seed": self.seed,
            "tag": self.tag,
            "simulator": self.sim.model_dump(mode="json"),
            "files": [WORLD_FILE, FACTORS_FILE, LABELS_FILE, ITEM_TRUTH_FILE]
            + [f"{name}.npz" for name in self._PARTS],
        }
        for name in self._PARTS:
            _save_arrays(getattr(self, name), folder / f"{name}.npz")
        _save_arrays(self.latent, folder / FACTORS_FILE)
        lis, cat = self.listeners, self.catalogue
        ring = pa.array(lis.bot_ring, pa.int32(), mask=lis.bot_ring < 0)
        labels = pa.table(
            {
                C.USER_ID: pa.array(lis.user_ids, pa.string()),
                C.IS_BOT: pa.array(lis.is_bot),
                C.BOT_RING: ring,
                "utc_offset_minutes": pa.array(lis.utc_offset.astype(np.int32)),
                "explicit_filter": pa.array(lis.explicit_filter),
                "podcast_listener": pa.array(lis.podcast_listener),
                "activity": pa.array(lis.activity),
            }
        )
        atomic_write_parquet(labels, folder / LABELS_FILE)
        items = pa.table(
            {
                C.ITEM_ID: pa.array(cat.item_ids, pa.string()),
                "item_bias": pa.array(self.latent.item_bias),
                "popularity": pa.array(cat.item_popularity),
                "evergreen": pa.array(cat.item_evergreen),
            }
        )
        atomic_write_parquet(items, folder / ITEM_TRUTH_FILE)
        atomic_write_text(folder / WORLD_FILE, json.dumps(meta, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: Path) -> World:
        """Read a World saved by `save` (e.g. `World.load(truth_dir / batch_id)`)."""
        meta_path = folder / WORLD_FILE
        if not meta_path.is_file():
            raise WorldFileError(
                f"{folder} holds no simulator truth ({WORLD_FILE} is missing); pass the "
                "truth folder of a simulated batch, i.e. <truth_dir>/<batch_id>"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != TRUTH_VERSION:
            raise WorldFileError(
                f"{folder} was written by truth format {meta.get('version')}, this code reads "
                f"{TRUTH_VERSION}; re-simulate the batch"
            )
        parts = {
            name: _load_arrays(kind, folder / f"{name}.npz") for name, kind in cls._PARTS.items()
        }
        return cls(
            sim=SimulatorSettings(**meta["simulator"]),
            seed=int(meta["seed"]),
            tag=str(meta["tag"]),
            latent=_load_arrays(Latent, folder / FACTORS_FILE),
            **parts,
        )

    def summary(self) -> dict[str, Any]:
        """Small JSON-able facts about the world (counts), for batch details and logs."""
        lis, cat = self.listeners, self.catalogue
        return {
            "users": lis.n,
            "bots": int(lis.is_bot.sum()),
            "rings": self.rings.n,
            "new_users": int(((lis.signup_day >= 0) & ~lis.is_bot).sum()),
            "artists": len(cat.artist_ids),
            "tracks": cat.n_tracks,
            "episodes": int(cat.item_is_episode.sum()),
        }


def _lookup(
    cache: dict[str, dict[str, int]],
    known: np.ndarray,
    wanted: list[str] | np.ndarray,
    what: str,
) -> np.ndarray:
    if what not in cache:
        cache[what] = {key: i for i, key in enumerate(known.tolist())}
    index = cache[what]
    missing = [w for w in wanted if w not in index]
    if missing:
        sample = ", ".join(map(str, missing[:5]))
        raise KeyError(f"unknown {what} id(s): {sample}; ids must come from this world's tables")
    return np.array([index[w] for w in wanted], dtype=np.int64)


def build_world(sim: SimulatorSettings, seed: int) -> World:
    """Build the whole world for a seed: same settings and seed, same world, bit for bit."""
    cat = build_catalogue(sim, child_rng(seed, STREAM_CATALOGUE))
    lis = build_listeners(sim, child_rng(seed, STREAM_LISTENERS))
    lat = build_latent(sim, cat, lis, child_rng(seed, STREAM_LATENT))
    onboarding = pick_onboarding(
        lis, cat, lat.user_factors, lat.artist_factors, child_rng(seed, STREAM_ONBOARDING)
    )
    rings = form_rings(lis, cat, child_rng(seed, STREAM_RINGS))
    tag = str(ids.hex_ids(child_rng(seed, STREAM_TAG), 1, "", 6)[0])
    return World(
        sim=sim,
        seed=seed,
        tag=tag,
        catalogue=cat,
        listeners=lis,
        latent=lat,
        onboarding=onboarding,
        rings=rings,
    )
