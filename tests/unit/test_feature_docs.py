"""docs/features.md must match the catalogue, the budgets and the policy."""

from __future__ import annotations

from pathlib import Path

from crossfade.config import load_settings
from crossfade.features import catalog
from crossfade.features.docs import render_features_doc
from crossfade.features.policy import load_policy

DOC = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def test_features_page_is_generated_from_code() -> None:
    settings = load_settings("local")
    policy = load_policy(settings.config_path / settings.features.policy_file)
    expected = render_features_doc(settings.features.freshness_hours, policy)
    assert DOC.read_text() == expected, (
        "regenerate with `crossfade features docs > docs/features.md`"
    )


def test_every_feature_is_documented_with_source_and_budget() -> None:
    text = DOC.read_text()
    for spec in catalog.FEATURES:
        assert f"| `{spec.name}` |" in text
    assert "freshness budget: 36 h" in text
