"""Ranking metrics at k: accuracy (precision, recall, NDCG, MAP, hit rate) and beyond accuracy
(coverage, diversity, novelty, serendipity, exposure Gini, long tail, ARP, calibration).

Inputs follow one shape everywhere: `recommendations` maps a listener to a ranked list of item
ids, `relevant` maps a listener to the set of items they engaged with in the test period, and
catalogue facts (plays, genre, vectors) are mappings or Series keyed by item id (build them
from frames with `play_counts` and `item_genres`). Each list is de-duplicated (first occurrence
wins) before it is cut at k, so a repeated item never counts twice.

Accuracy metrics average over listeners with at least one relevant item; a listener with no
recommendations scores zero there (a miss, not an exclusion, as in `retrieval.recall_at`).
Beyond-accuracy metrics average over listeners with a non-empty list.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import chain

import numpy as np
import pandas as pd

from crossfade import columns as C

Recommendations = Mapping[str, Sequence[str]]
Relevant = Mapping[str, Collection[str]]
Gains = Mapping[str, Mapping[str, float]]
ItemValues = Mapping[str, float] | pd.Series
ItemLabels = Mapping[str, str] | pd.Series

# metric names (columns of per-user tables and keys of `evaluate_all`)
PRECISION = "precision"
RECALL = "recall"
NDCG = "ndcg"
MAP = "map"
HIT = "hit"
ACCURACY_METRICS = (PRECISION, RECALL, NDCG, MAP, HIT)
# The short head holds the most played items up to this share of all plays; the rest is the
# long tail (for `long_tail_share`, serendipity's "expected" items and the re-ranker's quota).
HEAD_SHARE = 0.2

_ROW = "_row"
_RANK = "_rank"
_GAIN = "_gain"


# ---------------------------------------------------------------------------------------------
# helpers: frames in, item mappings out
# ---------------------------------------------------------------------------------------------


def play_counts(events: pd.DataFrame) -> pd.Series:
    """Training plays per item (the popularity every popularity-aware metric uses)."""
    return events.groupby(C.ITEM_ID).size().astype(float)


def item_genres(items: pd.DataFrame) -> pd.Series:
    """Item id -> genre, from a catalogue frame."""
    return items.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)[C.GENRE]


def _series(values: ItemValues | ItemLabels) -> pd.Series:
    return values if isinstance(values, pd.Series) else pd.Series(dict(values), dtype=object)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _flatten(lists: Sequence[Iterable[str]]) -> pd.DataFrame:
    """Row number and item of every element of `lists`, in order."""
    materialised = [list(x) for x in lists]
    lens = np.fromiter((len(x) for x in materialised), dtype=np.int64, count=len(materialised))
    rows = np.repeat(np.arange(len(materialised)), lens)
    items = np.array(list(chain.from_iterable(materialised)), dtype=object)
    return pd.DataFrame({_ROW: rows, C.ITEM_ID: items})


def _top_k(recommendations: Recommendations, users: Sequence[str], k: int) -> pd.DataFrame:
    """(row, rank, item) of each listener's first k distinct recommended items."""
    flat = _flatten([recommendations.get(u, ()) for u in users])
    flat = flat.drop_duplicates([_ROW, C.ITEM_ID])
    flat[_RANK] = flat.groupby(_ROW).cumcount()
    return flat[flat[_RANK] < k].reset_index(drop=True)


