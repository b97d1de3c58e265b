"""Deterministic, configurable re-ranking of one request's scored candidates.

Rules (one module each, pure functions): safety, freshness boost, MMR diversity, artist cap,
long-tail quota, amortized creator-exposure fairness. `Reranker` applies the enabled ones in
the fixed order of `pipeline.RULE_ORDER`; parameters live in `configs/reranking.yaml`.
"""

from __future__ import annotations

from crossfade.reranking.config import (
    RerankingConfig,
    RerankingError,
    default_reranking_path,
    load_reranking,
)
from crossfade.reranking.fairness import ExposureTracker, gini
from crossfade.reranking.pipeline import RULE_ORDER, RequestContext, Reranker, RerankResult

__all__ = [
    "RULE_ORDER",
    "ExposureTracker",
    "RequestContext",
    "RerankResult",
    "Reranker",
    "RerankingConfig",
    "RerankingError",
    "default_reranking_path",
    "gini",
    "load_reranking",
]
