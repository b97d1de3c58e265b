"""Names of the fallbacks and stages, one place for the pipeline, the metrics and the docs."""

from __future__ import annotations

STAGES: tuple[str, ...] = ("features", "candidates", "item_features", "ranker", "rerank")

# The listener's online features: no row (new listener, empty store) or older than the budget;
# the catalogue's documented defaults are served instead (crossfade/features/catalog.py).
USER_FEATURES_MISSING = "user_features_missing"
USER_FEATURES_STALE = "user_features_stale"
FEATURES_UNAVAILABLE = "features_unavailable"  # no online store opened: defaults for everyone
ITEM_FEATURES_DEFAULTED = "item_features_defaulted"  # some candidates' item features defaulted
# Models: a failed or missing model answers with popular-in-market for the listener's cohort.
CANDIDATES_FAILED = "candidates_failed"
RANKER_MISSING = "ranker_missing"
RANKER_FAILED = "ranker_failed"
POPULAR_IN_COHORT = "popular_in_cohort"
RERANK_FAILED = "rerank_failed"  # ranked order, safety-checked
# The listener was erased (crossfade privacy erase) and the loaded models were trained on
# their data: popular in the request's market, nothing of theirs used, until retrained.
LISTENER_ERASED = "listener_erased"
NO_MODELS = "models_not_loaded"  # the process has nothing to answer with yet (readyz is 503)


def over_budget(stage: str) -> str:
    """The fallback name of a stage that ran past its time budget."""
    return f"{stage}_over_budget"


ALL: tuple[str, ...] = (
    USER_FEATURES_MISSING,
    USER_FEATURES_STALE,
    FEATURES_UNAVAILABLE,
    ITEM_FEATURES_DEFAULTED,
    CANDIDATES_FAILED,
    RANKER_MISSING,
    RANKER_FAILED,
    POPULAR_IN_COHORT,
    RERANK_FAILED,
    LISTENER_ERASED,
    NO_MODELS,
    *(over_budget(s) for s in STAGES),
)
