"""Age-appropriate recommendations: the last check before a response leaves the service.

Explicit items are filtered for minors at candidate retrieval and by the re-ranker's safety
rule; this module is the final, independent check of the response itself. It fails closed:
an item whose explicit flag is unknown counts as explicit, and an unknown, missing or
out-of-domain age counts as a minor (`crossfade.reranking.safety.is_minor`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crossfade.reranking.safety import is_minor


class AgeSafetyViolation(RuntimeError):
    """A response for a minor holds explicit (or unknown) items; the message lists them."""


def unsafe_items(
    item_ids: Sequence[str], age_bucket: str | None, explicit: Mapping[str, bool | None]
) -> list[str]:
    """The items a listener of this age may not receive (empty for adults)."""
    if not is_minor(age_bucket):
        return []
    return [i for i in item_ids if explicit.get(i) is not False]


def assert_age_safe(
    item_ids: Sequence[str], age_bucket: str | None, explicit: Mapping[str, bool | None]
) -> None:
    """Raise AgeSafetyViolation if a minor would receive an explicit or unknown item."""
    bad = unsafe_items(item_ids, age_bucket, explicit)
    if bad:
        raise AgeSafetyViolation(
            f"{len(bad)} explicit or unclassified item(s) in a response for age bucket "
            f"{age_bucket!r}: {', '.join(bad[:10])}; the candidate and re-ranking filters failed"
        )


def enforce_age_safe(
    item_ids: Sequence[str], age_bucket: str | None, explicit: Mapping[str, bool | None]
) -> tuple[list[str], list[str]]:
    """Serving's fail-closed form: the response without unsafe items, and the items dropped
    (to count and alert on; a non-empty second list means an earlier filter is broken)."""
    bad = set(unsafe_items(item_ids, age_bucket, explicit))
    return [i for i in item_ids if i not in bad], [i for i in item_ids if i in bad]
