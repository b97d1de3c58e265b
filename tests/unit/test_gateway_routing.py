"""Routing by a stable hash: deterministic, proportional to the split, monotone in the split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.gateway.routing import (
    BUCKETS,
    ROUTE_SALT,
    SHADOW_SALT,
    bucket,
    mirror_to_shadow,
    percent_to_basis_points,
    route,
    share_to_basis_points,
)

listener_ids = st.text(min_size=1, max_size=40)
basis_points = st.integers(min_value=0, max_value=BUCKETS)


@given(listener_ids, basis_points)
def test_routing_is_stable_and_in_range(listener_id: str, green_bp: int) -> None:
    assert 0 <= bucket(listener_id) < BUCKETS
    first = route(listener_id, green_bp)
    assert all(route(listener_id, green_bp) == first for _ in range(3))
    assert first == ("green" if bucket(listener_id) < green_bp else "blue")


def test_known_buckets_do_not_change_between_releases() -> None:
    # Pinned values: a change of salt or hash would silently move every listener.
    assert [bucket(f"u{i}") for i in range(3)] == [1200, 2632, 8401]
    assert bucket("listener-1") == 7258
    assert route("u0", 1201) == "green" and route("u0", 1200) == "blue"


@given(listener_ids, basis_points, basis_points)
def test_raising_the_split_only_moves_listeners_from_blue_to_green(
    listener_id: str, a: int, b: int
) -> None:
    low, high = sorted((a, b))
    if route(listener_id, low) == "green":
        assert route(listener_id, high) == "green"
    if route(listener_id, high) == "blue":
        assert route(listener_id, low) == "blue"


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=0, max_value=100), st.integers(min_value=0, max_value=10**6))
def test_split_proportion_within_tolerance(percent: int, offset: int) -> None:
    population = [f"listener-{offset + i}" for i in range(20_000)]
    green_bp = percent_to_basis_points(percent)
    share = sum(route(lid, green_bp) == "green" for lid in population) / len(population)
    # Binomial standard error at n=20k is at most 0.0036; five of them is a safe tolerance.
    assert abs(share - percent / 100) <= 0.018
    if percent in (0, 100):
        assert share == percent / 100


@settings(max_examples=10, deadline=None)
@given(st.floats(min_value=0, max_value=1), st.integers(min_value=0, max_value=10**6))
def test_shadow_sample_is_proportional_and_independent_of_the_route(
    share: float, offset: int
) -> None:
    population = [f"l{offset + i}" for i in range(20_000)]
    shadow_bp = share_to_basis_points(share)
    mirrored = [lid for lid in population if mirror_to_shadow(lid, shadow_bp)]
    assert abs(len(mirrored) / len(population) - share) <= 0.018
    # Among mirrored listeners, the green share at a 50 % split stays about one half.
    if len(mirrored) >= 2_000:
        green = sum(route(lid, 5_000) == "green" for lid in mirrored) / len(mirrored)
        assert abs(green - 0.5) <= 0.06


def test_salts_differ_and_bad_inputs_are_named() -> None:
    assert ROUTE_SALT != SHADOW_SALT
    with pytest.raises(ValueError, match="listener_id"):
        bucket("")
    with pytest.raises(ValueError, match="green split"):
        route("x", BUCKETS + 1)
    with pytest.raises(ValueError, match="shadow share"):
        mirror_to_shadow("x", -1)
    with pytest.raises(ValueError, match="percent"):
        percent_to_basis_points(101)
    with pytest.raises(ValueError, match="share"):
        share_to_basis_points(1.5)
