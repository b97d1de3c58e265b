"""Run every benchmark in turn; each rewrites its own section of docs/benchmarks.md."""

from __future__ import annotations

import runpy

BENCHMARKS = (
    "benchmarks.simulate",
    "benchmarks.validate",
    "benchmarks.online_features",
    "benchmarks.ann",
    "benchmarks.candidate_recall",
    "benchmarks.baselines",
    "benchmarks.quality",
    "benchmarks.quality_seeds",
    "benchmarks.ranker",
    "benchmarks.bots",
    "benchmarks.serving_pipeline",
    "benchmarks.serving",
    "benchmarks.lifecycle",
)


def main() -> None:
    """Run the benchmarks as if each were started with `python -m`."""
    for name in BENCHMARKS:
        print(f"== {name}")
        runpy.run_module(name, run_name="__main__")


if __name__ == "__main__":
    main()
