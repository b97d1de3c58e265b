"""docs/data-contracts.md must match the contracts in code."""

from __future__ import annotations

from pathlib import Path

from crossfade.data.contract_docs import render_contracts
from crossfade.data.contracts import CONTRACTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-contracts.md"


def test_contracts_page_is_generated_from_code() -> None:
    text = DOC.read_text()
    generated = text.split("<!-- contracts:begin -->\n", 1)[1].split("<!-- contracts:end -->")[0]
    assert generated == render_contracts(), "regenerate with `crossfade data contracts`"


def test_every_contract_and_column_is_documented() -> None:
    text = DOC.read_text()
    for spec in CONTRACTS.values():
        assert f"### `{spec.name}`" in text
        for name in spec.schema.names:
            assert f"| `{name}` |" in text
