"""The metric tree loader: the shipped file is valid, and typos fail naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from crossfade.evaluation.metric_tree import (
    MetricTreeError,
    default_metric_tree_path,
    load_metric_tree,
)
from crossfade.evaluation.metrics import evaluate_all

# the real key names, from a tiny evaluation
EVALUATE_ALL_KEYS = set(
    evaluate_all(
        {"u": ["a", "b"]},
        {"u": {"a"}},
        k=10,
        popularity={"a": 3.0, "b": 1.0},
        item_genre={"a": "pop", "b": "jazz"},
        history={"u": ["a"]},
    )
)


def _raw() -> dict[str, Any]:
    loaded = yaml.safe_load(default_metric_tree_path().read_text())
    assert isinstance(loaded, dict)
    return copy.deepcopy(loaded)


def _write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "metrics.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_tree_loads_with_the_documented_shape() -> None:
    tree = load_metric_tree()
    assert tree.primary_offline == "ndcg@10"
    assert set(tree.primary_kpis) == {"premium", "ad_supported"}
    assert set(tree.guardrails()) == {
        "skip_rate",
        "ad_impressions_per_user",
        "catalogue_diversity",
        "long_tail_share",
        "error_rate",
        "p99_latency_ms",
        "infra_cost_per_1k_requests",
    }
    assert set(tree.guardrails("offline")) == {"catalogue_diversity", "long_tail_share"}
    assert "skip_rate" in tree.guardrails("online")
    assert "ad_impressions_per_user" in tree.primary_kpis["ad_supported"].respects
    # offline names are real evaluate_all keys
    assert {c.metric for c in tree.offline_checks()} <= EVALUATE_ALL_KEYS
    assert tree.primary_offline in EVALUATE_ALL_KEYS


def test_offline_checks_inherit_direction_and_margin() -> None:
    tree = load_metric_tree()
    checks = {c.metric: c for c in tree.offline_checks()}
    lts = checks["long_tail_share@10"]
    assert lts.direction == "higher_is_better"
    assert lts.non_inferiority_margin == tree.guardrails()["long_tail_share"].non_inferiority_margin


def test_default_path_follows_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSFADE_CONFIG_DIR", str(tmp_path))
    assert default_metric_tree_path() == tmp_path / "metrics.yaml"


def test_unknown_key_fails_naming_file_and_key_path(tmp_path: Path) -> None:
    raw = _raw()
    raw["guardrails"]["skip_rate"]["treshold"] = 0.4
    path = _write(tmp_path, raw)
    with pytest.raises(MetricTreeError) as err:
        load_metric_tree(path)
    assert str(path) in str(err.value)
    assert "guardrails.skip_rate.treshold" in str(err.value)


def test_unknown_top_level_key_fails(tmp_path: Path) -> None:
    raw = _raw()
    raw["north_stars"] = {}
    with pytest.raises(MetricTreeError, match="north_stars"):
        load_metric_tree(_write(tmp_path, raw))


def test_bad_direction_fails_naming_the_key(tmp_path: Path) -> None:
    raw = _raw()
    raw["guardrails"]["p99_latency_ms"]["direction"] = "lower"
    with pytest.raises(MetricTreeError, match=r"guardrails\.p99_latency_ms\.direction"):
        load_metric_tree(_write(tmp_path, raw))


def test_bad_measured_place_fails(tmp_path: Path) -> None:
    raw = _raw()
    raw["guardrails"]["skip_rate"]["measured"] = ["shadow"]
    with pytest.raises(MetricTreeError, match=r"guardrails\.skip_rate\.measured"):
        load_metric_tree(_write(tmp_path, raw))


def test_offline_metric_must_name_an_offline_guardrail(tmp_path: Path) -> None:
    raw = _raw()
    raw["offline"]["guardrails"]["novelty@10"] = {"guardrail": "no_such_guardrail"}
    with pytest.raises(MetricTreeError, match="no_such_guardrail"):
        load_metric_tree(_write(tmp_path, raw))
    raw["offline"]["guardrails"]["novelty@10"] = {"guardrail": "skip_rate"}
    with pytest.raises(MetricTreeError, match="not measured offline"):
        load_metric_tree(_write(tmp_path, raw))


def test_kpi_weights_must_sum_to_one(tmp_path: Path) -> None:
    raw = _raw()
    raw["primary_kpis"]["premium"]["kpis"][0]["weight"] = 0.9
    with pytest.raises(MetricTreeError, match=r"primary_kpis\.premium.*sum to 1"):
        load_metric_tree(_write(tmp_path, raw))


def test_respects_must_name_known_guardrails(tmp_path: Path) -> None:
    raw = _raw()
    raw["primary_kpis"]["ad_supported"]["respects"].append("ad_load")
    with pytest.raises(MetricTreeError, match="ad_load"):
        load_metric_tree(_write(tmp_path, raw))


def test_missing_file_and_non_mapping_fail(tmp_path: Path) -> None:
    with pytest.raises(MetricTreeError, match=r"nope\.yaml"):
        load_metric_tree(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(MetricTreeError, match="mapping"):
        load_metric_tree(path)
