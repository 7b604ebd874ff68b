"""What a workload is: how the model is driven, in named phases.

A workload's :meth:`Workload.iteration` runs one iteration (one forward; one generation;
one training step) and wraps each phase in ``scope(phase_name)``. Every stage passes its
own scope, so the timed, profiled and counted iterations are the same code:

- measure: a scope that synchronizes and reads the clock around the phase;
- profile: ``torch.profiler.record_function(phase)`` inside the iteration's label;
- count: the counter's ``phase(name)``, which tags every dispatched op with the phase.

To add a workload, copy ``forward.py``, name its phases, and register it in
``workloads/__init__.py``.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager

PhaseScope = Callable[[str], ContextManager]


def no_scope(phase: str) -> ContextManager:
    """A scope that does nothing (warm-up iterations)."""
    return contextlib.nullcontext()


class Workload:
    """The forward-only base: subclasses set ``name``/``phases`` and override :meth:`iteration`."""

    name: str = "forward"
    phases: tuple[str, ...] = ("forward",)
    label: str = "model_inference"  # record_function range around each profiled iteration
    option_names: tuple[str, ...] = ()  # options this workload takes (``--prompt-len`` -> ``prompt_len``)
    computes_gradients: bool = False  # multi-rank runs wrap the model in DistributedDataParallel when True

    def __init__(self, **options: Any):
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            from ...errors import HarnessError

            flags = ", ".join("--" + o.replace("_", "-") for o in unknown)
            raise HarnessError(f"{flags} does not apply to --workload {self.name}")
        self.options = options

    def setup(self, prep: Any) -> None:
        """Put the model in the mode this workload needs (eval for inference)."""
        prep.model.eval()

    def teardown(self, prep: Any) -> None:
        """Undo what the iterations did to a model the caller owns (nothing for inference)."""

    def grad_mode(self) -> ContextManager:
        """The autograd mode every stage runs the iteration in."""
        import torch

        return torch.inference_mode()

    def iteration(self, prep: Any, scope: PhaseScope) -> None:
        raise NotImplementedError

    def count(self, prep: Any) -> Any:
        """Counted work of one iteration: the same :meth:`iteration` with the counter's phase scope
        (:class:`harness.count.Counts`; every op tagged with its phase)."""
        from ...count import Counter

        counter = Counter(prep.model, default_phase=self.phases[0])
        with counter, self.grad_mode():
            self.iteration(prep, counter.phase)
        return counter.result()

    def summary_extra(self, parts: Any) -> dict[str, Any]:
        """Workload-specific summary.json keys (``parts``: :class:`harness.pipeline.assemble.Parts`)."""
        return {}

    @staticmethod
    def render(summary: dict) -> str:
        """Terminal lines for this workload's own summary keys ('' for forward)."""
        return ""

    def tables(self, parts: Any) -> dict[str, Any]:
        """Workload-specific tables, written as ``<name>.csv`` in the run directory."""
        return {}

    def items_per_iteration(self, prep: Any) -> int:
        """Samples an iteration processes (throughput = items / p50)."""
        return prep.batch_size

    def config_extra(self) -> dict[str, Any]:
        """Extra config-key parts (empty for forward, so its key is unchanged)."""
        return {} if self.name == "forward" else {"workload": self.name}
