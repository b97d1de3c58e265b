"""Creator transparency: per artist and market, how much exposure against how much listening.

Impressions (recommendation slots shown) come from a recommendation log; listening from the
lake's events with flagged bot accounts removed, so stream farms never inflate a creator's
share. New-release exposure counts impressions of items released within the fresh window.
"""

from __future__ import annotations

import html
import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from crossfade import columns as C
from crossfade.data.lake import atomic_write_text

COLUMNS = (
    C.ARTIST_ID,
    "market",
    "impressions",
    "impression_share",
    "plays",
    "listening_share",
    "exposure_ratio",
    "new_release_impressions",
)


def creator_report(
    impressions: pd.DataFrame,
    events: pd.DataFrame,
    items: pd.DataFrame,
    today: date,
    fresh_days: int = 14,
) -> pd.DataFrame:
    """One row per (artist, market): impressions and their share of the market's slots,
    plays and their share of the market's listening, their ratio, and new-release impressions.
    `impressions` needs item_id and country (the listener's market); `events` item_id and
    country; `items` item_id, artist_id and release_date."""
    for name, frame, cols in (
        ("impressions", impressions, (C.ITEM_ID, C.COUNTRY)),
        ("events", events, (C.ITEM_ID, C.COUNTRY)),
        ("items", items, (C.ITEM_ID, C.ARTIST_ID, C.RELEASE_DATE)),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"creator report: {name} lacks columns {missing}")
    meta = items.drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)
    released = pd.to_datetime(meta[C.RELEASE_DATE]).dt.date
    fresh = released >= today - timedelta(days=fresh_days)

    def per_artist(frame: pd.DataFrame, what: str) -> pd.DataFrame:
        keyed = pd.DataFrame(
            {
                C.ARTIST_ID: frame[C.ITEM_ID].map(meta[C.ARTIST_ID]),
                "market": frame[C.COUNTRY],
                "new": frame[C.ITEM_ID].map(fresh).fillna(False).astype(bool),
            }
        ).dropna(subset=[C.ARTIST_ID])
        grouped = keyed.groupby([C.ARTIST_ID, "market"])
        out = grouped.size().rename(what).to_frame()
        if what == "impressions":
            out["new_release_impressions"] = grouped["new"].sum()
        return out

    shown = per_artist(impressions, "impressions")
    heard = per_artist(events, "plays")
    report = shown.join(heard, how="outer").fillna(0).reset_index()
    for count, share in (("impressions", "impression_share"), ("plays", "listening_share")):
        total = report.groupby("market")[count].transform("sum")
        report[share] = (report[count] / total.where(total > 0)).fillna(0.0)
    report["exposure_ratio"] = report["impression_share"] / report["listening_share"].where(
        report["listening_share"] > 0
    )
    report = report.astype({"impressions": int, "plays": int, "new_release_impressions": int})
    return report[list(COLUMNS)].sort_values(["market", "impressions"], ascending=[True, False])


def write_creator_report(report: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    """Write creators.csv and creators.html (atomically) and return both paths."""
    csv_path, html_path = folder / "creators.csv", folder / "creators.html"
    atomic_write_text(csv_path, report.to_csv(index=False))
    table = report.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="n/a")
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape('crossfade creator exposure')}</title></head><body>"
        "<h1>Creator exposure by market</h1><p>impression share against listening share "
        "(bot accounts excluded); exposure_ratio above 1: shown more than listened.</p>"
        f"{table}</body></html>\n"
    )
    atomic_write_text(html_path, page)
    return csv_path, html_path


def served_impressions(requests_dir: Path) -> pd.DataFrame:
    """Impressions (item_id, country) from the recommenders' request logs (JSONL rows with the
    listener's market and the items served); empty when nothing was served yet."""
    rows: list[tuple[str, str]] = []
    for path in sorted(requests_dir.glob("*.jsonl")) if requests_dir.is_dir() else []:
        with path.open() as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: skip it, keep the rest
                country = str(record.get("country") or "")
                rows.extend((str(item), country) for item in record.get("items") or [])
    return pd.DataFrame(rows, columns=[C.ITEM_ID, C.COUNTRY])
