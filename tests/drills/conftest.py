"""Set-up shared by the drills that run a whole stack on the trained test world."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crossfade.config import Settings
from deployments.serve import Stack, start_stack
from tests.fixtures.stack import stack_settings, trained_world

# A loaded 2-core machine: generous stage budgets and slot timeouts, so slow answers stay
# answers (not fallbacks or timeouts) and only the injected fault decides a drill.
LOADED_BUDGET_MS = 1000.0
LOADED_GATEWAY = {"slot_timeout_ms": 2500, "last_resort_timeout_ms": 2500}


def drill_settings(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    guardrails: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    loaded_budgets: bool = True,
    serving: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
) -> Settings:
    """Settings of one drill module's stack on the trained world, in folder `name`.

    Slot timeouts are sized for a loaded machine (`gateway` overrides them), and so are the
    stage budgets unless `loaded_budgets` is false; `serving` adds to the serving section.
    """
    trained = trained_world(tmp_path_factory)
    budgets = {s: LOADED_BUDGET_MS for s in trained.serving.budgets_ms} if loaded_budgets else {}
    return stack_settings(
        trained,
        tmp_path_factory.mktemp(name),
        guardrails=guardrails,
        serving={**({"budgets_ms": budgets} if budgets else {}), **(serving or {})},
        gateway={**LOADED_GATEWAY, **(gateway or {})},
    )


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[Stack]:
    """The module's stack, controller loop included, started once and stopped at the end."""
    with start_stack(settings, controller=True) as running:
        yield running
