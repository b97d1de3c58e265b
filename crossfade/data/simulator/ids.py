"""Pseudonymous ids and names for the simulated world, all drawn from seeded generators."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SYLLABLES = (
    "ka", "lo", "mi", "ra", "ven", "to", "sa", "ni", "del", "ma", "ri", "zo", "ba", "lu", "ne",
    "fe", "ko", "ta", "shi", "jo", "ar", "el", "on", "is", "um", "ya", "de", "va", "no", "li",
)  # fmt: skip
_WORDS = (
    "midnight", "river", "golden", "echo", "summer", "neon", "velvet", "ocean", "paper",
    "silver", "wild", "quiet", "electric", "broken", "sunday", "northern", "lonely", "city",
    "fire", "dream", "heart", "road", "glass", "storm", "light", "shadow", "garden", "stars",
    "honey", "thunder", "coast", "morning", "memory", "lights", "roses", "signal",
)  # fmt: skip


def hex_ids(rng: np.random.Generator, n: int, prefix: str, width: int = 12) -> np.ndarray:
    """`n` distinct ids `prefix` + `width` hex digits, drawn from `rng` (pseudonymous, stable
    for a seed, and unrelated to row order so nothing can be read from an id)."""
    if width > 15:
        raise ValueError(f"hex id width {width} is too wide for int64; use at most 15")
    high = 16**width
    values = rng.integers(0, high, size=n, dtype=np.int64)
    while n:
        _, first = np.unique(values, return_index=True)
        if len(first) == n:
            break
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        values[dup] = rng.integers(0, high, size=int(dup.sum()), dtype=np.int64)
    return np.array(
        [f"{prefix}{v:0{width}x}" for v in values.tolist()], dtype=f"<U{len(prefix) + width}"
    )


def counter_ids(prefix: str, start: int, count: int, width: int = 8) -> pa.Array:
    """Ids `prefix` + zero-padded counter, built in Arrow (fast for millions of rows)."""
    numbers = pc.cast(pa.array(np.arange(start, start + count, dtype=np.int64)), pa.string())
    padded = pc.utf8_lpad(numbers, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, padded, "")


def names(rng: np.random.Generator, n: int, words: int) -> np.ndarray:
    """`n` made-up titles of `words` title-cased words (track titles, show names)."""
    vocab = np.array(_WORDS)
    picks = vocab[rng.integers(0, len(vocab), size=(n, words))]
    out = picks[:, 0]
    for k in range(1, words):
        out = np.char.add(np.char.add(out, " "), picks[:, k])
    return np.char.title(out)


def person_names(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` made-up artist names of two invented words (e.g. "Kalo Vensa")."""
    syl = np.array(_SYLLABLES)

    def _word() -> np.ndarray:
        count = rng.integers(2, 4, size=n)
        parts = syl[rng.integers(0, len(syl), size=(n, 3))]
        out = np.char.add(parts[:, 0], parts[:, 1])
        return np.where(count == 3, np.char.add(out, parts[:, 2]), out)

    return np.char.title(np.char.add(np.char.add(_word(), " "), _word()))
