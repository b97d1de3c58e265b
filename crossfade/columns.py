"""Column names and ids shared by every table, metric and check.

One module holds them so that a rename is one edit, and metrics, features and validation
never disagree about what a column is called.
"""

from __future__ import annotations

# ids
USER_ID = "user_id"
ITEM_ID = "item_id"
ARTIST_ID = "artist_id"
ALBUM_ID = "album_id"
EVENT_ID = "event_id"
SESSION_ID = "session_id"
IMPRESSION_ID = "impression_id"
AD_ID = "ad_id"

# time
TS = "ts"
DATE = "date"  # partition key of the lake (UTC calendar day)
SIGNUP_DATE = "signup_date"
RELEASE_DATE = "release_date"
DEBUT_DATE = "debut_date"
PICKED_AT = "picked_at"

# listener
TIER = "tier"
COUNTRY = "country"
AGE_BUCKET = "age_bucket"
LANGUAGE = "language"

# catalogue
CONTENT_TYPE = "content_type"
TITLE = "title"
ARTIST_NAME = "artist_name"
GENRE = "genre"
TAGS = "tags"
DURATION_MS = "duration_ms"
EXPLICIT = "explicit"
AVAILABLE_MARKETS = "available_markets"
AUDIO_FEATURES = (
    "danceability",
    "energy",
    "valence",
    "tempo",
    "acousticness",
    "speechiness",
)

# listening events
MS_PLAYED = "ms_played"
REASON_START = "reason_start"
REASON_END = "reason_end"
SKIPPED = "skipped"
SAVED = "saved"
ADDED_TO_PLAYLIST = "added_to_playlist"
FOLLOWED_ARTIST = "followed_artist"
REPLAY = "replay"
CONTEXT_TYPE = "context_type"
DEVICE = "device"
PLATFORM = "platform"
SHUFFLE = "shuffle"
OFFLINE = "offline"

# ads
CLICKED = "clicked"

# explicit feedback and listener facts an imported dataset may carry beyond the contracts
# (read beside a staged batch by offline evaluation, crossfade.data.importers.extras)
RATING = "rating"
GENDER = "gender"
OCCUPATION = "occupation"

# ground truth (never part of the observable logs)
IS_BOT = "is_bot"
BOT_RING = "bot_ring"
AFFINITY = "affinity"
