"""The offline evaluation report: one self-contained HTML page, graceful with missing inputs."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest

from crossfade.evaluation import report as R
from crossfade.evaluation.report import write_evaluation_report

IMG = '<img src="data:image/png;base64,'


def _slices() -> pd.DataFrame:
    rows = []
    for column, values in {"tier": ["free", "premium"], "country": ["SE", "US", "BR"]}.items():
        for i, value in enumerate(values):
            for metric in ("ndcg", "recall"):
                mean = 0.2 + 0.05 * i
                rows.append(
                    {
                        "slice": column,
                        "value": value,
                        "metric": metric,
                        "mean": mean,
                        "ci_low": mean - 0.02,
                        "ci_high": mean + 0.03,
                        "n_users": 100 + i,
                    }
                )
    return pd.DataFrame(rows)


def _tradeoff() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "setting": ["re-ranker off", "mmr λ=0.7", "mmr λ=0.5"],
            "ndcg": [0.30, 0.29, 0.27],
            "diversity": [0.40, 0.55, 0.66],
            "long_tail_share": [0.10, 0.15, 0.22],
        }
    )


def _curve() -> pd.DataFrame:
    deciles = list(range(1, 11))
    return pd.DataFrame(
        {
            "popularity_decile": deciles,
            "share_of_recommendations": [0.02] * 5 + [0.05, 0.08, 0.12, 0.2, 0.43],
            "share_of_plays": [0.04] * 5 + [0.06, 0.09, 0.12, 0.18, 0.35],
        }
    )


METRICS = {"ndcg@10": 0.31, "recall@10": 0.22, "popularity_bias": 0.4, "coverage": 0.5}
BASELINE = {"ndcg@10": 0.25, "recall@10": 0.20}
CHAMPION = {"ndcg@10": 0.29, "recall@10": 0.23, "popularity_bias": 0.5}
REASONS = ["ndcg@10 0.31 > 0.29: primary improved", "recall@10 0.22 >= 0.2185: non-inferior"]


def _full(folder: Path, **kwargs: object) -> Path:
    args: dict[str, object] = {
        "title": "two-tower v3",
        "metrics": METRICS,
        "baseline": BASELINE,
        "champion": CHAMPION,
        "slices": _slices(),
        "tradeoff": _tradeoff(),
        "popularity_curve": _curve(),
        "gate_reasons": REASONS,
        "notes": {"data": "interactions up to 2024-05-01"},
    }
    args.update(kwargs)
    return write_evaluation_report(folder, **args)  # type: ignore[arg-type]


def test_full_report_has_every_section_and_four_images(tmp_path: Path) -> None:
    path = _full(tmp_path / "report")
    assert path == tmp_path / "report" / "index.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert page.count("<section>") == page.count("</section>")
    for title in (
        R.SECTION_METRICS,
        R.SECTION_SLICES,
        R.SECTION_TRADEOFF,
        R.SECTION_POPULARITY,
        R.SECTION_CHAMPION,
        R.SECTION_NOTES,
    ):
        assert f"<h2>{title}</h2>" in page
    assert page.count(IMG) == 4
    assert "Not available" not in page
    assert "two-tower v3" in page and "Generated" in page
    assert "PASSED" in page and "primary improved" in page
    assert "interactions up to 2024-05-01" in page
    assert path.stat().st_size < 1_000_000
    # embedded images decode to PNGs
    for data in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        assert base64.b64decode(data).startswith(b"\x89PNG")


def test_metrics_table_shows_baseline_champion_and_highlighted_differences(
    tmp_path: Path,
) -> None:
    page = _full(tmp_path).read_text(encoding="utf-8")
    assert "baseline (candidate-score order)" in page and "champion</th>" in page
    # ndcg up vs both references: better; recall down vs champion: worse
    ndcg_row = next(line for line in page.splitlines() if "<td>ndcg@10</td>" in line)
    assert ndcg_row.count("class='better'") == 2
    recall_row = next(line for line in page.splitlines() if "<td>recall@10</td>" in line)
    assert "class='worse'>-0.01" in recall_row
    # popularity bias going down is an improvement
    pop_row = next(line for line in page.splitlines() if "<td>popularity_bias</td>" in line)
    assert "class='better'>-0.1" in pop_row


def test_missing_inputs_degrade_to_notes(tmp_path: Path) -> None:
    path = write_evaluation_report(
        tmp_path,
        "bare",
        {"ndcg@10": 0.3},
        baseline=None,
        champion=None,
        slices=None,
        tradeoff=None,
        popularity_curve=None,
        gate_reasons=[],
    )
    page = path.read_text(encoding="utf-8")
    assert IMG not in page
    for title in (
        R.SECTION_METRICS,
        R.SECTION_SLICES,
        R.SECTION_TRADEOFF,
        R.SECTION_POPULARITY,
        R.SECTION_CHAMPION,
    ):
        assert f"<h2>{title}</h2>" in page
    assert page.count("Not available") >= 6  # baseline, champion, 3 plots, champion plot
    assert "no gate reasons" in page and "not evaluated" in page


def test_empty_or_malformed_frames_do_not_fail(tmp_path: Path) -> None:
    page = _full(
        tmp_path,
        slices=_slices().drop(columns=["ci_low"]),
        tradeoff=_tradeoff().iloc[0:0],
        popularity_curve=pd.DataFrame({"x": [1]}),
        champion={"something_else": 1.0},
        metrics={},
    ).read_text(encoding="utf-8")
    assert IMG not in page
    assert "lacks columns ci_low" in page
    assert "input table is empty" in page
    assert "popularity curve lacks columns" in page
    assert "no metrics were computed" in page


def test_slice_metric_falls_back_and_reports_unknown(tmp_path: Path) -> None:
    renamed = _slices().assign(metric=lambda d: d["metric"] + "@10")
    page = _full(tmp_path / "a", slices=renamed).read_text(encoding="utf-8")
    assert page.count(IMG) == 4  # "ndcg" matched "ndcg@10"
    page = _full(tmp_path / "b", slice_metric="mrr").read_text(encoding="utf-8")
    assert page.count(IMG) == 3
    assert "metric &#x27;mrr&#x27; not in slice table" in page


def test_text_is_escaped(tmp_path: Path) -> None:
    page = _full(
        tmp_path,
        title="<b>model</b>",
        metrics={"<script>": 1.0, "ndcg@10": 0.3},
        gate_reasons=["a < b & c: breached"],
        notes={"<k>": "<v>"},
    ).read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "<b>model</b>" not in page and "&lt;b&gt;model&lt;/b&gt;" in page
    assert "a &lt; b &amp; c: breached" in page
    assert "&lt;k&gt;" in page and "&lt;v&gt;" in page
    assert "FAILED" in page  # verdict inferred from the failure phrase


@pytest.mark.parametrize("passed, badge", [(True, "PASSED"), (False, "FAILED")])
def test_explicit_verdict_wins(tmp_path: Path, passed: bool, badge: str) -> None:
    page = _full(tmp_path, passed=passed, gate_reasons=["x: breached"]).read_text(encoding="utf-8")
    assert badge in page


def test_write_is_atomic_and_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _full(tmp_path, title="first", slices=None, tradeoff=None, popularity_curve=None)
    second = _full(tmp_path, title="second", slices=None, tradeoff=None, popularity_curve=None)
    assert first == second
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]
    assert "second" in second.read_text(encoding="utf-8")

    # a failing write leaves the previous page intact and no temp file behind
    def boom(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("crossfade.data.lake.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        _full(tmp_path, title="third", slices=None, tradeoff=None, popularity_curve=None)
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]
    assert "second" in second.read_text(encoding="utf-8")
