"""``forward``: one forward pass per iteration, one phase named ``forward``."""
from __future__ import annotations

from typing import Any

from .base import PhaseScope, Workload


class Forward(Workload):
    name = "forward"
    phases = ("forward",)

    def iteration(self, prep: Any, scope: PhaseScope) -> None:
        with scope("forward"):
            prep.call(prep.model)
