"""The erased-listeners set: listeners serving must answer non-personalized after an erasure.

`crossfade privacy erase` adds the listener's serving id (the pseudonym the recommenders see)
before it touches any store, so serving stops personalizing first. The set is one JSON file
under the data root (`<data root>/privacy/erased_listeners.json`) on every profile, like the
serving logs the recommenders already share, written atomically. Recommenders read it through
`ErasedListeners`: a membership test costs a clock read and a set lookup; at most every
`privacy.erased_refresh_seconds` one stat checks the file, and a changed file is re-read on a
background thread (never on the request path), the new set swapped in when read.
The set holds pseudonyms only (raw ids only where the stores themselves keep raw ids).
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from crossfade.config import Settings
from crossfade.data import lake
from crossfade.safety import paths

ERASED_FILE = "erased_listeners.json"
FORMAT_VERSION = 1

log = logging.getLogger(__name__)


def erased_path(settings: Settings) -> Path:
    """Where the erased-listeners set lives."""
    return paths.privacy_dir(settings) / ERASED_FILE


def _read(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    payload = json.loads(path.read_text(encoding="utf-8"))
    listeners = payload.get("listeners", {}) if isinstance(payload, dict) else {}
    if not isinstance(listeners, dict):
        raise ValueError(f"{path}: 'listeners' is not an object")
    return listeners


def read_erased(settings: Settings) -> dict[str, dict[str, str]]:
    """Every erased serving id with when it was erased."""
    return _read(erased_path(settings))


def record_erased(settings: Settings, serving_ids: Iterable[str]) -> Path:
    """Add serving ids to the set (idempotent; keeps the first erasure time); returns the file.

    Read-modify-write under an exclusive lock on a sidecar file, so two erasures at once
    both land; the file itself is replaced atomically, so readers never see half of it.
    """
    path = erased_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{ERASED_FILE}.lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        listeners = _read(path)
        at = datetime.now(UTC).isoformat()
        for sid in serving_ids:
            listeners.setdefault(sid, {"erased_at": at})
        payload = {"version": FORMAT_VERSION, "listeners": listeners}
        lake.atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True))
    return path


class ErasedListeners:
    """Cached membership in the erased set, refreshed at most every `refresh_seconds`.

    An unreadable file keeps the last set read (and logs it): forgetting who was erased
    would personalize them again.
    """

    def __init__(
        self,
        path: Path,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self.path = path
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self.background = background  # False: re-read in the caller (tests, tools)
        self._ids: frozenset[str] = frozenset()
        self._stamp: tuple[int, int, int] | None = None
        self._reading = threading.Lock()
        self._next = clock() + refresh_seconds
        self._refresh(background=False)  # at load time: the first answer already knows

    @classmethod
    def of(cls, settings: Settings) -> ErasedListeners:
        """The set these settings name, with their refresh interval."""
        return cls(erased_path(settings), settings.privacy.erased_refresh_seconds)

    def __contains__(self, listener_id: object) -> bool:
        now = self.clock()
        if now >= self._next:
            self._next = now + self.refresh_seconds
            self._refresh(background=self.background)
        return listener_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def _refresh(self, background: bool) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return  # never made, or moved away: keep who is known to be erased
        except OSError as exc:
            log.warning("cannot stat the erased-listeners set", extra={"error": str(exc)})
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp or not self._reading.acquire(blocking=False):
            return  # unchanged, or a read is already under way
        if background:
            threading.Thread(target=self._load, args=(stamp,), daemon=True).start()
        else:
            self._load(stamp)

    def _load(self, stamp: tuple[int, int, int]) -> None:
        try:
            self._ids = frozenset(_read(self.path))
            self._stamp = stamp
        except (OSError, ValueError) as exc:
            log.warning(
                "cannot read the erased-listeners set: keeping the last one read",
                extra={"path": str(self.path), "error": str(exc)},
            )
        finally:
            self._reading.release()
