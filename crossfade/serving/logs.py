"""Request and feedback logs: JSON lines under `<data root>/logs/<kind>/`, written in batches.

The request path only appends a dict to an in-memory buffer; a batch is written when it
reaches `batch_size` rows, when `flush()` is called (a timer in the service, and shutdown)
or at `close()`. Each process writes its own file per UTC day (`<slot>-<pid>-<day>.jsonl`),
so processes never interleave lines. Every row has a `listener_id` column: the privacy
erasure reads and rewrites these files.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REQUESTS = "requests"
FEEDBACK = "feedback"


def logs_dir(data_root: Path, kind: str) -> Path:
    """Folder of one kind of serving log under the data root."""
    if kind not in (REQUESTS, FEEDBACK):
        raise ValueError(f"unknown serving log kind {kind!r}; use {REQUESTS!r} or {FEEDBACK!r}")
    return data_root / "logs" / kind


class BatchedLog:
    """Thread-safe buffered appender of JSON rows."""

    def __init__(
        self,
        folder: Path,
        slot: str,
        batch_size: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.folder = folder
        self.slot = slot
        self.batch_size = batch_size
        self.clock = clock
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.written = 0

    def append(self, row: dict[str, Any]) -> None:
        """Buffer one row (must carry `listener_id`); writes a batch when the buffer is full."""
        if "listener_id" not in row:
            raise ValueError("a serving log row needs a listener_id (privacy erasure reads it)")
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= self.batch_size
        if full:
            self.flush()

    def flush(self) -> int:
        """Write the buffered rows now; returns how many were written."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        text = "".join(json.dumps(r, default=str, separators=(",", ":")) + "\n" for r in rows)
        with self._write_lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{self.slot}-{os.getpid()}-{self.clock():%Y-%m-%d}.jsonl"
            with path.open("a", encoding="utf-8") as handle:
                handle.write(text)
            self.written += len(rows)
        return len(rows)

    def close(self) -> None:
        """Write whatever is left (at shutdown)."""
        self.flush()


def read_rows(folder: Path) -> list[dict[str, Any]]:
    """Every row of every log file in `folder` (for tests, audits and the erasure)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            rows.extend(json.loads(line) for line in handle if line.strip())
    return rows
