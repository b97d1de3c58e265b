"""The response model: how a listener reacts to an item, given the true affinity.

One set of functions serves both the batch simulator (`sessions`) and online experiments
(`respond`), so an offline log and an A/B test see the same listener. Everything is
vectorised over plays.

- skip: logistic in affinity (less liked, more skipped), position in the session (fatigue)
  and context (a hand-picked album is skipped less than a radio station);
- a skipped play ends early (seconds for tracks, a small fraction of an episode), reason_end
  `fwdbtn`; a play that is not skipped runs to the end (`trackdone`), except that the last
  play of a session, or an episode, may be stopped part-way (`endplay`, `logout`, `remote`);
- saves, playlist adds, artist follows and replays: logistic in affinity, never on skips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from crossfade.data import domains as D

CONTEXT = {name: D.CONTEXT_TYPES.index(name) for name in D.CONTEXT_TYPES}
REASON_START = {name: D.REASONS_START.index(name) for name in D.REASONS_START}
REASON_END = {name: D.REASONS_END.index(name) for name in D.REASONS_END}

SKIP_INTERCEPT = -0.35
SKIP_AFFINITY = 1.1
SKIP_POSITION = 0.28  # per log(1 + position)
EPISODE_SKIP_OFFSET = -0.6
# Context effect on the skip logit (indexed by CONTEXT_TYPES code).
CONTEXT_SKIP_OFFSET = np.zeros(len(D.CONTEXT_TYPES), dtype=np.float32)
for _name, _offset in {
    "album": -0.35,
    "artist": -0.1,
    "radio": 0.35,
    "home_shelf": 0.25,
    "discover_weekly": 0.45,
    "search": -0.6,
    "collection": -0.5,
    "podcast_show": -0.4,
}.items():
    CONTEXT_SKIP_OFFSET[CONTEXT[_name]] = _offset

SKIP_MEDIAN_MS = 14_000.0
LAST_PARTIAL_SHARE = 0.3  # last play of a session stopped part-way
EPISODE_PARTIAL_SHARE = 0.55  # episodes often stopped part-way


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function (float32 in, float32 out)."""
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float32)


def skip_probability(
    affinity: np.ndarray, position: np.ndarray, context: np.ndarray, is_episode: np.ndarray
) -> np.ndarray:
    """Probability that a play is skipped: falls with affinity, rises with session position."""
    logit = (
        SKIP_INTERCEPT
        - SKIP_AFFINITY * affinity
        + SKIP_POSITION * np.log1p(position)
        + CONTEXT_SKIP_OFFSET[context]
        + EPISODE_SKIP_OFFSET * is_episode
    )
    return sigmoid(logit)


def save_probability(affinity: np.ndarray) -> np.ndarray:
    """Probability that a completed play is saved to the library."""
    return sigmoid(-5.2 + 1.3 * affinity)


def playlist_probability(affinity: np.ndarray) -> np.ndarray:
    """Probability that a completed play is added to a playlist."""
    return sigmoid(-6.2 + 1.3 * affinity)


def follow_probability(affinity: np.ndarray) -> np.ndarray:
    """Probability that a completed play makes the listener follow the artist (or show)."""
    return sigmoid(-7.0 + 1.2 * affinity)


def replay_probability(affinity: np.ndarray) -> np.ndarray:
    """Probability that a listener plays the track they just finished once more."""
    return sigmoid(-5.0 + 0.9 * affinity)


@dataclass
class Outcomes:
    """What happened during each play."""

    ms_played: np.ndarray  # int64
    reason_end: np.ndarray  # int8 code into REASONS_END
    saved: np.ndarray  # bool
    added_to_playlist: np.ndarray  # bool
    followed_artist: np.ndarray  # bool


def play_outcomes(
    rng: np.random.Generator,
    skipped: np.ndarray,
    affinity: np.ndarray,
    duration_ms: np.ndarray,
    is_episode: np.ndarray,
    last: np.ndarray,
    cast_device: np.ndarray,
) -> Outcomes:
    """Sample play length, end reason and engagement for plays whose skip is already decided.

    ms_played never exceeds the duration; skipped plays are always shorter than complete ones.
    """
    n = len(skipped)
    u = rng.random((6, n))
    skip_track = np.exp(math.log(SKIP_MEDIAN_MS) + 0.9 * rng.standard_normal(n))
    skip_ms = np.where(is_episode, duration_ms * (0.005 + 0.075 * u[0]), skip_track)
    skip_ms = np.minimum(skip_ms, duration_ms * 0.6).clip(300, None)
    partial_p = np.where(is_episode, EPISODE_PARTIAL_SHARE, LAST_PARTIAL_SHARE * last)
    partial = ~skipped & (u[1] < partial_p)
    partial_ms = duration_ms * np.where(is_episode, 0.15 + 0.8 * u[2], 0.2 + 0.7 * u[2])
    ms = np.where(skipped, skip_ms, np.where(partial, partial_ms, duration_ms))
    ms = np.minimum(ms.astype(np.int64), duration_ms)

    end = np.full(n, REASON_END["trackdone"], dtype=np.int8)
    end[skipped] = REASON_END["fwdbtn"]
    stop = np.where(
        cast_device & (u[3] < 0.5),
        REASON_END["remote"],
        np.where(u[3] < 0.85, REASON_END["endplay"], REASON_END["logout"]),
    )
    end[partial] = stop[partial]

    engaged = ~skipped
    scale = np.where(is_episode, 0.5, 1.0)
    saved = engaged & (u[4] < save_probability(affinity) * scale)
    playlist = engaged & ~is_episode & (u[5] < playlist_probability(affinity))
    follow = engaged & (rng.random(n) < follow_probability(affinity))
    return Outcomes(ms, end, saved, playlist, follow)


def reason_starts(
    rng: np.random.Generator,
    position: np.ndarray,
    prev_reason_end: np.ndarray,
    replay: np.ndarray,
    context: np.ndarray,
    cast_device: np.ndarray,
) -> np.ndarray:
    """Why each play started: a click or the play button for the first play of a session (a
    remote for cast devices), then whatever ended the previous play (forward button after a
    skip, track done, back button for a replay, autoplay on radio)."""
    n = len(position)
    u = rng.random(n)
    first = np.where(u < 0.55, REASON_START["clickrow"], REASON_START["playbtn"])
    first = np.where(cast_device & (u > 0.6), REASON_START["remote"], first)
    follow = np.full(n, REASON_START["trackdone"], dtype=np.int8)
    follow[prev_reason_end == REASON_END["fwdbtn"]] = REASON_START["fwdbtn"]
    follow[prev_reason_end == REASON_END["backbtn"]] = REASON_START["backbtn"]
    stopped = np.isin(
        prev_reason_end, [REASON_END["endplay"], REASON_END["logout"], REASON_END["remote"]]
    )
    follow[stopped] = REASON_START["clickrow"]
    radio = (context == CONTEXT["radio"]) & (prev_reason_end == REASON_END["trackdone"])
    follow[radio & (u < 0.4)] = REASON_START["autoplay"]
    out = np.where(position == 0, first, follow).astype(np.int8)
    out[replay] = REASON_START["backbtn"]
    return out
