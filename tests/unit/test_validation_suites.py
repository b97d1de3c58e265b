"""The GX suites are generated from the data contracts: change a contract, the suite follows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from crossfade import columns as C
from crossfade.data import domains as D
from crossfade.data.contracts import CONTRACTS, EVENTS, USERS, Contract
from validation.suites import (
    FILE,
    SuiteParams,
    build_suite,
    build_table_suite,
    derived_columns,
    reference_flag,
)

WINDOW = SuiteParams(
    window_start=datetime(2026, 1, 5, tzinfo=UTC),
    window_end=datetime(2026, 1, 8, tzinfo=UTC),
    latest_ts=datetime(2026, 1, 9, 0, 5, tzinfo=UTC),
    skew_minutes=5,
)


def _by_kind(spec: Contract, params: SuiteParams = WINDOW) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for exp in build_suite(spec, params).expectations:
        out.setdefault(exp.meta["kind"], []).append(exp)
    return out


@pytest.mark.parametrize("name", list(CONTRACTS))
def test_rows_suite_is_derived_from_the_contract(name: str) -> None:
    spec = CONTRACTS[name]
    kinds = _by_kind(spec)
    (columns,) = kinds["columns"]
    assert columns.column_list == spec.column_names + derived_columns(spec)
    assert derived_columns(spec)[-1] == FILE
    assert sorted(e.column for e in kinds.get("not_null", [])) == sorted(spec.required)
    assert {e.column: tuple(e.value_set) for e in kinds.get("domain", [])} == spec.domains
    assert {e.column: (e.min_value, e.max_value) for e in kinds.get("range", [])} == spec.ranges
    refs = kinds.get("reference", [])
    assert {e.meta["column"]: e.meta["ref_table"] for e in refs} == spec.references
    assert all(e.column == reference_flag(e.meta["column"]) and e.value_set == [True] for e in refs)
    time_checks = kinds.get("window", []) + kinds.get("future", [])
    assert [e.column for e in time_checks] == ([spec.time_column] * 2 if spec.time_column else [])
    rules = [e.meta["rule"] for e in build_suite(spec, WINDOW).expectations]
    assert len(rules) == len(set(rules)), "every expectation has its own rule id"


def test_adding_a_domain_value_changes_the_expectation() -> None:
    family = replace(USERS, domains={**USERS.domains, C.TIER: (*D.TIERS, "family")})
    (before,) = [e for e in _by_kind(USERS)["domain"] if e.column == C.TIER]
    (after,) = [e for e in _by_kind(family)["domain"] if e.column == C.TIER]
    assert "family" not in before.value_set
    assert after.value_set == ["premium", "ad_supported", "family"]


def test_new_range_and_reference_become_expectations() -> None:
    spec = replace(
        EVENTS,
        ranges={**EVENTS.ranges, C.MS_PLAYED: (0, 3_600_000)},
        references={**EVENTS.references, C.SESSION_ID: "sessions"},
    )
    kinds = _by_kind(spec)
    (ms,) = kinds["range"]
    assert (ms.min_value, ms.max_value) == (0, 3_600_000)
    assert reference_flag(C.SESSION_ID) in [e.column for e in kinds["reference"]]


def test_time_checks_use_the_batch_window_and_the_clock() -> None:
    kinds = _by_kind(EVENTS)
    (window,) = kinds["window"]
    assert (window.min_value, window.max_value, window.strict_max) == (
        WINDOW.window_start,
        WINDOW.window_end,
        True,
    )
    (future,) = kinds["future"]
    assert future.max_value == WINDOW.latest_ts and future.min_value is None
    no_window = _by_kind(EVENTS, SuiteParams(latest_ts=WINDOW.latest_ts))
    assert "window" not in no_window and "future" in no_window


def test_events_bound_ms_played_by_the_item_duration() -> None:
    (pair,) = _by_kind(EVENTS)["lookup"]
    assert pair.expectation_type == "expect_column_pair_values_a_to_be_greater_than_b"
    assert (pair.column_A, pair.column_B, pair.or_equal) == (
        "_items_duration_ms",
        "ms_played",
        True,
    )
    assert "lookup" not in _by_kind(USERS)


def test_table_suite_has_unique_keys_and_the_volume_band() -> None:
    plain = build_table_suite(EVENTS, WINDOW).expectations
    assert [(e.expectation_type, e.column) for e in plain] == [
        ("expect_column_values_to_be_unique", C.EVENT_ID)
    ]
    banded = build_table_suite(EVENTS, replace(WINDOW, volume={"events": (10, 500)}))
    volume = banded.expectations[-1]
    assert volume.expectation_type == "expect_table_row_count_to_be_between"
    assert (volume.min_value, volume.max_value) == (10, 500)
