"""`crossfade bench quality` on an interactions file: every model, JSON out, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from crossfade.cli import app
from crossfade.config import Settings
from crossfade.data import lake
from crossfade.data.simulator import simulate

runner = CliRunner()


def _interactions(path: Path) -> Path:
    """Three taste blocks of listeners and items, with timestamps."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(90):
        block = user % 3
        items = rng.choice(np.arange(block * 30, block * 30 + 30), size=12, replace=False)
        for j, item in enumerate(items):
            rows.append((f"u{user}", f"i{item}", 1_700_000_000 + user * 1000 + j * 60))
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)
    return path


def test_bench_quality_reports_every_model(tmp_path: Path) -> None:
    data = _interactions(tmp_path / "plays.csv")
    out = tmp_path / "metrics.json"
    result = runner.invoke(
        app,
        [
            "bench",
            "quality",
            "--dataset",
            str(data),
            "--format",
            "interactions",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    # the file has timestamps but no ratings: the stack's EASE learns from listening windows
    # (so it is scored alone as ease_collective), its ALS is the plain one (no extra row)
    assert {line["model"] for line in lines} == {
        "most_popular",
        "item_knn",
        "als",
        "ease",
        "ease_collective",
        "full_stack",
    }
    saved = json.loads(out.read_text())
    # three disjoint taste blocks: every personalised model, the stack included, must beat
    # the block-blind popularity order
    for model in ("item_knn", "als", "ease", "ease_collective", "full_stack"):
        assert saved[model]["ndcg@10"] > saved["most_popular"]["ndcg@10"], model


def test_bench_quality_names_bad_arguments(tmp_path: Path) -> None:
    data = _interactions(tmp_path / "plays.csv")
    bad = runner.invoke(
        app,
        [
            "bench",
            "quality",
            "--dataset",
            str(data),
            "--format",
            "interactions",
            "--ratios",
            "0.9,0.3",
        ],
    )
    assert bad.exit_code == 1 and "ratios" in bad.output
    missing = runner.invoke(
        app,
        ["bench", "quality", "--dataset", str(tmp_path / "nope.csv"), "--format", "interactions"],
    )
    assert missing.exit_code == 1 and "nope.csv" in missing.output


def test_evaluate_runs_on_the_lake(settings: Settings) -> None:
    batch = simulate(settings.simulator, settings.seed, settings.staging_dir, settings.truth_dir)
    lake.publish_batch(batch, settings.lake_dir)
    result = runner.invoke(app, ["evaluate", "--protocol", "temporal", "--k", "10"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["full_stack"]["ndcg@10"] > metrics["most_popular"]["ndcg@10"]


def test_evaluate_on_an_empty_lake_says_what_to_do() -> None:
    result = runner.invoke(app, ["evaluate"])
    assert result.exit_code == 1 and "data ingest" in result.output
