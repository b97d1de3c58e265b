"""Reason tags shown with each recommended item ("because you played ...", "new release")."""

from __future__ import annotations

from collections.abc import Sequence

PERSONAL_SOURCES = frozenset({"collaborative", "content", "cold_start"})


def reasons_for(
    sources: Sequence[str],
    *,
    artist_label: str,
    played_artist: bool,
    market: str,
    days_since_release: int,
    fresh_release_days: int,
    extra: Sequence[str] = (),
) -> list[str]:
    """Why an item is on the shelf, from the sources that found it and the listener's history.

    - a personal source and an artist the listener played: "because you played <artist>";
    - a personal source and an artist they never played: "fresh pick";
    - found by the market's popularity: "popular in <market>";
    - released in the last `fresh_release_days` days: "new release";
    - a podcast episode source: "podcast pick";
    - plus `extra` (the cohort fallback's reason, the re-ranker's moves).
    """
    out: list[str] = []
    if PERSONAL_SOURCES.intersection(sources):
        out.append(f"because you played {artist_label}" if played_artist else "fresh pick")
    if "popular_in_market" in sources:
        out.append(f"popular in {market}")
    if "fresh_releases" in sources or 0 <= days_since_release <= fresh_release_days:
        out.append("new release")
    if "episodes" in sources:
        out.append("podcast pick")
    out.extend(t for t in extra if t not in out)
    return out
