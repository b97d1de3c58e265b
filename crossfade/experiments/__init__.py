"""Experimentation: assignment, planning, analysis, sequential tests, decisions, simulated A/B.

See docs/experiments.md. `erase_listener(settings, listener_id)` removes a listener's rows
from every exposure log (privacy erasure).
"""

from crossfade.experiments.assignment import erase_listener

__all__ = ["erase_listener"]
