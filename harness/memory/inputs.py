"""What an iteration takes in, for both memory halves (forecast and measurement) to count as ``inputs``."""
from __future__ import annotations

from typing import Any


def iteration_inputs(workload: Any, prep: Any) -> list:
    """The call's arguments, a training step's targets and a generation's prompt (the workload attributes
    that hold them; None where a workload has none): the objects whose tensors are ``inputs``."""
    return [prep.call.args, prep.call.kwargs, getattr(workload, "targets", None), getattr(workload, "prompt", None)]
