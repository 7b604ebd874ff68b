"""The counter core: exact parameters, MACs, flops and bytes of a forward pass or any phased workload.

``count(model, inputs) -> Counts`` (one forward) and ``Counter(model)`` (phases of any
workload: prefill/decode, forward/backward/optimizer) count at the dispatch level (a
TorchDispatchMode), so it sees what really runs, fused kernels included, with a
formula registry keyed by aten op (see ``registry.py`` and ``formulas_*.py``).
"""
from __future__ import annotations

import sys
import types

from . import (  # noqa: F401  (importing registers the formulas)
    formulas_attention,
    formulas_backward,
    formulas_conv,
    formulas_linear,
    formulas_norm,
    formulas_optim,
    formulas_pointwise,
    formulas_pool,
    formulas_rnn,
    formulas_routing,
    formulas_shape,
)
from .api import Counts, count
from .counter import Counter
from .registry import FORMULAS, Work, register

__all__ = ["count", "Counter", "Counts", "register", "Work", "FORMULAS"]


class _CallableModule(types.ModuleType):
    """``harness.count`` is both this package and, to users, the function ``count``.

    Importing a submodule (``harness.count.registry``) binds the package over any
    lazily exported function of the same name on ``harness``; making the package
    callable keeps ``harness.count(model, inputs)`` working either way.
    """

    def __call__(self, *args, **kwargs):
        return count(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
