"""GX Data Docs: the HTML view of a batch's expectation results, for people.

Each batch gets its own site under `reports/data_docs/<batch_id>/`: an ephemeral context
only holds the current run's results, so a shared site would list just the last batch and
orphan the pages of earlier ones.
"""

from __future__ import annotations

import logging
from pathlib import Path

from validation.gx_runtime import GxRuntime

log = logging.getLogger("crossfade.validation")


def docs_dir(reports_dir: Path, batch_id: str) -> Path:
    """Where the Data Docs of a batch go."""
    return reports_dir / "data_docs" / batch_id


def build_data_docs(runtime: GxRuntime, reports_dir: Path, batch_id: str) -> str | None:
    """Build the batch's Data Docs; returns index.html's path, or None if rendering failed.

    Rendering is a report, not a check: if it fails the verdict stands and the reason is
    logged, rather than turning a valid batch into a rejected one.
    """
    try:
        index = runtime.build_docs(docs_dir(reports_dir, batch_id))
    except Exception as exc:  # GX renderers raise a wide variety of errors
        log.warning("data docs could not be built", extra={"batch_id": batch_id, "error": str(exc)})
        return None
    return str(index) if index.is_file() else None
