"""Bias audits, their gate refusal and their place in the evaluation report."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from crossfade import columns as C
from crossfade.config import Settings
from crossfade.evaluation.gate import GateDecision, with_audit
from crossfade.evaluation.report import render_evaluation_report
from crossfade.safety.audits import (
    SECTION_TITLE,
    audit_recommendations,
    audit_section_html,
    failed_reasons,
    gini,
)
from crossfade.safety.creators import creator_report, write_creator_report
from crossfade.safety.paths import safety_policy


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=50))
def test_gini_is_bounded_and_zero_when_equal(values: list[float]) -> None:
    g = gini(np.array(values))
    assert -1e-9 <= g <= 1
    assert abs(gini(np.full(len(values), 3.0))) < 1e-9


def _world() -> tuple[pd.DataFrame, ...]:
    rng = np.random.default_rng(0)
    markets = ["US", "SE", "JP"]
    artists = pd.DataFrame(
        {C.ARTIST_ID: [f"a{i}" for i in range(30)], C.COUNTRY: [markets[i % 3] for i in range(30)]}
    )
    items = pd.DataFrame(
        {
            C.ITEM_ID: [f"i{i}" for i in range(300)],
            C.ARTIST_ID: [f"a{i % 30}" for i in range(300)],
            C.RELEASE_DATE: [date(2026, 1, 1 + i % 28) for i in range(300)],
        }
    )
    users = pd.DataFrame(
        {C.USER_ID: [f"u{i}" for i in range(90)], C.COUNTRY: [markets[i % 3] for i in range(90)]}
    )
    # listening: Zipf-like over items, each user prefers local artists
    rows = []
    for i in range(90):
        local = [k for k in range(300) if k % 3 == i % 3]
        picks = rng.choice(local, size=40) if i % 2 else rng.zipf(1.5, size=40) % 300
        rows += [(f"u{i}", f"i{int(p)}") for p in picks]
    events = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID])
    return events, items, artists, users


def test_a_fair_list_passes_and_a_popularity_only_list_is_refused(settings: Settings) -> None:
    events, items, artists, users = _world()
    t = safety_policy(settings).audits
    fair = events.groupby(C.USER_ID).head(10)  # what each user listened to
    ok = audit_recommendations(fair, events, items, artists, users, t)
    assert ok.passed, failed_reasons(ok)
    top = events[C.ITEM_ID].value_counts().index[:3]
    greedy = pd.DataFrame(
        [(u, i) for u in users[C.USER_ID] for i in top], columns=[C.USER_ID, C.ITEM_ID]
    )
    bad = audit_recommendations(greedy, events, items, artists, users, t)
    assert not bad.passed
    reasons = failed_reasons(bad)
    assert any("exposure Gini" in r for r in reasons)
    assert any("long-tail share" in r for r in reasons)
    champion = GateDecision(True, "challenger", ["ndcg better"])
    refused = with_audit(champion, bad.passed, reasons)
    assert not refused.passed and refused.promote_to is None
    assert "bias audit failed: registration refused" in refused.reasons
    assert with_audit(champion, True, ok.reasons).passed
    page = render_evaluation_report(
        "v1", {"ndcg": 0.3}, None, None, None, None, None, refused.reasons,
        extra_sections={SECTION_TITLE: audit_section_html(bad)},
    )  # fmt: skip
    assert "<h2>Bias audit</h2>" in page and "data:image/png;base64," in page


def test_creator_report_shares_per_market(settings: Settings) -> None:
    events, items, _, users = _world()
    country = users.set_index(C.USER_ID)[C.COUNTRY]
    listened = events.assign(**{C.COUNTRY: events[C.USER_ID].map(country)})
    shown = listened.groupby(C.USER_ID).head(5)
    report = creator_report(shown, listened, items, date(2026, 1, 29), fresh_days=7)
    sums = report.groupby("market")[["impression_share", "listening_share"]].sum()
    assert np.allclose(sums.to_numpy(), 1.0)
    assert report["impressions"].sum() == len(shown)
    assert 0 < report["new_release_impressions"].sum() < len(shown)
    csv_path, html_path = write_creator_report(report, settings.reports_dir / "creators")
    assert pd.read_csv(csv_path).shape[0] == len(report) and "<table" in html_path.read_text()


def test_a_market_with_too_few_expected_local_slots_is_reported_not_gated(
    settings: Settings,
) -> None:
    events, items, artists, users = _world()
    thresholds = safety_policy(settings).audits
    # SE listeners hardly ever play SE artists (2 plays in 400): a list with none of them
    # expects well under `min_expected_local_slots` local slots, so chance cannot be told apart.
    se_users = users.loc[users[C.COUNTRY] == "SE", C.USER_ID]
    us_items = [f"i{k}" for k in range(0, 300, 3)]  # artists a0, a3, ... are US
    rows = [(u, us_items[j % len(us_items)]) for u in se_users for j in range(40)]
    rows[0] = (rows[0][0], "i1")  # i1 -> a1, an SE artist
    rows[1] = (rows[1][0], "i4")
    se_events = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID])
    other = events[~events[C.USER_ID].isin(se_users)]
    train = pd.concat([other, se_events], ignore_index=True)
    recs = pd.DataFrame({C.USER_ID: list(se_users) * 2, C.ITEM_ID: us_items[: 2 * len(se_users)]})
    result = audit_recommendations(recs, train, items, artists, users, thresholds)
    se = [r for r in result.reasons if r.startswith("bias audit: market SE")]
    assert se and "not gated" in se[0]
    assert not any(r.startswith("bias audit: market SE") for r in failed_reasons(result))


def test_served_impressions_come_from_the_request_logs(tmp_path: Path) -> None:
    from crossfade.safety.creators import served_impressions

    logs = tmp_path / "requests"
    logs.mkdir()
    (logs / "blue-1.jsonl").write_text(
        '{"country": "SE", "items": ["i1", "i2"]}\n{"country": "US", "items": ["i3"]}\n{"cut'
    )
    shown = served_impressions(logs)
    assert shown.to_dict("list") == {C.ITEM_ID: ["i1", "i2", "i3"], C.COUNTRY: ["SE", "SE", "US"]}
    assert served_impressions(tmp_path / "missing").empty


def test_no_local_artists_anywhere_is_refused_one_market_alone_is_a_warning(
    settings: Settings,
) -> None:
    events, items, artists, users = _world()
    thresholds = safety_policy(settings).audits
    home = artists.set_index(C.ARTIST_ID)[C.COUNTRY]
    item_home = items.set_index(C.ITEM_ID)[C.ARTIST_ID].map(home)
    market = users.set_index(C.USER_ID)[C.COUNTRY]

    def lists(foreign_for: set[str]) -> pd.DataFrame:
        rows = []
        for user, country in market.items():
            pool = item_home[
                (item_home != country) if country in foreign_for else item_home.notna()
            ]
            rows += [(user, item) for item in pool.index[:10]]
        return pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID])

    everywhere = audit_recommendations(lists({"US", "SE", "JP"}), events, items, artists, users,
                                       thresholds)  # fmt: skip
    assert not everywhere.passed
    assert any("local-artist exposure over all markets" in r for r in failed_reasons(everywhere))
    one = audit_recommendations(lists({"SE"}), events, items, artists, users, thresholds)
    assert any(r.startswith("bias audit: market SE") and "WARNING" in r for r in one.reasons)
    assert not any(r.startswith("bias audit: market SE") for r in failed_reasons(one))
