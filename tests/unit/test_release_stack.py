"""`ensure_stack` never starts a second stack over a live supervised one (review finding 12)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from crossfade.config import Settings
from flows import release


@pytest.fixture
def supervisor(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """A live process that counts as this data root's supervisor (named in serve.pid) but
    never brings a gateway up, as one whose gateway is stuck in its restart backoff."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "-m", "deployments.serve"]
    )
    folder = settings.data_root / "serve"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "serve.pid").write_text(str(process.pid))
    yield process
    process.kill()
    process.wait(timeout=10)


def test_a_live_supervisor_without_a_gateway_is_named_not_doubled(
    settings: Settings, supervisor: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(release, "STACK_START_SECONDS", 1)
    with pytest.raises(RuntimeError) as raised:
        release.ensure_stack(settings, None)
    message = str(raised.value)
    assert f"PID {supervisor.pid}" in message
    assert "not starting a second stack" in message and "crossfade stop" in message
    assert supervisor.poll() is None  # left alone
    # no second `deployments.serve` was started: serve.pid still names the live supervisor
    pid_file = settings.data_root / "serve" / "serve.pid"
    assert pid_file.read_text() == str(supervisor.pid)
    assert not (settings.data_root / "serve" / "serve.log").exists()
