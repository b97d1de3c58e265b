"""Artist cap: at most `max_per_artist` items of one artist in the top k.

Items over the cap are pushed just below the top k, keeping their relative order. When too
few other artists exist to fill k slots, the best pushed items fill the gap (a short list
would be worse than a repeated artist).
"""

from __future__ import annotations

import pandas as pd

from crossfade.reranking.frame import artist_keys

TAG = "artist_cap"


def apply_artist_cap(frame: pd.DataFrame, k: int, *, max_per_artist: int) -> pd.DataFrame:
    """Reorder so the top k respects the cap where possible; stable otherwise."""
    artists = artist_keys(frame)
    counts: dict[str, int] = {}
    top: list[int] = []
    over: list[int] = []
    pos = 0
    while pos < len(artists) and len(top) < k:
        artist = artists[pos]
        if counts.get(artist, 0) < max_per_artist:
            counts[artist] = counts.get(artist, 0) + 1
            top.append(pos)
        else:
            over.append(pos)
        pos += 1
    fill = max(0, k - len(top))
    top = top + over[:fill]  # relaxed: repeats still close the top k
    order = top + over[fill:] + list(range(pos, len(artists)))
    return frame.iloc[order].reset_index(drop=True)
