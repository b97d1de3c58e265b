"""What a staged batch leaves out but offline evaluation can use.

The contracts have no column for an interaction's explicit rating (staging turns it into
skip and save flags) nor for a listener's gender or occupation. `read_extras` reads them
from the same files through the same format module as `import_path`, keyed the way staging
names ids (`<prefix>-e<content hash>`, `<prefix>-u<user>`, `<prefix>-i<item>`), so they join
onto a staged batch of the same files. Nothing here is ever written to the lake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crossfade import columns as C
from crossfade.data.importers import common as K
from crossfade.data.importers import open_path, reading


@dataclass(frozen=True)
class Extras:
    """Ratings and side facts of one dataset, keyed like its staged batch.

    `ratings` holds each interaction's explicit rating indexed by its content hash (the
    part of the staged event id after `<prefix>-e`; a repeated interaction keeps its first)
    (empty when the source has no ratings, or when they were not asked for); `users` and
    `items` are the source's side tables indexed by staged user / item id (empty when the
    source has no side files), with whatever columns the format knows (users: age_bucket,
    country, gender, occupation; items: title, genre, tags, release_date).
    """

    prefix: str
    ratings: pd.Series = field(default_factory=lambda: pd.Series(dtype=np.float64))
    users: pd.DataFrame = field(default_factory=pd.DataFrame)
    items: pd.DataFrame = field(default_factory=pd.DataFrame)

    def event_ratings(self, event_ids: pd.Series) -> np.ndarray:
        """The rating of each staged event id (NaN when unknown: no rating, other source)."""
        ids = event_ids.astype(str)
        head = self.prefix + K.EVENT_KEY
        ours = ids.str.startswith(head)
        hashes = ids.str.slice(len(head)).where(ours)
        return hashes.map(self.ratings).to_numpy(dtype=np.float64)


def _keyed(table: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """A side table re-indexed from raw source ids to staged ids."""
    if table.empty:
        return pd.DataFrame()
    out = table.copy()
    out.index = pd.Index(prefix + table.index.astype(str), name=None)
    return out


class RatingCollector:
    """Keeps each chunk's explicit ratings by content hash: pass it as
    `import_path(on_chunk=...)` to read ratings in the same pass that stages the batch."""

    def __init__(self) -> None:
        self.parts: list[pd.Series] = []

    def __call__(self, chunk: pd.DataFrame) -> None:
        """Keep this chunk's ratings (nothing when the source has none)."""
        if K.RATING in chunk.columns:
            values = chunk[K.RATING].to_numpy(dtype=np.float64)
            self.parts.append(pd.Series(values, index=pd.Index(K.event_hashes(chunk))))

    def ratings(self) -> pd.Series:
        """Every rating seen so far, indexed by content hash (empty: none)."""
        rated = pd.concat(self.parts) if self.parts else pd.Series(dtype=np.float64)
        return rated[~rated.index.duplicated(keep="first")].rename(C.RATING)


def read_extras(
    fmt: str,
    path: Path,
    *,
    ratings: bool = True,
    chunk_rows: int = 1_000_000,
    id_prefix: str | None = None,
) -> Extras:
    """Ratings (when `ratings` and the source has them) and side tables of the dataset at
    `path`, read through format `fmt`; `id_prefix` as given to `import_path`. A source
    without ratings is read no further than its first chunk. Raises ImportFormatError like
    `import_path` on input it cannot read."""
    source = open_path(fmt, path, chunk_rows=chunk_rows, id_prefix=id_prefix)
    collector = RatingCollector()
    if ratings:
        with reading(fmt, Path(path)):
            try:
                for chunk in source.chunks:
                    if K.RATING not in chunk.columns:
                        break  # every chunk of a source has the same columns
                    collector(chunk)
            finally:
                close = getattr(source.chunks, "close", None)
                if close is not None:  # a generator left early keeps its file open
                    close()
    return Extras(
        prefix=source.prefix,
        ratings=collector.ratings(),
        users=_keyed(source.users, source.prefix + K.USER_KEY),
        items=_keyed(source.items, source.prefix + K.ITEM_KEY),
    )
