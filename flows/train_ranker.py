"""Training flow, ranker stage: logged impressions → per-tier LambdaRank → gate → registry.

1. On the lake's simulated world, a candidate model trained on all but the last 4 to 8 days
   (half the history, `log_days`) retrieves candidates; randomised slates are shown to the
   simulator's listeners and their responses graded by the label policy
   (`crossfade/ranking/dataset.py`).
2. Listener, item and request-context features are joined from the feature service
   `ranker_features_v1` as of each request's time (Feast point-in-time join, one retrieval for
   all rows) and combined with the candidate crosses (`crossfade/ranking/features.py`).
3. Temporal validation: all logged days but the last two to train (2 to 6), 1 to early-stop,
   1 to test.
4. Offline metrics on the test requests (NDCG@10 per tier and overall, long-tail share,
   diversity, coverage), against ordering by candidate score.
5. The gate reads the metric tree (`configs/metrics.yaml`) and compares with the current
   champion's metrics: the first passing version becomes `champion`, a later one that is
   better and non-inferior on every guardrail becomes `challenger`; otherwise the version
   stays unaliased with the reasons in a tag.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from crossfade import columns as C
from crossfade.candidates.model import train_candidates
from crossfade.config import Settings, load_settings
from crossfade.data import lake
from crossfade.data.simulator import World
from crossfade.evaluation.gate import GateDecision, decide, with_audit
from crossfade.evaluation.metric_tree import default_metric_tree_path, load_metric_tree
from crossfade.evaluation.metrics import (
    evaluate_all,
    graded_gains,
    graded_ndcg_by_group,
    item_genres,
    ndcg_at_k,
    play_counts,
    play_share_above,
)
from crossfade.evaluation.report import write_evaluation_report
from crossfade.evaluation.slices import by_slice, per_user_metrics
from crossfade.features import catalog
from crossfade.features.policy import load_policy
from crossfade.log import get_logger
from crossfade.ranking.dataset import REQUEST, History, simulated_impressions
from crossfade.ranking.features import FEATURES, REQUEST_INPUTS, STORE_INPUTS, model_inputs
from crossfade.ranking.labels import LABEL, load_label_policy
from crossfade.ranking.ranker import RankerModel, fit_ranker
from crossfade.reranking import RequestContext, Reranker, default_reranking_path, load_reranking
from crossfade.safety.audits import SECTION_TITLE as AUDIT_SECTION
from crossfade.safety.audits import AuditResult, audit_recommendations, audit_section_html
from crossfade.safety.bots import human_events
from crossfade.safety.paths import bot_flags_dir, safety_policy
from crossfade.safety.privacy import listener_view
from feature_repo.definitions import RANKER_SERVICE, feature_table_path
from feature_repo.store import open_store
from feature_repo.training import training_set
from model_registry.lineage import lineage_tags
from model_registry.ranker import MODEL_NAME, TIER, load_ranker, register_ranker
from model_registry.registry import CHAMPION, client, promote, run_metrics, version_by_alias

log = get_logger("flows.train_ranker")
MIN_LOG_DAYS = 4  # 2 to train, 1 to early-stop, 1 to test
MAX_LOG_DAYS = 8


def log_days(history_days: int) -> int:
    """Days of logged slates: half the lake's history, from 4 to 8 (all but the last two to
    train, then one to early-stop and one to test), so the weekly retrain learns from more
    slates than the first model did, and the candidate model behind the slates keeps the other
    half of the history."""
    return max(MIN_LOG_DAYS, min(MAX_LOG_DAYS, history_days // 2))


MAX_LISTENERS = 400


@dataclass
class RankerOutcome:
    """What a ranker training run produced and what the gate decided."""

    version: str
    run_id: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    passed: bool
    alias: str | None
    reasons: list[str] = field(default_factory=list)
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _simulated_world(settings: Settings) -> tuple[World, dict[str, pd.DataFrame]]:
    published = [m for m in lake.manifests(settings.lake_dir) if m["source"] == "simulator"]
    if not published:
        raise ValueError(
            "ranker training needs logged impressions; on this platform they come from the "
            "simulator's response model: ingest a simulated world first (`crossfade data ingest`)"
        )
    truth = settings.truth_dir / published[-1]["batch_id"]
    frames = {
        n: lake.read_lake_table(settings.lake_dir, n).to_pandas()
        for n in ("events", "items", "users", "onboarding", "artists")
    }
    # Flagged stream-farm accounts teach the ranker nothing (latest bot-detection run).
    frames["events"], _ = human_events(frames["events"], bot_flags_dir(settings))
    # The world stands for the listeners' devices: it answers to the ids the stores hold.
    return listener_view(settings, World.load(truth)), frames


def serving_candidates_version(c: Any, settings: Settings) -> str:
    """The candidate model this ranker will be served with: the gated `challenger`, else the
    current `champion`, else (first run, candidate gate refused) the newest version."""
    name = settings.candidates.model_name
    for alias in ("challenger", CHAMPION):
        found = version_by_alias(c, name, alias)
        if found is not None:
            return str(found.version)
    versions = c.search_model_versions(f"name='{name}'")
    return str(max(int(v.version) for v in versions)) if versions else "none"


def champion_on_holdout(
    settings: Settings, test: pd.DataFrame, frames: dict[str, pd.DataFrame]
) -> dict[str, float] | None:
    """The current champion scored on THIS run's holdout, so the gate compares like with like;
    None when there is no champion or it cannot score these rows (then the gate falls back to
    the champion's own logged metrics and says so)."""
    try:
        champion = load_ranker(settings, CHAMPION)
        scores = champion.predict(test, TIER)
    except Exception as exc:  # no champion, or a feature set this holdout does not carry
        log.warning("champion not re-scored on this holdout", extra={"reason": str(exc)[:200]})
        return None
    return _offline_metrics(test, scores, frames)


def audit_top_lists(
    settings: Settings,
    test: pd.DataFrame,
    scores: np.ndarray,
    frames: dict[str, pd.DataFrame],
    served: dict[str, list[str]] | None = None,
) -> AuditResult:
    """Bias audit of the lists listeners would be shown (top 10 per holdout request after the
    re-ranker) against what was listened to in training."""
    owner = test.drop_duplicates(REQUEST).set_index(REQUEST)[C.USER_ID]
    owner.index = owner.index.astype(str)
    served = served if served is not None else served_lists(test, scores, frames)
    top = pd.DataFrame(
        [(owner[r], item) for r, items in served.items() for item in items],
        columns=[C.USER_ID, C.ITEM_ID],
    )
    return audit_recommendations(
        top, frames["events"], frames["items"], frames["artists"], frames["users"],
        safety_policy(settings).audits,
    )  # fmt: skip


def ndcg10_by_tier(frame: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    """Mean NDCG@10 (graded, 2^label - 1 gains) per tier and overall, over test requests."""
    per_request = graded_ndcg_by_group(frame, scores, REQUEST, LABEL, k=10)
    tiers = frame.drop_duplicates(REQUEST).set_index(REQUEST)[TIER].reindex(per_request.index)
    out = {
        f"ndcg@10_{t}": float(v) for t, v in per_request.groupby(tiers.to_numpy()).mean().items()
    }
    out["ndcg@10"] = float(per_request.mean())
    return out


def _offline_metrics(
    test: pd.DataFrame,
    scores: np.ndarray,
    frames: dict[str, pd.DataFrame],
    served: dict[str, list[str]] | None = None,
) -> dict[str, float]:
    """What the gate compares: list metrics (diversity, coverage, long tail, ...) on the lists
    listeners are shown (ranker + re-ranker, since both ship together), and the ranker's own
    ordering quality as graded NDCG@10 per tier (the primary metric)."""
    served = served if served is not None else served_lists(test, scores, frames)
    return {**_list_metrics(served, test, frames), **ndcg10_by_tier(test, scores)}


def _list_metrics(
    recs: dict[str, list[str]], test: pd.DataFrame, frames: dict[str, pd.DataFrame]
) -> dict[str, float]:
    relevant = {str(r): set(g.loc[g[LABEL] >= 2, C.ITEM_ID]) for r, g in test.groupby(REQUEST)}
    return evaluate_all(
        recs, relevant, 10, play_counts(frames["events"]), item_genres(frames["items"])
    )


def served_lists(
    test: pd.DataFrame, scores: np.ndarray, frames: dict[str, pd.DataFrame], rerank: bool = True
) -> dict[str, list[str]]:
    """Top 10 per holdout request as a listener would see it: the ranker's order, then (by
    default) the configured re-ranker (diversity, artist cap, freshness, long tail, fairness,
    safety) with the listener's market and age."""
    base = test.assign(score=scores)
    if not rerank:
        ranked = base.sort_values([REQUEST, "score"], ascending=[True, False])
        return {str(r): list(g[C.ITEM_ID])[:10] for r, g in ranked.groupby(REQUEST)}
    items = frames["items"].drop_duplicates(C.ITEM_ID).set_index(C.ITEM_ID)
    users = frames["users"].drop_duplicates(C.USER_ID).set_index(C.USER_ID)
    share_above = play_share_above(play_counts(frames["events"]))
    reranker = Reranker(load_reranking(default_reranking_path()))
    recs: dict[str, list[str]] = {}
    for request, g in base.groupby(REQUEST):
        ordered = g.sort_values("score", ascending=False)
        meta = items.reindex(ordered[C.ITEM_ID])
        frame = pd.DataFrame(
            {
                "item_id": ordered[C.ITEM_ID].to_numpy(),
                "score": ordered["score"].to_numpy(),
                "artist_id": meta[C.ARTIST_ID].to_numpy(),
                "genre": meta[C.GENRE].to_numpy(),
                "explicit": meta[C.EXPLICIT].fillna(True).to_numpy(dtype=bool),
                "play_share_above": share_above.reindex(ordered[C.ITEM_ID]).to_numpy(),
                "release_date": meta[C.RELEASE_DATE].to_numpy(),
                "available_markets": meta[C.AVAILABLE_MARKETS].to_numpy(),
            }
        )
        user = users.loc[g[C.USER_ID].iloc[0]]
        context = RequestContext(str(user[C.COUNTRY]), str(user[C.AGE_BUCKET]), g[C.TS].iloc[0])
        recs[str(request)] = reranker.rerank(frame, context, 10).item_ids
    return recs


def rerank_tradeoff(
    test: pd.DataFrame,
    scores: np.ndarray,
    frames: dict[str, pd.DataFrame],
    served: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """NDCG@10, diversity and long-tail share with the re-ranker off and on (same requests)."""
    gains = graded_gains(test, REQUEST, LABEL)
    rows = []
    for name, use in (("ranker only", False), ("ranker + re-ranker", True)):
        recs = served if use and served is not None else served_lists(test, scores, frames, use)
        m = _list_metrics(recs, test, frames)
        rows.append(
            {
                "setting": name,
                "ndcg": ndcg_at_k(recs, k=10, gains=gains),
                "diversity": m.get("diversity@10", float("nan")),
                "long_tail_share": m.get("long_tail_share@10", float("nan")),
            }
        )
    return pd.DataFrame(rows)


def popularity_curve(
    test: pd.DataFrame, scores: np.ndarray, frames: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """Share of top-10 recommendations vs share of plays per item-popularity decile."""
    plays = pd.Series(play_counts(frames["events"]), dtype=float)
    decile = pd.qcut(plays.rank(method="first"), 10, labels=False) + 1
    ranked = test.assign(_s=scores).sort_values([REQUEST, "_s"], ascending=[True, False])
    top = ranked.groupby(REQUEST).head(10)[C.ITEM_ID]
    rec_share = top.map(decile).value_counts(normalize=True)
    play_share = plays.groupby(decile).sum() / plays.sum()
    return pd.DataFrame(
        {
            "popularity_decile": list(range(1, 11)),
            "share_of_recommendations": [float(rec_share.get(d, 0.0)) for d in range(1, 11)],
            "share_of_plays": [float(play_share.get(d, 0.0)) for d in range(1, 11)],
        }
    )


def slice_table(
    test: pd.DataFrame, scores: np.ndarray, frames: dict[str, pd.DataFrame], seed: int
) -> pd.DataFrame:
    """NDCG and friends by tier, country and age bucket with bootstrap CIs (per request)."""
    ranked = test.assign(_s=scores).sort_values([REQUEST, "_s"], ascending=[True, False])
    recs = {str(r): list(g[C.ITEM_ID])[:10] for r, g in ranked.groupby(REQUEST)}
    relevant = {str(r): set(g.loc[g[LABEL] >= 2, C.ITEM_ID]) for r, g in test.groupby(REQUEST)}
    per_request = per_user_metrics(recs, relevant, 10)
    users = frames["users"].drop_duplicates(C.USER_ID).set_index(C.USER_ID)
    who = test.drop_duplicates(REQUEST)[[REQUEST, C.USER_ID]]
    requests = pd.DataFrame(
        {
            C.USER_ID: who[REQUEST].astype(str).to_numpy(),
            C.TIER: users.loc[who[C.USER_ID], C.TIER].to_numpy(),
            C.COUNTRY: users.loc[who[C.USER_ID], C.COUNTRY].to_numpy(),
            C.AGE_BUCKET: users.loc[who[C.USER_ID], C.AGE_BUCKET].to_numpy(),
        }
    )
    return by_slice(per_request, requests, [C.TIER, C.COUNTRY, C.AGE_BUCKET], n_boot=300, seed=seed)


@task(name="ranker-impressions", cache_policy=NO_CACHE)
def log_impressions(
    settings: Settings,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], pd.Timestamp, int]:
    """Candidates before the cutoff, then graded slates over the last days (no store
    features); returns the log, the lake's frames, the cutoff and the days logged."""
    world, frames = _simulated_world(settings)
    end = frames["events"][C.TS].max().floor("D")
    history = (end - frames["events"][C.TS].min().floor("D")).days + 1
    days = log_days(history)
    cutoff = (end - pd.Timedelta(days=days - 1)).to_pydatetime()
    past = frames["events"][frames["events"][C.TS] < cutoff]
    model = train_candidates(
        past, frames["items"], frames["users"], frames["onboarding"],
        settings.candidates, settings.seed, now=cutoff,
    )  # fmt: skip
    policy = load_label_policy(settings.config_path / "labels.yaml")
    users = sorted(set(past[C.USER_ID]))[:MAX_LISTENERS]
    log = simulated_impressions(
        model, world, frames["items"], History.from_events(past, frames["items"]),
        users, cutoff, days, policy, settings.seed,
    )  # fmt: skip
    log[TIER] = log[C.USER_ID].map(
        frames["users"].drop_duplicates(C.USER_ID).set_index(C.USER_ID)[C.TIER]
    )
    return log, frames, pd.Timestamp(cutoff), days


def temporal_split(
    log: pd.DataFrame, cutoff: pd.Timestamp, days: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The logged days from `cutoff`: all but the last two to train, one to early-stop, the
    last to test."""
    day = pd.Timedelta(days=1)
    fit_end, test_start = cutoff + (days - 2) * day, cutoff + (days - 1) * day
    train = log[log[C.TS] < fit_end]
    valid = log[(log[C.TS] >= fit_end) & (log[C.TS] < test_start)]
    return train, valid, log[log[C.TS] >= test_start]


# What the join asks the feature service for: the ranker's store inputs, plus the age bucket
# the minimization policy reads.
STORE_REQUEST: tuple[str, ...] = (*STORE_INPUTS, "user_age_bucket")


@task(name="ranker-store-features", cache_policy=NO_CACHE)
def join_store_features(settings: Settings, log: pd.DataFrame) -> pd.DataFrame:
    """Every row's listener, item and context features as of its request time, in one Feast
    point-in-time retrieval over `ranker_features_v1`, then the model inputs (`FEATURES`)."""
    for view in (catalog.USER_VIEW, catalog.ITEM_VIEW):
        if not feature_table_path(settings.features_dir, view).is_file():
            raise ValueError(
                f"the ranker reads {view} from the feature store, but "
                f"{feature_table_path(settings.features_dir, view)} does not exist: run the "
                "features flow first (`crossfade features materialize` or `crossfade run`)"
            )
    entity_df = log[[C.USER_ID, C.ITEM_ID, *REQUEST_INPUTS]].reset_index(drop=True)
    entity_df[catalog.EVENT_TIMESTAMP] = pd.to_datetime(log[C.TS], utc=True).to_numpy()
    policy = load_policy(settings.config_path / settings.features.policy_file)
    joined = training_set(open_store(settings), entity_df, policy, RANKER_SERVICE, STORE_REQUEST)
    if len(joined) != len(log):
        raise RuntimeError(f"the feature join returned {len(joined)} rows for {len(log)}")
    rows = log.reset_index(drop=True)
    raw = pd.concat(
        [rows.drop(columns=[c for c in STORE_REQUEST if c in rows]), joined[list(STORE_REQUEST)]],
        axis=1,
    )
    return pd.concat(
        [raw.drop(columns=[c for c in FEATURES if c in raw]), model_inputs(raw)], axis=1
    )


def _importance_plot(model: RankerModel, folder: Path) -> Path:
    importance = model.importance()
    importance = importance.div(importance.sum().replace(0, 1), axis=1).sort_values(
        importance.columns[0]
    )
    fig, ax = plt.subplots(figsize=(7, 5))
    importance.plot.barh(ax=ax)
    ax.set_xlabel("share of total gain")
    ax.set_title("Ranker feature importance per tier")
    fig.tight_layout()
    path = folder / "feature_importance.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def model_card(metrics: dict[str, float], baseline: dict[str, float], tags: dict[str, str]) -> str:
    """Markdown card: data, metrics per slice against the candidate-score order, limits."""
    rows = "\n".join(
        f"| {k} | {v:.4f} | {baseline.get(k, float('nan')):.4f} |"
        for k, v in sorted(metrics.items())
    )
    return (
        "# crossfade-ranker\n\nLightGBM LambdaRank, one booster per tier with the tier's label "
        "gains (`configs/labels.yaml`), over candidate-model features.\n\n"
        f"- data snapshot: {tags.get('crossfade.data_snapshot')}\n"
        f"- code: {tags.get('crossfade.git_sha')}\n"
        f"- feature service: {tags.get('crossfade.feature_service')}\n\n"
        "## Offline metrics on the last day of logged impressions\n\n"
        "| metric | ranker | candidate-score order |\n|---|---|---|\n"
        f"{rows}\n\n## Known limits\n\nImpressions come from the simulator's response model with "
        "a uniformly randomised slate; labels exist only for items the listener reached.\n"
    )


@flow(name="train-ranker")
def train_ranker_flow(profile: str | None = None) -> dict[str, Any]:
    """Train, evaluate, gate and register the ranker; returns the outcome."""
    settings = load_settings(profile)
    raw_log, frames, cutoff, days = log_impressions(settings)
    log_frame = join_store_features(settings, raw_log)
    train, valid, test = temporal_split(log_frame, cutoff, days)
    policy = load_label_policy(settings.config_path / "labels.yaml")
    model = fit_ranker(train, valid, list(FEATURES), REQUEST, TIER, policy)
    scores = model.predict(test, TIER)  # scored once, used by every measurement below
    served = served_lists(test, scores, frames)  # what listeners would see, computed once
    metrics = _offline_metrics(test, scores, frames, served)
    baseline = _offline_metrics(test, test["source_score"].to_numpy(), frames)
    tradeoff = rerank_tradeoff(test, scores, frames, served)
    off, on = tradeoff.iloc[0], tradeoff.iloc[1]
    metrics["rerank_ndcg_cost"] = float(off["ndcg"] - on["ndcg"])
    metrics["rerank_diversity_gain"] = float(on["diversity"] - off["diversity"])
    metrics["rerank_long_tail_gain"] = float(on["long_tail_share"] - off["long_tail_share"])
    tree = load_metric_tree(default_metric_tree_path())
    c = client(settings.tracking_uri)
    champion = version_by_alias(c, MODEL_NAME, CHAMPION)
    champion_metrics, compared = None, []
    if champion is not None:
        champion_metrics = champion_on_holdout(settings, test, frames)
        source = "re-scored on this run's holdout"
        if champion_metrics is None:
            champion_metrics, source = run_metrics(c, champion), "its own logged holdout metrics"
        compared = [f"champion v{champion.version}: {source}"]
    decision = decide(metrics, champion_metrics, tree)
    decision = GateDecision(decision.passed, decision.promote_to, [*compared, *decision.reasons])
    audit = audit_top_lists(settings, test, scores, frames, served)
    decision = with_audit(decision, audit.passed, audit.reasons)
    metrics.update({f"audit_{k}": float(v) for k, v in audit.metrics.items()})
    tags = lineage_tags(settings, RANKER_SERVICE)
    tags["crossfade.candidate_model_version"] = serving_candidates_version(c, settings)
    logged = {k: float(v) for k, v in metrics.items() if v == v}
    logged.update({f"baseline_{k}": float(v) for k, v in baseline.items() if v == v})
    with tempfile.TemporaryDirectory() as tmp:
        png = _importance_plot(model, Path(tmp))
        run_id, version = register_ranker(
            model, settings, test, logged, tags, model_card(metrics, baseline, tags), png
        )
    report = write_evaluation_report(
        settings.reports_dir / "ranker" / f"v{version}",
        f"crossfade-ranker v{version}",
        {k: v for k, v in metrics.items() if v == v},
        baseline,
        champion_metrics,
        slice_table(test, scores, frames, settings.seed),
        tradeoff,
        popularity_curve(test, scores, frames),
        decision.reasons,
        {"impressions": f"{len(log_frame):,} rows, {log_frame[REQUEST].nunique():,} requests"},
        passed=decision.passed,
        extra_sections={AUDIT_SECTION: audit_section_html(audit)},
    )
    c.log_artifact(run_id, str(report), artifact_path="evaluation_report")
    c.set_model_version_tag(MODEL_NAME, version, "crossfade.report", str(report))
    c.set_model_version_tag(
        MODEL_NAME, version, "crossfade.gate", "passed" if decision.passed else "refused"
    )
    c.set_model_version_tag(
        MODEL_NAME, version, "crossfade.gate_reasons", " | ".join(decision.reasons)[:4900]
    )
    if decision.passed and decision.promote_to:
        promote(c, MODEL_NAME, version, decision.promote_to)
    outcome = RankerOutcome(
        version, run_id, metrics, baseline, decision.passed, decision.promote_to,
        decision.reasons, str(report),
    )  # fmt: skip
    verdict = f"passed → {decision.promote_to}" if decision.passed else "REFUSED"
    create_markdown_artifact(
        f"# Ranker v{version}: gate {verdict}\n\n" + "\n".join(f"- {r}" for r in decision.reasons),
        key="ranker-summary",
    )
    log.info("ranker registered", extra={"version": version, "gate": decision.passed})
    return outcome.to_dict()
