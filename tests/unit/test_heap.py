"""A loaded slot freezes its models out of the cyclic collector's reach (see settle_heap)."""

from __future__ import annotations

import gc

from deployments.heap import settle_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector can free it


def test_settle_heap_freezes_what_is_alive_and_reclaims_dropped_cycles() -> None:
    try:
        models = [{"item": i, "vector": [i] * 3} for i in range(20_000)]
        old = _Node()  # a cycle the first load holds
        settle_heap()
        frozen = gc.get_freeze_count()
        assert frozen >= len(models)  # full collections no longer walk these
        assert not [o for o in gc.get_objects() if isinstance(o, _Node)]  # frozen: out of view

        del models, old  # a reload drops the old pipeline...
        settle_heap()  # ...and its settle unfreezes, collects, refreezes
        gc.unfreeze()
        assert not [o for o in gc.get_objects() if isinstance(o, _Node)]  # the cycle was freed
    finally:
        gc.unfreeze()
