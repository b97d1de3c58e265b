"""Ranking baselines on MovieLens-100K, next to the STACK-NOTES quality anchors.

MostPopular, ItemKNN (cosine, k=100), ALSBaseline (implicit ALS alone) and EASE (lambda=500)
are fitted on the per-user random 80/20 split (seed 42) of ML-100K read from the recbole
wheel through the importer, with every rating as a positive, and scored by full ranking
excluding training items (P@10, R@10, NDCG@10 over all 943 users). `--tune` also prints the
grids (ALS factors x regularization x alpha, EASE lambda, kNN size) the defaults were chosen
from: scored on an inner per-user 80/20 split (seed 42) of the TRAINING data, never on the
test set, so the ALS baseline (and the full stack's base models) are honest.

Run: `python -m benchmarks.baselines [--tune]`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's ALS wants BLAS single-threaded

from benchmarks.report import write_section
from crossfade.evaluation.baselines import (
    EASE,
    ALSBaseline,
    ItemKNN,
    MatrixRecommender,
    MostPopular,
)
from crossfade.evaluation.protocol import full_ranking_eval, ml100k_split
from crossfade.evaluation.splits import ratio_split

COMMAND = "python -m benchmarks.baselines"
SEED = 42
K = 10
# STACK-NOTES.md "Quality anchors on MovieLens-100K": (P@10, R@10, NDCG@10)
# (the ALS-only row is compared with the "iALS (tuned)" anchor)
ANCHORS: dict[str, tuple[float, float, float]] = {
    "most popular": (0.196, 0.117, 0.220),
    "item kNN (cosine, k=100)": (0.343, 0.210, 0.399),
    "ALS only": (0.356, 0.234, 0.422),
    "EASE (lambda=500)": (0.379, 0.240, 0.454),
}


def baselines() -> dict[str, MatrixRecommender]:
    """The four baselines with the settings the anchors name."""
    return {
        "most popular": MostPopular(),
        "item kNN (cosine, k=100)": ItemKNN(neighbours=100),
        "ALS only": ALSBaseline(seed=SEED),
        "EASE (lambda=500)": EASE(l2=500.0),
    }


def run() -> list[dict[str, float | str]]:
    """Fit and score every baseline on the seed-42 split; one row per model."""
    train, test = ml100k_split(SEED)
    rows: list[dict[str, float | str]] = []
    for name, model in baselines().items():
        start = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - start
        metrics = full_ranking_eval(model, train, test, K)
        rows.append({"model": name, "fit_s": fit_s, **metrics})
        print(f"{name:28s} ndcg@10={metrics['ndcg@10']:.3f} fit={fit_s:.2f}s", flush=True)
    return rows


def tune() -> str:
    """Inner-validation NDCG@10 of the ALS, EASE and kNN grids, as markdown tables: fitted on
    an inner 80/20 split of the seed-42 training data and scored on its inner 20%."""
    train, _ = ml100k_split(SEED)
    inner = ratio_split(train, 0.2, SEED)
    fit, valid = inner.train, inner.test

    def score(model: MatrixRecommender) -> float:
        return full_ranking_eval(model.fit(fit), fit, valid, K)["ndcg@10"]

    lines = ["| factors | regularization | alpha | inner NDCG@10 |", "|---|---|---|---|"]
    for f, r, a in itertools.product([16, 32, 64, 128], [1.0, 10.0, 50.0], [1.0, 5.0, 20.0]):
        ndcg = score(ALSBaseline(factors=f, regularization=r, alpha=a, seed=SEED))
        lines.append(f"| {f} | {r:g} | {a:g} | {ndcg:.4f} |")
        print(lines[-1], flush=True)
    lines += ["", "| model | setting | inner NDCG@10 |", "|---|---|---|"]
    for l2 in (100.0, 200.0, 300.0, 500.0, 800.0, 1200.0):
        lines.append(f"| EASE | lambda={l2:g} | {score(EASE(l2=l2)):.4f} |")
        print(lines[-1], flush=True)
    for k in (50, 100, 200):
        lines.append(f"| item kNN | k={k} | {score(ItemKNN(neighbours=k)):.4f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def table(rows: list[dict[str, float | str]]) -> str:
    """Markdown table of measured numbers beside the anchors (measured / anchor / delta)."""
    lines = [
        "| model | P@10 | R@10 | NDCG@10 | anchor P@10 | anchor R@10 | anchor NDCG@10 "
        "| NDCG delta | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ap, ar, an = ANCHORS[str(row["model"])]
        p, r, n = (float(row[f"{m}@{K}"]) for m in ("precision", "recall", "ndcg"))
        lines.append(
            f"| {row['model']} | {p:.3f} | {r:.3f} | {n:.3f} | {ap:.3f} | {ar:.3f} | {an:.3f} "
            f"| {n - an:+.3f} | {float(row['fit_s']):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the baselines, print the table and write the `baselines` benchmark section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="also run the inner-validation grids")
    args = parser.parse_args()
    rows = run()
    body = table(rows)
    als = ALSBaseline()
    body += (
        "\n\nML-100K from the recbole wheel via the importer, all ratings positive, per-user"
        f" random 80/20 split (seed {SEED}), full ranking excluding training items, 943 users."
        f" ALS only: factors={als.factors}, regularization={als.regularization:g},"
        f" alpha={als.alpha:g}, iterations={als.iterations} (confidence 1 + alpha*log1p(1)),"
        " chosen on an inner 80/20 split of the training data (never the test set; earlier"
        " defaults 32/10/1 had been picked on this split's test set). EASE lambda=500 also"
        " wins on the inner split; kNN keeps the anchor's k=100 here (k=200 won inner"
        " validation and is what the full stack uses). Anchor columns: STACK-NOTES.md (ALS"
        " only vs iALS (tuned))."
    )
    if args.tune:
        body += (
            "\n\nInner-validation grids (ALS 15 iterations; fitted on an inner 80/20 split of"
            " the training data, scored on its inner 20%, so NDCG is lower than on test):\n\n"
            + tune()
        )
    print(body)
    write_section("baselines", body, COMMAND + (" --tune" if args.tune else ""))


if __name__ == "__main__":
    main()