def _slots(recommendations: Recommendations, k: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Listeners with a non-empty list, the top-k as an index matrix [n, k] into the vocabulary
    (-1 pads short lists), and the vocabulary of recommended items."""
    _check_k(k)
    users = [u for u, items in recommendations.items() if len(items) > 0]
    top = _top_k(recommendations, users, k)
    codes, vocab = pd.factorize(top[C.ITEM_ID])
    idx = np.full((len(users), k), -1, dtype=np.int64)
    idx[top[_ROW].to_numpy(), top[_RANK].to_numpy()] = codes
    return users, idx, np.asarray(vocab, dtype=object)


def _slot_mean(idx: np.ndarray, per_item: np.ndarray) -> float:
    """Mean over listeners of the mean of `per_item` over their (non-padding) slots."""
    if idx.shape[0] == 0:
        return float("nan")
    valid = idx >= 0
    values = np.where(valid, per_item[np.clip(idx, 0, None)], 0.0)
    return float(np.mean(values.sum(axis=1) / valid.sum(axis=1)))


# ---------------------------------------------------------------------------------------------
# accuracy
# ---------------------------------------------------------------------------------------------


def _gain_matrices(
    recommendations: Recommendations, gains: Gains, k: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Listeners with a positive gain, gain at each of their top-k slots [n, k], the ideal
    (descending) gains [n, k], and the size of each relevant set (items with gain > 0)."""
    _check_k(k)
    users = [u for u, g in gains.items() if any(v > 0 for v in g.values())]
    positive = [{i: v for i, v in gains[u].items() if v > 0} for u in users]
    rel = _flatten([g.keys() for g in positive])
    rel[_GAIN] = np.fromiter(
        chain.from_iterable(g.values() for g in positive), dtype=float, count=len(rel)
    )
    n_rel = np.bincount(rel[_ROW].to_numpy(), minlength=len(users)).astype(float)

    top = _top_k(recommendations, users, k).merge(rel, how="left", on=[_ROW, C.ITEM_ID])
    got = np.zeros((len(users), k))
    got[top[_ROW].to_numpy(), top[_RANK].to_numpy()] = top[_GAIN].fillna(0.0).to_numpy()

    rel = rel.sort_values([_ROW, _GAIN], ascending=[True, False], kind="stable")
    rel[_RANK] = rel.groupby(_ROW).cumcount()
    rel = rel[rel[_RANK] < k]
    ideal = np.zeros((len(users), k))
    ideal[rel[_ROW].to_numpy(), rel[_RANK].to_numpy()] = rel[_GAIN].to_numpy()
    return users, got, ideal, n_rel


def _binary(relevant: Relevant) -> dict[str, dict[str, float]]:
    return {u: dict.fromkeys(items, 1.0) for u, items in relevant.items()}


def _discount(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(k) + 2.0)


def accuracy_by_user(recommendations: Recommendations, relevant: Relevant, k: int) -> pd.DataFrame:
    """Precision, recall, NDCG, AP and hit at k for each listener with relevant items (rows
    keyed by `C.USER_ID`): the per-listener table behind the averages and the slice CIs."""
    users, got, ideal, n_rel = _gain_matrices(recommendations, _binary(relevant), k)
    hits = got > 0
    n_hits = hits.sum(axis=1)
    disc = _discount(k)
    prec_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return pd.DataFrame(
        {
            C.USER_ID: users,
            PRECISION: n_hits / k,
            RECALL: n_hits / n_rel,
            NDCG: (got * disc).sum(axis=1) / (ideal * disc).sum(axis=1),
            MAP: (prec_at_i * hits).sum(axis=1) / np.minimum(n_rel, k),
            HIT: (n_hits > 0).astype(float),
        }
    )


def _mean(table: pd.DataFrame, metric: str) -> float:
    return float(table[metric].mean()) if len(table) else float("nan")


def precision_at_k(recommendations: Recommendations, relevant: Relevant, k: int) -> float:
    """Mean over listeners of |top-k ∩ relevant| / k: how much of the shelf is useful."""
    return _mean(accuracy_by_user(recommendations, relevant, k), PRECISION)


def recall_at_k(recommendations: Recommendations, relevant: Relevant, k: int) -> float:
    """Mean over listeners of |top-k ∩ relevant| / |relevant|: how much of what they wanted
    the shelf found."""
    return _mean(accuracy_by_user(recommendations, relevant, k), RECALL)


def hit_rate_at_k(recommendations: Recommendations, relevant: Relevant, k: int) -> float:
    """Share of listeners with at least one relevant item in their top k."""
    return _mean(accuracy_by_user(recommendations, relevant, k), HIT)


def map_at_k(recommendations: Recommendations, relevant: Relevant, k: int) -> float:
    """Mean average precision: per listener AP@k = Σ_{i≤k} P@i·rel_i / min(|relevant|, k),
    which rewards putting the hits early; averaged over listeners."""
    return _mean(accuracy_by_user(recommendations, relevant, k), MAP)


def ndcg_at_k(
    recommendations: Recommendations,
    relevant: Relevant | None = None,
    k: int = 10,
    gains: Gains | None = None,
) -> float:
    """Normalised DCG: DCG@k = Σ_{i≤k} g_i / log2(i + 1) over the list, divided by the DCG of
    the ideal ordering of the listener's relevant items (gain 1 for binary `relevant`, or the
    given graded `gains`, items with gain ≤ 0 being irrelevant); listeners with nothing
    relevant are skipped. Position-sensitive: a hit at rank 1 is worth more than at rank 5."""
    if (relevant is None) == (gains is None):
        raise ValueError("pass exactly one of `relevant` (binary) or `gains` (graded)")
    table = _binary(relevant) if relevant is not None else gains
    assert table is not None
    users, got, ideal, _ = _gain_matrices(recommendations, table, k)
    if not users:
        return float("nan")
    disc = _discount(k)
    return float(np.mean((got * disc).sum(axis=1) / (ideal * disc).sum(axis=1)))


def exponential_gain(grades: np.ndarray | pd.Series | Sequence[float]) -> np.ndarray:
    """Gain 2^g - 1 of graded labels g: each grade is worth about twice the one below."""
    return np.power(2.0, np.asarray(grades, dtype=float)) - 1.0


def graded_gains(
    frame: pd.DataFrame, group: str, label: str, item: str = C.ITEM_ID
) -> dict[str, dict[str, float]]:
    """`ndcg_at_k` gains from labelled rows: group (request) -> item -> 2^label - 1."""
    gains = exponential_gain(frame[label])
    out: dict[str, dict[str, float]] = {}
    for key, item_id, gain in zip(frame[group], frame[item], gains, strict=True):
        out.setdefault(str(key), {})[str(item_id)] = float(gain)
    return out


def graded_ndcg_by_group(
    frame: pd.DataFrame, scores: np.ndarray | pd.Series, group: str, label: str, k: int = 10
) -> pd.Series:
    """NDCG@k of ordering each group's rows (a request's candidates) by `scores`, with gains
    2^label - 1; ties keep the frame's order. Groups with no positive label are left out (no
    ordering can do better or worse there). Indexed by group."""
    _check_k(k)
    if len(scores) != len(frame):
        raise ValueError(f"{len(scores)} scores for {len(frame)} rows")
    data = pd.DataFrame(
        {
            "g": frame[group].to_numpy(),
            _GAIN: exponential_gain(frame[label]),
            "s": np.asarray(scores, dtype=float),
        }
    )
    disc = _discount(k)

    def dcg(by: str) -> pd.Series:
        ranked = data.sort_values(["g", by], ascending=[True, False], kind="stable")
        rank = ranked.groupby("g", sort=False).cumcount().to_numpy()
        top = rank < k
        values = ranked[_GAIN].to_numpy()[top] * disc[rank[top]]
        return pd.Series(values).groupby(ranked["g"].to_numpy()[top]).sum()

    ideal = dcg(_GAIN)
    ideal = ideal[ideal > 0]
    return (dcg("s").reindex(ideal.index, fill_value=0.0) / ideal).rename(NDCG)


# ---------------------------------------------------------------------------------------------
# beyond accuracy
# ---------------------------------------------------------------------------------------------


def catalogue_coverage(
    recommendations: Recommendations, catalogue: Collection[str], k: int
) -> float:
    """Distinct catalogue items recommended in anyone's top k / catalogue size: how much of
    the catalogue the system ever shows."""
    _, _, vocab = _slots(recommendations, k)
    if len(catalogue) == 0:
        return float("nan")
    return len(set(vocab) & set(catalogue)) / len(catalogue)


def intra_list_diversity(
    recommendations: Recommendations,
    k: int,
    item_vectors: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    item_genre: ItemLabels | None = None,
    chunk: int = 4096,
) -> float:
    """Mean over listeners of the mean pairwise distance within their top k: 1 - cosine
    similarity of item vectors when given (in [0, 1] for non-negative vectors, [0, 2] in
    general), otherwise 1 when two items' genres differ and 0 when equal. Items with no
    vector / genre (or a zero vector) are left out; lists with fewer than two usable items are
    skipped."""
    if item_vectors is None and item_genre is None:
        raise ValueError("pass item_vectors or item_genre")
    users, idx, vocab = _slots(recommendations, k)
    if item_vectors is not None:
        dim = len(next(iter(item_vectors.values()))) if item_vectors else 0
        vectors = np.zeros((len(vocab), dim))
        for j, item in enumerate(vocab):
            if item in item_vectors:
                vectors[j] = item_vectors[item]
        norms = np.linalg.norm(vectors, axis=1)
        known = norms > 0
        vectors[known] /= norms[known, None]
    else:
        assert item_genre is not None
        genre = _series(item_genre).reindex(pd.Index(vocab, dtype=object))
        genre_code = pd.factorize(genre)[0]  # -1 for unknown
        known = genre_code >= 0
    triu = np.triu(np.ones((k, k), dtype=bool), 1)
    per_user: list[np.ndarray] = []
    for start in range(0, len(users), chunk):
        block = idx[start : start + chunk]
        safe = np.clip(block, 0, None)
        ok = (block >= 0) & known[safe]
        pairs = ok[:, :, None] & ok[:, None, :] & triu
        if item_vectors is not None:
            v = vectors[safe]
            dist = 1.0 - np.einsum("uid,ujd->uij", v, v)
        else:
            g = genre_code[safe]
            dist = (g[:, :, None] != g[:, None, :]).astype(float)
        n_pairs = pairs.sum(axis=(1, 2))
        total = np.where(pairs, dist, 0.0).sum(axis=(1, 2))
        per_user.append(total[n_pairs > 0] / n_pairs[n_pairs > 0])
    values = np.concatenate(per_user) if per_user else np.array([])
    return float(values.mean()) if values.size else float("nan")


def _popularity(popularity: ItemValues, vocab: np.ndarray) -> np.ndarray:
    pop = pd.to_numeric(_series(popularity), errors="raise").astype(float)
    return pop.reindex(pd.Index(vocab, dtype=object)).fillna(0.0).to_numpy()


def novelty(recommendations: Recommendations, popularity: ItemValues, k: int) -> float:
    """Mean self-information of recommended items, -log2(plays_i / Σ plays): high when the
    system surfaces rarely played items. An item with no training plays counts as one play, so
    the value stays finite."""
    _, idx, vocab = _slots(recommendations, k)
    total = float(_series(popularity).astype(float).sum())
    if total <= 0:
        return float("nan")
    share = np.maximum(_popularity(popularity, vocab), 1.0) / total
    return _slot_mean(idx, -np.log2(share))


def average_recommendation_popularity(
    recommendations: Recommendations, popularity: ItemValues, k: int
) -> float:
    """ARP (Abdollahpouri et al.): mean over listeners of the mean training play count of their
    recommended items (unknown items count 0); lower means less popularity bias."""
    _, idx, vocab = _slots(recommendations, k)
    return _slot_mean(idx, _popularity(popularity, vocab))


def play_share_above(popularity: ItemValues) -> pd.Series:
    """Per item, the share of all plays taken by the items played more (ties: lower item id
    first), i.e. where the item sits on the popularity curve; 1.0 for items with no plays.

    This is the one long-tail definition: an item is in the short head when this share is
    below `head_share` (`in_short_head`), so the metrics here and the re-ranker's long-tail
    quota (`crossfade.reranking.long_tail`) cannot disagree about what the long tail is.
    """
    pop = _series(popularity).astype(float)
    out = pd.Series(1.0, index=pop.index, dtype=float)
    played = pop[pop > 0]
    if played.empty:
        return out
    order = played.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    before = order.cumsum() - order
    out.loc[order.index] = (before / order.sum()).to_numpy()
    return out


def in_short_head(
    share_above: np.ndarray | pd.Series, head_share: float = HEAD_SHARE
) -> np.ndarray:
    """Mask of items in the short head, from their `play_share_above` (missing: long tail)."""
    return np.nan_to_num(np.asarray(share_above, dtype=float), nan=1.0) < head_share


def head_items(popularity: ItemValues, head_share: float = HEAD_SHARE) -> set[str]:
    """The short head: most played items, taken in descending play order until they account
    for `head_share` of all plays (the item that crosses the line is in the head)."""
    share = play_share_above(popularity)
    return set(share.index[in_short_head(share, head_share)])


def long_tail_share(
    recommendations: Recommendations,
    popularity: ItemValues,
    k: int,
    head_share: float = HEAD_SHARE,
) -> float:
    """Mean over listeners of the share of their top k outside the short head (`head_items`):
    how much exposure goes to the long tail."""
    _, idx, vocab = _slots(recommendations, k)
    head = head_items(popularity, head_share)
    in_tail = np.array([item not in head for item in vocab], dtype=float)
    return _slot_mean(idx, in_tail)


def serendipity(
    recommendations: Recommendations,
    relevant: Relevant,
    expected: Collection[str],
    k: int,
) -> float:
    """Unexpected-and-useful share (Ge et al. 2010): per listener with relevant items,
    |top-k ∩ relevant − expected| / k, averaged. `expected` is what an obvious recommender
    would show (e.g. `head_items` or a popularity baseline's list)."""
    expected_set = set(expected)
    unexpected = {u: {i for i in items if i not in expected_set} for u, items in relevant.items()}
    has_relevant = [u for u, items in relevant.items() if items]
    table = accuracy_by_user(recommendations, {u: unexpected[u] for u in has_relevant}, k)
    # listeners whose relevant items are all expected still count, with zero serendipity
    n = len(has_relevant)
    return float(table[PRECISION].sum() / n) if n else float("nan")


def exposure_gini(recommendations: Recommendations, catalogue: Collection[str], k: int) -> float:
    """Gini coefficient of top-k exposure counts over the whole catalogue (never-recommended
    items count with zero exposure), scaled by n/(n-1) so that 0 is equal exposure and 1 is
    everything on one item: G = Σ_i (2i - n - 1)·x_(i) / (n·Σx) for ascending x_(i)."""
    _, idx, vocab = _slots(recommendations, k)
    items = pd.Index(sorted(set(catalogue)), dtype=object)
    n = len(items)
    counts = np.bincount(idx[idx >= 0], minlength=len(vocab)).astype(float)
    exposure = (
        pd.Series(counts, index=pd.Index(vocab, dtype=object)).reindex(items).fillna(0.0)
    ).to_numpy()
    total = exposure.sum()
    if n == 0 or total == 0:
        return float("nan")
    if n == 1:
        return 0.0
    x = np.sort(exposure)
    gini = float(np.sum((2 * np.arange(1, n + 1) - n - 1) * x) / (n * total))
    return gini * n / (n - 1)


def genre_calibration_kl(
    recommendations: Recommendations,
    history: Mapping[str, Sequence[str]],
    item_genre: ItemLabels,
    k: int,
    alpha: float = 0.01,
) -> float:
    """Miscalibration (Steck 2018): mean over listeners of KL(p || q~) = Σ_g p(g) ln(p(g)/q~(g))
    where p is the genre distribution of their play history (each play counts), q that of
    their top k, and q~ = (1 - alpha)·q + alpha·p keeps it finite. 0 when recommendations mirror
    the listener's taste mix. Listeners with no history of known genre are skipped."""
    _check_k(k)
    genres = _series(item_genre)
    users = [u for u, items in history.items() if len(items) > 0]
    hist = _flatten([history[u] for u in users])
    top = _top_k(recommendations, users, k)
    codes, _ = pd.factorize(genres)
    code_of = pd.Series(codes, index=genres.index)
    code_of = code_of[~code_of.index.duplicated()]
    n_genres = int(codes.max()) + 1 if len(codes) else 0

    def distribution(frame: pd.DataFrame) -> np.ndarray:
        where = pd.Index(frame[C.ITEM_ID], dtype=object)
        g = code_of.reindex(where).fillna(-1).to_numpy().astype(np.int64)
        ok = g >= 0
        mass = np.zeros((len(users), n_genres))
        np.add.at(mass, (frame[_ROW].to_numpy()[ok], g[ok]), 1.0)
        sums = mass.sum(axis=1, keepdims=True)
        return np.divide(mass, sums, out=np.zeros_like(mass), where=sums > 0)

    p = distribution(hist)
    q = distribution(top)
    keep = p.sum(axis=1) > 0
    if not keep.any():
        return float("nan")
    p, q = p[keep], q[keep]
    q_tilde = (1 - alpha) * q + alpha * p
    ratio = np.divide(p, q_tilde, out=np.ones_like(p), where=p > 0)
    return float(np.mean((p * np.log(ratio)).sum(axis=1)))


def evaluate_all(
    recommendations: Recommendations,
    relevant: Relevant,
    k: int,
    popularity: ItemValues,
    item_genre: ItemLabels,
    item_vectors: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    history: Mapping[str, Sequence[str]] | None = None,
    head_share: float = HEAD_SHARE,
) -> dict[str, float]:
    """Every metric at k in one dict (keys `<metric>@k`), for run logging and reports. The
    catalogue is every item with a genre or a play count; serendipity treats the short head
    as expected; calibration is included only when a play `history` is given."""
    table = accuracy_by_user(recommendations, relevant, k)
    catalogue = set(_series(item_genre).index) | set(_series(popularity).index)
    out = {f"{m}@{k}": _mean(table, m) for m in ACCURACY_METRICS}
    head = head_items(popularity, head_share)
    out.update(
        {
            f"coverage@{k}": catalogue_coverage(recommendations, catalogue, k),
            f"diversity@{k}": intra_list_diversity(
                recommendations, k, item_vectors=item_vectors, item_genre=item_genre
            ),
            f"novelty@{k}": novelty(recommendations, popularity, k),
            f"serendipity@{k}": serendipity(recommendations, relevant, head, k),
            f"exposure_gini@{k}": exposure_gini(recommendations, catalogue, k),
            f"long_tail_share@{k}": long_tail_share(recommendations, popularity, k, head_share),
            f"arp@{k}": average_recommendation_popularity(recommendations, popularity, k),
        }
    )
    if history is not None:
        out[f"calibration_kl@{k}"] = genre_calibration_kl(recommendations, history, item_genre, k)
    return out
