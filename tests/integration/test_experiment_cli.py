"""The `crossfade experiment` commands as a person runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "configs" / "experiments" / "discover_ranker.yaml"


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CROSSFADE_DATA_ROOT": str(tmp_path / "data"),
        "CROSSFADE_SIMULATOR__USERS": "200",
        "CROSSFADE_SIMULATOR__TRACKS": "600",
        "CROSSFADE_SIMULATOR__ARTISTS": "60",
        "CROSSFADE_SIMULATOR__EPISODES": "40",
        # A fixed key: listener pseudonyms, and so every hash-based assignment, are the same
        # on every run (the local default makes a random key per data root).
        "CROSSFADE_PRIVACY__PSEUDONYM_KEY": "test-experiment-cli",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [str(Path(sys.executable).with_name("crossfade")), "experiment", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_plan_prints_an_actionable_plan(tmp_path: Path) -> None:
    out = _run("plan", str(DEFINITION), tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    for text in ("completion_rate", "units needed", "duration", "looks at", "ramp", "NI margin"):
        assert text in out.stdout


def test_plan_rejects_a_bad_definition(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsalt: s\nsuccess_metrics: [nope]\nbaselines: {}\n")
    out = _run("plan", str(bad), tmp_path=tmp_path)
    assert out.returncode == 1
    assert "not measured online" in out.stderr
    assert "Traceback" not in out.stderr


def test_simulate_writes_report_with_decision(tmp_path: Path) -> None:
    out = _run(
        "simulate",
        str(DEFINITION),
        "--days",
        "3",
        "--no-ramp",
        "--treatment",
        "popularity",
        tmp_path=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["decision"] in ("CONTINUE", "INCONCLUSIVE")
    html = Path(result["report"]).read_text()
    assert "Sequential boundary" in html and "data:image/png;base64" in html


def test_analyze_external_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    ids = [f"L{i}" for i in range(n)]
    variant = np.where(np.arange(n) % 2 == 0, "control", "treatment")
    exposures = pd.DataFrame(
        {
            "user_id": ids,
            "variant": variant,
            "ts": "2024-03-01T10:00:00Z",
            "country": "SE",
            "platform": "ios",
            "tier": "premium",
        }
    )
    plays = rng.poisson(10, n) + 1
    completions = rng.binomial(plays, np.where(variant == "treatment", 0.75, 0.6))
    metrics = pd.DataFrame(
        {
            "user_id": ids,
            "date": "2024-03-01",
            "plays": plays,
            "completions": completions,
            "skips": plays - completions,
            "saves": rng.poisson(1, n),
            "active": 1,
            "requests": 1,
            "slates": 1,
            "diversity": 0.7,
            "cost_usd": 0.000004,
        }
    )
    folder = tmp_path / "ext"
    folder.mkdir()
    exposures.to_csv(folder / "exposures.csv", index=False)
    metrics.to_parquet(folder / "metrics.parquet")
    out = _run("analyze", str(folder), "--definition", str(DEFINITION), tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["decision"] == "SHIP"
