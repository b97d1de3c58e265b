"""Closed value domains of the data contracts (tiers, markets, devices, ...).

Validation, the simulator and the importers all read these tuples, so a value that one of
them produces is always one the others accept.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

TIERS = ("premium", "ad_supported")
UNKNOWN = "unknown"
# Imported data may not know a listener's age: "unknown" is treated like a minor wherever
# age matters (explicit content), the safe default.
AGE_BUCKETS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+", UNKNOWN)
MINOR_AGE_BUCKETS = ("13-17", UNKNOWN)
# Markets the simulated world has; "ZZ" (ISO user-assigned) marks an unknown or other country.
MARKETS = ("US", "GB", "DE", "FR", "SE", "BR", "MX", "ES", "JP", "IN", "NG", "ID")
UNKNOWN_COUNTRY = "ZZ"
COUNTRIES = (*MARKETS, UNKNOWN_COUNTRY)
LANGUAGES = (
    "en",
    "de",
    "fr",
    "sv",
    "pt",
    "es",
    "ja",
    "hi",
    "yo",
    "id",
    "ko",
    "instrumental",
    UNKNOWN,
)
CONTENT_TYPES = ("track", "episode")
MUSIC_GENRES = (
    "pop",
    "hip_hop",
    "rock",
    "electronic",
    "latin",
    "rnb",
    "indie",
    "classical",
    "jazz",
    "country",
    "kpop",
    "afrobeats",
    "metal",
    "schlager",
    "jpop",
    "bollywood",
)
PODCAST_GENRES = ("news", "comedy", "true_crime", "sports", "education")
GENRES = MUSIC_GENRES + PODCAST_GENRES + ("unknown",)
REASONS_START = ("trackdone", "clickrow", "fwdbtn", "backbtn", "playbtn", "autoplay", "remote")
REASONS_END = ("trackdone", "fwdbtn", "backbtn", "endplay", "logout", "remote")
CONTEXT_TYPES = (
    "playlist",
    "album",
    "artist",
    "radio",
    "home_shelf",
    "discover_weekly",
    "search",
    "collection",
    "podcast_show",
    "unknown",
)
DEVICES = ("phone", "desktop", "tablet", "speaker", "tv", "car", "web", "unknown")
PLATFORMS = ("ios", "android", "windows", "macos", "linux", "web", "cast", "unknown")

# A play counts as a stream (and pays out) after 30 s: stream farms aim just over it.
STREAM_THRESHOLD_MS = 30_000

# Ids: what the serving API accepts for a listener or an item id, and what every id column of
# the contracts must satisfy, so the lake never holds an id that serving would refuse.
# One definition: crossfade.serving.api and the contracts both read these.
ID_MAX_LENGTH = 128
ID_CHARACTERS = "A-Za-z0-9._:@-"
ID_PATTERN = rf"^[{ID_CHARACTERS}]+$"
ID_RULE = f"1..{ID_MAX_LENGTH} characters of {ID_CHARACTERS}"


def valid_ids(values: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Whether each id follows the rule serving accepts (null stays null: not_null judges it).

    The one Arrow form of the id rule: the importers and validation both call it.
    """
    length = pc.binary_length(values)  # bytes >= characters: the regex bounds the alphabet
    short = pc.less_equal(length, ID_MAX_LENGTH)
    return pc.and_(short, pc.match_substring_regex(values, ID_PATTERN))
