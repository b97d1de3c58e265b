"""The lifecycle benchmark's pure parts: world ladder, growth fit, medians, table and plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import lifecycle as bench


def _row(listeners: int, stage: str, events: int, seconds: float, repeat: int = 0):
    return bench.StageResult(
        listeners=listeners,
        tracks=bench.world(listeners)["tracks"],
        stage=stage,
        events=events,
        seconds=seconds,
        process_seconds=seconds + 10,
        peak_rss_mb=300 + events / 1e4,
        import_rss_mb=250,
        repeat=repeat,
    )


@given(
    slope=st.floats(min_value=0.2, max_value=3.0),
    scale=st.floats(min_value=1e-6, max_value=1e2),
    sizes=st.lists(st.integers(1_000, 10_000_000), min_size=2, max_size=6, unique=True),
)
@settings(max_examples=60, deadline=None)
def test_growth_exponent_recovers_a_known_slope(slope: float, scale: float, sizes: list[int]):
    events = np.array(sizes, dtype=float)
    seconds = scale * events**slope
    assert bench.growth_exponent(events, seconds) == pytest.approx(slope, abs=1e-6)


def test_growth_exponent_sees_through_a_fixed_cost_only_at_scale():
    events = np.array([1e4, 1e5, 1e6, 1e7, 1e8])
    linear_plus_overhead = 5.0 + 1e-5 * events
    quadratic = 1e-10 * events**2
    assert bench.growth_exponent(events, linear_plus_overhead) < 1.0
    assert bench.growth_exponent(events[-2:], linear_plus_overhead[-2:]) == pytest.approx(
        1.0, abs=0.05
    )
    assert bench.growth_exponent(events, quadratic) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("events", "seconds", "match"),
    [
        ([10, 10], [1, 2], "two distinct"),
        ([10, 20], [1], "differ in length"),
        ([0, 20], [1, 2], "positive"),
        ([10, 20], [1, -2], "positive"),
    ],
)
def test_growth_exponent_refuses_bad_input(events, seconds, match):
    with pytest.raises(ValueError, match=match):
        bench.growth_exponent(events, seconds)


def test_world_scales_tracks_with_a_cap():
    assert bench.world(2_500) == {"users": 2_500, "tracks": 10_000, "artists": 1_000, "days": 14}
    assert bench.world(100_000)["tracks"] == bench.TRACK_CAP
    assert bench.world(1)["tracks"] >= 10
    with pytest.raises(ValueError, match="listener"):
        bench.world(0)


def test_medians_and_growth_flag_the_superlinear_stage():
    results = []
    for listeners, events in ((1_000, 100_000), (2_000, 200_000), (4_000, 400_000)):
        for repeat, noise in enumerate((0.9, 1.0, 1.3)):
            results.append(_row(listeners, "ingest", events, noise * events * 1e-5, repeat))
            results.append(_row(listeners, "features", events, noise * (events / 1e5) ** 2, repeat))
    rows = bench.medians(results)
    assert [(r.listeners, r.stage) for r in rows] == [
        (n, s) for n in (1_000, 2_000, 4_000) for s in ("ingest", "features")
    ]
    assert all(r.repeat == 3 for r in rows)
    assert rows[0].seconds == pytest.approx(1.0)  # median of 0.9, 1.0, 1.3 times 1 s
    fits = {g.stage: g for g in bench.growth(rows)}
    assert fits["ingest"].exponent == pytest.approx(1.0)
    assert not fits["ingest"].worse_than_linear
    assert fits["features"].exponent == pytest.approx(2.0)
    assert fits["features"].worse_than_linear
    text = bench.render_growth(list(fits.values()))
    assert "Worse than linear" in text and "features" in text.split("Worse than linear")[1]


def test_growth_skips_a_stage_seen_at_one_size():
    rows = [_row(1_000, "ingest", 100_000, 1.0), _row(1_000, "ranker", 100_000, 9.0)]
    assert bench.growth(rows) == []
    assert "No stage grows worse than linear" in bench.render_growth([])


def test_table_reports_per_event_cost_against_the_smallest_size():
    rows = [_row(1_000, "features", 100_000, 2.0), _row(10_000, "features", 1_000_000, 40.0)]
    table = bench.render_table(rows)
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2].endswith("| 20.0 | 1.00x |")
    assert lines[3].endswith("| 40.0 | 2.00x |")
    assert "| 10,000 | 20,000 | 1,000,000 | features | 40.0 |" in lines[3]


def test_plot_and_section_on_fake_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bench, "PLOT", tmp_path / "img" / "lifecycle_scaling.png")
    rows = [
        _row(n, stage, n * 100, factor * n / 1_000)
        for n in (1_000, 2_000, 4_000)
        for stage, factor in (("ingest", 1.0), ("ranker", 3.0))
    ]
    path = bench.plot(rows, bench.PLOT)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    body = bench.section(rows, (2.0, 1.5, 1.0), "Sizes measured: fake.")
    assert "load average 2.0 / 1.5 / 1.0" in body
    assert "(img/lifecycle_scaling.png)" in body
    assert body.count("| ingest |") == 4  # three sizes plus the growth table
    assert "No stage grows worse than linear" in body


def test_saved_results_round_trip(tmp_path: Path):
    path = tmp_path / "results.json"
    rows = [_row(1_000, "ingest", 100_000, 1.5), _row(1_000, "bot flags", 100_000, 0.5)]
    bench.save(path, rows, (1.0, 2.0, 3.0))
    assert json.loads(path.read_text())["load"] == [1.0, 2.0, 3.0]
    assert bench.load_saved(path) == rows
    assert bench.load_saved(tmp_path / "missing.json") == []


def test_sizes_option_parses_and_rejects():
    assert bench._sizes("5000,2_500,5000") == [2_500, 5_000]
    with pytest.raises(Exception, match="comma-separated"):
        bench._sizes("ten")
    with pytest.raises(Exception, match="positive"):
        bench._sizes("0,10")


def test_stages_until_is_a_prefix_of_the_lifecycle():
    assert bench.stages_until(None) == list(bench.STAGES)
    assert bench.stages_until("bot flags") == ["ingest", "bot flags"]
    with pytest.raises(ValueError, match="unknown stage"):
        bench.stages_until("release")


def test_cpu_time_decides_the_verdict_when_every_size_has_it():
    # Wall time inflated by a loaded machine at the big size; CPU time grows linearly.
    rows = [
        bench.StageResult(1_000, 4_000, "features", 100_000, 10.0, 20.0, 500, 300, 1, 9.0),
        bench.StageResult(4_000, 16_000, "features", 400_000, 80.0, 90.0, 900, 300, 1, 36.0),
    ]
    (fit,) = bench.growth(rows)
    assert fit.exponent == pytest.approx(1.5)
    assert fit.cpu_exponent == pytest.approx(1.0)
    assert not fit.worse_than_linear
    rows[1].cpu_seconds = None  # one size without CPU time: back to wall time
    (fit,) = bench.growth(rows)
    assert fit.cpu_exponent is None and fit.worse_than_linear
    assert "| 10.0 | 9.0 | 20.0 |" in bench.render_table(rows)
    assert "| n/a |" in bench.render_table(rows)


def test_section_appends_notes():
    rows = [_row(1_000, "ingest", 100_000, 1.0), _row(2_000, "ingest", 200_000, 2.0)]
    body = bench.section(rows, (1.0, 1.0, 1.0), "", notes="## Where the time goes\n\nx\n")
    assert body.rstrip().endswith("## Where the time goes\n\nx")
