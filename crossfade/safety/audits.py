"""Bias audits of a model version's recommendations, run before it may be registered.

Inputs are the version's recommendation lists (one row per listener and slot), the training
listening it learned from (bot accounts already excluded), the catalogue and the artists.
Measured:
- popularity bias: Gini of impressions over the catalogue, the share of slots given to the
  long tail (items outside the head that holds `head_play_share` of training plays), and the
  mean training popularity of recommended items against that of listened items (lift);
- geographic skew: per market, the share of recommended slots going to local-market artists
  against the share of local artists in what that market listened to (reported; an
  under-exposed market is a warning), and over all markets together (gated);
- exposure by artist size (small / mid / large by training plays): each band's share of
  impressions against its share of listening.
Thresholds come from configs/safety.yaml; every breach is a reason the gate tags.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from crossfade import columns as C
from crossfade.safety.policy import AuditThresholds

SIZE_BANDS = ("small", "mid", "large")


@dataclass
class AuditResult:
    """Audit metrics, per-market and per-band tables, and the verdict with its reasons."""

    metrics: dict[str, float]
    markets: pd.DataFrame
    artist_sizes: pd.DataFrame
    passed: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (tables as records)."""
        return {
            "metrics": self.metrics,
            "markets": self.markets.to_dict("records"),
            "artist_sizes": self.artist_sizes.to_dict("records"),
            "passed": self.passed,
            "reasons": self.reasons,
        }


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: equal, towards 1: concentrated)."""
    x = np.sort(np.asarray(values, dtype=float))
    if len(x) == 0 or x.sum() <= 0:
        return 0.0
    n = len(x)
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * x).sum()) / (n * x.sum()) - (n + 1) / n)


def head_items(plays: pd.Series, head_share: float) -> set[str]:
    """The most played items that together hold `head_share` of all plays."""
    ordered = plays.sort_values(ascending=False)
    cumulative = ordered.cumsum() / max(float(ordered.sum()), 1.0)
    n_head = int(np.searchsorted(cumulative.to_numpy(), head_share, side="left")) + 1
    return set(ordered.index[:n_head].astype(str))


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"bias audit: {what} needs columns {list(columns)}; missing {missing}")


def _size_bands(artist_plays: pd.Series, quantiles: tuple[float, float]) -> pd.Series:
    low, high = np.quantile(artist_plays.to_numpy(dtype=float), quantiles)
    bands = np.where(artist_plays > high, "large", np.where(artist_plays > low, "mid", "small"))
    return pd.Series(bands, index=artist_plays.index)


def audit_recommendations(
    recs: pd.DataFrame,
    train_events: pd.DataFrame,
    items: pd.DataFrame,
    artists: pd.DataFrame,
    users: pd.DataFrame,
    thresholds: AuditThresholds,
) -> AuditResult:
    """Run every audit; `recs` has user_id, item_id (one row per slot)."""
    _require(recs, (C.USER_ID, C.ITEM_ID), "the recommendations")
    _require(train_events, (C.USER_ID, C.ITEM_ID), "the training events")
    _require(items, (C.ITEM_ID, C.ARTIST_ID), "the items")
    _require(artists, (C.ARTIST_ID, C.COUNTRY), "the artists")
    _require(users, (C.USER_ID, C.COUNTRY), "the users")
    if recs.empty or train_events.empty:
        raise ValueError("bias audit: no recommendations or no training events to audit")
    t = thresholds
    artist_of = items.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)[C.ARTIST_ID]
    home = artists.drop_duplicates(C.ARTIST_ID).set_index(C.ARTIST_ID)[C.COUNTRY]
    market_of = users.drop_duplicates(C.USER_ID).set_index(C.USER_ID)[C.COUNTRY]

    plays = train_events[C.ITEM_ID].astype(str).value_counts()
    impressions = recs[C.ITEM_ID].astype(str).value_counts()
    catalogue = items[C.ITEM_ID].astype(str).unique()
    exposure = impressions.reindex(catalogue, fill_value=0).to_numpy()
    head = head_items(plays, t.head_play_share)
    rec_items = recs[C.ITEM_ID].astype(str)
    popularity = plays / plays.sum()
    rec_pop = float(popularity.reindex(rec_items, fill_value=0.0).mean())
    listened_pop = float(popularity.reindex(train_events[C.ITEM_ID].astype(str)).mean())
    metrics = {
        "exposure_gini": gini(exposure),
        "long_tail_share": float((~rec_items.isin(head)).mean()),
        "listened_long_tail_share": float((~train_events[C.ITEM_ID].astype(str).isin(head)).mean()),
        "rec_popularity": rec_pop,
        "listened_popularity": listened_pop,
        "popularity_lift": rec_pop / listened_pop if listened_pop > 0 else float("inf"),
        "catalogue_coverage": float((exposure > 0).mean()),
    }

    def local_share(frame: pd.DataFrame) -> pd.DataFrame:
        market = frame[C.USER_ID].map(market_of)
        artist_home = frame[C.ITEM_ID].map(artist_of).map(home)
        local = (artist_home == market).astype(float)
        return pd.DataFrame({"market": market, "local": local}).dropna(subset=["market"])

    rec_local = local_share(recs).groupby("market")["local"].agg(["mean", "size"])
    lis_local = local_share(train_events).groupby("market")["local"].agg(["mean", "size"])
    markets = pd.DataFrame(
        {
            "local_share_recommended": rec_local["mean"],
            "local_share_listened": lis_local["mean"],
            "slots": rec_local["size"],
            "plays": lis_local["size"],
        }
    ).fillna({"slots": 0, "plays": 0})
    markets["ratio"] = markets["local_share_recommended"] / markets["local_share_listened"]
    markets = markets.rename_axis("market").reset_index()

    artist_plays = train_events[C.ITEM_ID].map(artist_of).value_counts()
    bands = _size_bands(artist_plays, t.artist_size_quantiles)
    rec_band = recs[C.ITEM_ID].map(artist_of).map(bands).fillna("small")
    lis_band = train_events[C.ITEM_ID].map(artist_of).map(bands).fillna("small")
    sizes = pd.DataFrame(
        {
            "exposure_share": rec_band.value_counts(normalize=True),
            "listening_share": lis_band.value_counts(normalize=True),
        }
    ).reindex(list(SIZE_BANDS), fill_value=0.0)
    sizes["lift"] = sizes["exposure_share"] / sizes["listening_share"].replace(0, np.nan)
    sizes = sizes.rename_axis("artist_size").reset_index()
    large = sizes.loc[sizes["artist_size"] == "large", "lift"].fillna(0.0).to_numpy(dtype=float)
    metrics["large_artist_lift"] = float(large[0]) if len(large) else 0.0

    reasons: list[str] = []

    def check(ok: bool, text: str) -> None:
        reasons.append(f"bias audit: {text}: {'ok' if ok else 'threshold breached'}")

    g = metrics["exposure_gini"]
    check(g <= t.max_exposure_gini, f"exposure Gini {g:.3f} <= {t.max_exposure_gini}")
    lt = metrics["long_tail_share"]
    check(lt >= t.min_long_tail_share, f"long-tail share {lt:.3f} >= {t.min_long_tail_share}")
    lift = metrics["popularity_lift"]
    check(lift <= t.max_popularity_lift, f"popularity lift {lift:.2f} <= {t.max_popularity_lift}")
    la = metrics["large_artist_lift"]
    check(la <= t.max_large_artist_lift, f"large-artist lift {la:.2f} <= {t.max_large_artist_lift}")
    gated = markets[(markets["plays"] >= t.min_market_listens) & (markets["ratio"].notna())]
    for record in gated.to_dict("records"):
        listened, ratio = float(record["local_share_listened"]), float(record["ratio"])
        recommended = float(record["local_share_recommended"])
        expected = listened * float(record["slots"])
        if 0 < expected < t.min_expected_local_slots:
            reasons.append(
                f"bias audit: market {record['market']} local-artist share {recommended:.3f} "
                f"recommended vs {listened:.3f} listened: not gated, only {expected:.1f} local "
                f"slots expected (< {t.min_expected_local_slots}), too few to tell from chance"
            )
        elif listened > 0:
            verdict = "ok" if ratio >= t.min_local_share_ratio else "WARNING: under-exposed"
            reasons.append(
                f"bias audit: market {record['market']} local-artist share {recommended:.3f} "
                f"recommended vs {listened:.3f} listened (ratio {ratio:.2f}; "
                f"{t.min_local_share_ratio} expected): {verdict}"
            )
    # The gate reads the markets together (local slots recommended against the local slots
    # their listening predicts); one small market alone is reported, not gated.
    judged = gated[gated["local_share_listened"] > 0]
    if len(judged):
        expected_slots = float((judged["local_share_listened"] * judged["slots"]).sum())
        shown_slots = float((judged["local_share_recommended"] * judged["slots"]).sum())
        overall = shown_slots / expected_slots if expected_slots else float("nan")
        metrics["local_share_ratio"] = overall
        check(
            overall >= t.min_local_share_ratio,
            f"local-artist exposure over all markets: {shown_slots:.0f} slots recommended vs "
            f"{expected_slots:.0f} expected from listening (ratio {overall:.2f} >= "
            f"{t.min_local_share_ratio})",
        )
    passed = not any(r.endswith("threshold breached") for r in reasons)
    return AuditResult(metrics, markets, sizes, passed, reasons)


def failed_reasons(result: AuditResult) -> list[str]:
    """Only the breached checks (what the gate tags as refusal reasons)."""
    return [r for r in result.reasons if r.endswith("threshold breached")]


def audit_figure(result: AuditResult) -> Figure:
    """Three panels for the evaluation report: local-artist share per market, exposure vs
    listening by artist size, and the popularity summary."""
    fig = Figure(figsize=(11, 3.4))
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    m = result.markets.sort_values("market")
    x = np.arange(len(m))
    ax1.bar(x - 0.2, m["local_share_listened"], 0.4, label="listened")
    ax1.bar(x + 0.2, m["local_share_recommended"], 0.4, label="recommended")
    ax1.set_xticks(x, m["market"], rotation=90, fontsize=7)
    ax1.set_title("local-artist share by market")
    ax1.legend(fontsize=7)
    s = result.artist_sizes
    y = np.arange(len(s))
    ax2.bar(y - 0.2, s["listening_share"], 0.4, label="listening")
    ax2.bar(y + 0.2, s["exposure_share"], 0.4, label="exposure")
    ax2.set_xticks(y, s["artist_size"])
    ax2.set_title("exposure by artist size")
    ax2.legend(fontsize=7)
    names = ["exposure_gini", "long_tail_share", "listened_long_tail_share", "popularity_lift"]
    ax3.barh(names, [result.metrics[n] for n in names])
    ax3.set_title("popularity bias")
    ax3.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


SECTION_TITLE = "Bias audit"


def audit_section_html(result: AuditResult) -> str:
    """The audit as an HTML section body (verdict, reasons, embedded PNG) for the evaluation
    report's `extra_sections`."""
    buf = io.BytesIO()
    fig = audit_figure(result)
    try:
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    finally:
        fig.clear()
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    verdict = "<p class='pass'>passed</p>" if result.passed else "<p class='fail'>FAILED</p>"
    items = "".join(f"<li>{html.escape(r)}</li>" for r in result.reasons)
    return f"{verdict}<ul>{items}</ul><img alt='bias audit' src='data:image/png;base64,{png}'>"
