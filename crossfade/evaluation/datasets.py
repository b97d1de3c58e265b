"""Datasets for offline quality: interactions imported through the contracts, plus what the
contracts leave out (each interaction's rating, the side files' item and user facts).

Every interaction is a positive (weight 1.0) whatever its rating: the rating is kept as a
column only so that models may use it as a training value.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from crossfade import columns as C
from crossfade.candidates.weights import WEIGHT
from crossfade.data.importers.extras import RatingCollector, read_extras
from crossfade.evaluation.side_info import SideInfo, side_info

COLUMNS: tuple[str, ...] = (C.USER_ID, C.ITEM_ID, C.TS, WEIGHT, C.RATING)


@dataclass(frozen=True)
class Dataset:
    """Interactions (user_id, item_id, ts, weight 1.0, rating: NaN when unknown) in the
    staged batch's order, and the one-hot side information of its users and items."""

    events: pd.DataFrame
    side: SideInfo = field(default_factory=SideInfo)


def load_dataset(fmt: str, path: Path, *, side: bool = True) -> Dataset:
    """Import `path` (format `fmt`) into a temporary staging area and read back its events,
    joined with the source's ratings (collected in the same pass) and (when `side`) its side
    information. A source without ratings or side files gives NaN ratings and empty side
    information."""
    from crossfade.data.importers import import_path
    from crossfade.data.lake import read_batch_table

    collector = RatingCollector()
    with tempfile.TemporaryDirectory(prefix="crossfade-dataset-") as tmp:
        batch = import_path(fmt, path, Path(tmp), on_chunk=collector)
        events = read_batch_table(batch, "events").to_pandas()
    # the side tables (small) are read again; the interactions are not
    extras = replace(read_extras(fmt, path, ratings=False), ratings=collector.ratings())
    out = events[[C.USER_ID, C.ITEM_ID, C.TS]].reset_index(drop=True)
    ratings = extras.event_ratings(events[C.EVENT_ID].reset_index(drop=True))
    out = out.assign(**{WEIGHT: 1.0, C.RATING: ratings})
    return Dataset(out, side_info(extras) if side else SideInfo())


def side_info_of(fmt: str, path: Path) -> SideInfo:
    """Only the side information of the dataset at `path` (interactions are not read)."""
    return side_info(read_extras(fmt, path, ratings=False))
