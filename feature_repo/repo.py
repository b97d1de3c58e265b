"""Feast object definitions for the `feast` CLI (crossfade's own commands apply the same)."""

from crossfade.config import load_settings
from feature_repo.definitions import build_definitions

_defs = build_definitions(load_settings().features_dir)
user = _defs.entities[0]
item = _defs.entities[1]
artist = _defs.entities[2]
user_listening_stats = _defs.views["user_listening_stats"]
item_stats = _defs.views["item_stats"]
artist_stats = _defs.views["artist_stats"]
request_context = _defs.context_view
candidate_features_v1 = _defs.services["candidate_features_v1"]
ranker_features_v1 = _defs.services["ranker_features_v1"]
