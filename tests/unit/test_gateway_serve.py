"""The launcher's pure parts: settings travel to child processes intact; ports and refs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from crossfade.config import Settings, load_settings
from deployments.process import HOST
from deployments.serve import PortInUseError, Ports, port_is_free, settings_env, slot_refs
from tests.conftest import SMALL_WORLD

CHILD = (
    "import json; from crossfade.config import load_settings; s = load_settings(); "
    "print(json.dumps({'dump': s.model_dump(mode='json'), "
    "'token': s.serving.admin_token.get_secret_value()}))"
)


def test_a_child_process_loads_exactly_the_callers_settings(tmp_path: Path) -> None:
    settings = load_settings(
        "local",
        data_root=tmp_path / "data",
        simulator=SMALL_WORLD,
        seed=7,
        serving={"admin_token": "s3cret", "slot": "green"},
        gateway={"port": 0, "slot_timeout_ms": 123.0},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSFADE_")}
    env.update(settings_env(settings))
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    child = json.loads(out.stdout)
    assert child["dump"] == settings.model_dump(mode="json")
    assert child["token"] == "s3cret"  # secrets are revealed to the child, not masked


def test_ports_resolve_zero_to_distinct_free_ports(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = settings.model_copy(
        update={
            "gateway": settings.gateway.model_copy(
                update={"port": 0, "blue_port": 0, "green_port": 0, "shadow_port": 0}
            )
        }
    )
    ports = Ports.resolve(fixed)
    values = [ports.gateway, ports.blue, ports.green, ports.shadow]
    assert len(set(values)) == 4 and all(p > 0 for p in values)
    # fixed ports pass through as configured (whether a stack of this machine holds them now
    # is the next test's subject)
    monkeypatch.setattr("deployments.serve.port_is_free", lambda port: True)
    assert Ports.resolve(settings) == Ports(8700, 8701, 8702, 8703)


def test_clashing_fixed_ports_are_refused(tmp_path: Path) -> None:
    settings = load_settings("local", data_root=tmp_path, gateway={"blue_port": 8700})
    with pytest.raises(ValueError, match="ports must differ"):
        Ports.resolve(settings)


def test_slots_start_on_champion_or_the_rollouts_assignment(settings: Settings) -> None:
    idle = slot_refs(settings, {})
    assert idle == {s: {"candidates": "champion", "ranker": "champion"} for s in idle}
    assigned = {
        "blue": {"candidates": "3", "ranker": "2"},
        "green": None,
        "shadow": {"candidates": "4", "ranker": "5"},
    }
    refs = slot_refs(settings, assigned)
    assert refs["blue"] == refs["green"] == {"candidates": "3", "ranker": "2"}
    assert refs["shadow"] == {"candidates": "4", "ranker": "5"}


def test_a_port_already_bound_is_refused_with_its_number(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((HOST, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        settings = load_settings(
            "local",
            data_root=tmp_path,
            gateway={"port": taken, "blue_port": 0, "green_port": 0, "shadow_port": 0},
        )
        with pytest.raises(PortInUseError, match=f"port\\(s\\) {taken} .*crossfade stop"):
            Ports.resolve(settings)
    assert port_is_free(taken)
