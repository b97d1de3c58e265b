"""The final response check for minors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crossfade.data import domains as D
from crossfade.safety.age import AgeSafetyViolation, assert_age_safe, enforce_age_safe

FLAGS = st.dictionaries(st.text(min_size=1, max_size=4), st.sampled_from([True, False, None]))


@given(FLAGS, st.sampled_from([*D.AGE_BUCKETS, None, "7", ""]), st.data())
def test_minors_never_get_explicit_or_unknown_items(
    flags: dict[str, bool | None], age: str | None, data: st.DataObject
) -> None:
    pool = [*flags, "never-seen"]
    items = data.draw(st.lists(st.sampled_from(pool), max_size=20))
    kept, dropped = enforce_age_safe(items, age, flags)
    adult = age in D.AGE_BUCKETS and age not in D.MINOR_AGE_BUCKETS
    if adult:
        assert kept == items and dropped == []
    else:
        assert all(flags.get(i) is False for i in kept)
        assert sorted(kept + dropped) == sorted(items)
    assert_age_safe(kept, age, flags)


def test_violation_names_the_items() -> None:
    with pytest.raises(AgeSafetyViolation, match="x1"):
        assert_age_safe(["ok", "x1"], "13-17", {"ok": False, "x1": True})
    assert_age_safe(["x1"], "25-34", {"x1": True})
