"""The offline registration gate: known answers and properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossfade.evaluation.gate import decide
from crossfade.evaluation.metric_tree import MetricTree, load_metric_tree

TREE = load_metric_tree()

CHAMPION = {
    "ndcg@10": 0.400,
    "long_tail_share@10": 0.095,
    "diversity@10": 0.60,
    "coverage@10": 0.30,
}


@pytest.fixture
def tree() -> MetricTree:
    return TREE


def test_better_and_non_inferior_passes_as_challenger(tree: MetricTree) -> None:
    cand = {**CHAMPION, "ndcg@10": 0.412, "long_tail_share@10": 0.094, "coverage@10": 0.31}
    d = decide(cand, CHAMPION, tree)
    assert d.passed and d.promote_to == "challenger"
    assert "ndcg@10 0.412 > 0.4: primary improved" in d.reasons
    assert "long_tail_share@10 0.094 >= 0.095 x (1 - 0.02): non-inferior" in d.reasons


def test_worse_primary_fails(tree: MetricTree) -> None:
    d = decide({**CHAMPION, "ndcg@10": 0.39}, CHAMPION, tree)
    assert not d.passed and d.promote_to is None
    assert "ndcg@10 0.39 <= 0.4: primary not better than champion" in d.reasons


def test_breached_guardrail_fails_with_that_reason(tree: MetricTree) -> None:
    cand = {**CHAMPION, "ndcg@10": 0.45, "long_tail_share@10": 0.081}
    d = decide(cand, CHAMPION, tree)
    assert not d.passed and d.promote_to is None
    assert "long_tail_share@10 0.081 < 0.095 x (1 - 0.02): guardrail breached" in d.reasons
    assert [r for r in d.reasons if "breached" in r] == [
        "long_tail_share@10 0.081 < 0.095 x (1 - 0.02): guardrail breached"
    ]


def test_deliberately_worse_challenger_is_refused(tree: MetricTree) -> None:
    worse = {"ndcg@10": 0.30, "long_tail_share@10": 0.06, "diversity@10": 0.4, "coverage@10": 0.1}
    d = decide(worse, CHAMPION, tree)
    assert not d.passed and d.promote_to is None
    assert sum("breached" in r for r in d.reasons) == 3
    assert any("primary not better" in r for r in d.reasons)


def test_no_champion_makes_the_first_candidate_champion(tree: MetricTree) -> None:
    d = decide(CHAMPION, None, tree)
    assert d.passed and d.promote_to == "champion"


def test_no_champion_still_needs_absolute_thresholds(tree: MetricTree) -> None:
    d = decide({**CHAMPION, "long_tail_share@10": 0.01}, None, tree)
    assert not d.passed and d.promote_to is None
    assert "long_tail_share@10 0.01 < 0.05: absolute threshold breached" in d.reasons


@pytest.mark.parametrize("missing", ["ndcg@10", "long_tail_share@10", "coverage@10"])
def test_missing_candidate_metric_fails_closed(tree: MetricTree, missing: str) -> None:
    cand = {k: v for k, v in CHAMPION.items() if k != missing}
    for champion in (None, CHAMPION):
        d = decide(cand, champion, tree)
        assert not d.passed and d.promote_to is None
        assert any(r.startswith(f"{missing} missing") and "fail closed" in r for r in d.reasons)


def test_nan_and_missing_champion_metric_fail_closed(tree: MetricTree) -> None:
    cand = {**CHAMPION, "ndcg@10": 0.5}
    assert not decide({**cand, "diversity@10": float("nan")}, CHAMPION, tree).passed
    champ = {k: v for k, v in CHAMPION.items() if k != "diversity@10"}
    d = decide(cand, champ, tree)
    assert not d.passed
    assert "diversity@10 missing or not finite in champion: fail closed" in d.reasons


def test_lower_is_better_uses_the_upper_margin() -> None:
    raw = TREE.model_dump(by_alias=True)
    raw["guardrails"]["long_tail_share"]["direction"] = "lower_is_better"
    raw["offline"]["guardrails"]["long_tail_share@10"]["threshold"] = None
    tree = MetricTree.model_validate(raw)
    champ = {**CHAMPION, "long_tail_share@10": 0.10}
    ok = decide({**champ, "ndcg@10": 0.5, "long_tail_share@10": 0.101}, champ, tree)
    assert ok.passed
    bad = decide({**champ, "ndcg@10": 0.5, "long_tail_share@10": 0.11}, champ, tree)
    assert not bad.passed
    assert "long_tail_share@10 0.11 > 0.1 x (1 + 0.02): guardrail breached" in bad.reasons


unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
champions = st.fixed_dictionaries(
    {
        "ndcg@10": unit,
        "long_tail_share@10": st.floats(min_value=0.05, max_value=1.0),
        "diversity@10": unit,
        "coverage@10": unit,
    }
)


@settings(max_examples=200, deadline=None)
@given(champion=champions)
def test_identical_candidate_never_passes(champion: dict[str, float]) -> None:
    d = decide(dict(champion), champion, TREE)
    assert not d.passed and d.promote_to is None


@settings(max_examples=200, deadline=None)
@given(champion=champions, gain=st.floats(min_value=1e-6, max_value=1.0))
def test_improving_only_the_primary_always_passes(champion: dict[str, float], gain: float) -> None:
    cand = {**champion, "ndcg@10": champion["ndcg@10"] + gain}
    d = decide(cand, champion, TREE)
    assert d.passed and d.promote_to == "challenger", d.reasons
