"""The Great Expectations side of the gate: an ephemeral context and its checkpoints.

Importing GX takes seconds, so nothing imports it at module level: the first
`GxRuntime()` does. Each validation gets a fresh in-memory (ephemeral) context holding one
pandas data source; every suite is registered as data asset -> whole-dataframe batch
definition -> ValidationDefinition -> Checkpoint, and a part is validated by running its
checkpoint with the part's dataframe as the batch parameter. Results stay in the context's
in-memory validation-results store, from which Data Docs are rendered.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations import ExpectationSuite

log = logging.getLogger("crossfade.validation")
SITE = "crossfade"


def _tune_gx() -> None:
    """Keep GX quiet, and skip its per-batch data fingerprint.

    For every in-memory dataframe under 1 GB, GX's pandas engine hashes every cell
    (`hash_pandas_object`) only to store a `pandas_data_fingerprint` batch marker. Nothing
    here reads it (a part is identified by its file), and it costs about as much as all the
    expectations together, so the threshold is set to 0. If a GX release drops the constant,
    this does nothing and validation stays correct, only slower.
    """
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from great_expectations.execution_engine import pandas_execution_engine

    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0


class GxRuntime:
    """One ephemeral GX context with a checkpoint per registered suite."""

    def __init__(self, run_name: str, sample_rows: int) -> None:
        """Create the context (progress bars off) and its pandas data source."""
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _tune_gx()
        self._gx = gx
        self.run_name = run_name
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        self.source = self.context.data_sources.add_pandas("staged_batch")
        # BASIC: counts and a few unexpected values. Row positions (SUMMARY) cost a third
        # more on every run, so sample rows are looked up afterwards (findings.py).
        self.result_format: dict[str, Any] = {
            "result_format": "BASIC",
            "partial_unexpected_count": max(sample_rows, 8),
        }
        self._checkpoints: dict[str, Any] = {}

    def register(self, suite: ExpectationSuite) -> None:
        """Add a suite with its asset, batch definition, validation definition and checkpoint."""
        gx = self._gx
        name = suite.name
        suite = self.context.suites.add(suite)
        asset = self.source.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(f"{name}.whole")
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        self._checkpoints[name] = self.context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                result_format=self.result_format,
            )
        )

    def has(self, name: str) -> bool:
        """Whether a suite of that name is registered."""
        return name in self._checkpoints

    def run(self, name: str, frame: pd.DataFrame, label: str) -> list[Any]:
        """Run a suite's checkpoint on one dataframe; returns the expectation results."""
        from great_expectations.core.run_identifier import RunIdentifier

        safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{self.run_name}.{label}")
        run_id = RunIdentifier(run_name=safe, run_time=datetime.now(UTC))
        outcome = self._checkpoints[name].run(batch_parameters={"dataframe": frame}, run_id=run_id)
        return [r for suite_result in outcome.run_results.values() for r in suite_result.results]

    def build_docs(self, base_directory: Path) -> Path:
        """Render Data Docs (HTML) of every result of this run into `base_directory`."""
        base_directory.mkdir(parents=True, exist_ok=True)
        self.context.add_data_docs_site(
            SITE,
            {
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(base_directory),
                },
            },
        )
        self.context.build_data_docs(site_names=[SITE])
        return base_directory / "index.html"
