"""How a scenario's model joins the process group.

A scenario file may define ``wrap(model, process_group) -> nn.Module`` (any parallel
wrapper: tensor-parallel layers, an all-gather of outputs, FSDP ...): every rank applies it
to its replica, for every workload. Otherwise workloads that compute gradients (``train``)
wrap the model in ``DistributedDataParallel``, so backward includes the gradient all-reduce
(``distributed = "ddp"`` says so explicitly); inference has nothing to synchronize, so
``forward`` and ``generate`` run the replica as is (same work on every rank, each on its own
inputs).
"""
from __future__ import annotations

from typing import Any

from ..errors import HarnessError

KINDS = ("ddp",)


def wrap_model(module: Any, model, process_group, workload) -> Any:
    """The model this rank runs: the scenario's ``wrap``, DDP for gradient workloads, or itself."""
    custom = getattr(module, "wrap", None)
    if custom is not None:
        return custom(model, process_group)
    kind = getattr(module, "distributed", None)
    if kind is not None and kind not in KINDS:
        raise HarnessError(f"scenario declares distributed = {kind!r}; use one of {', '.join(KINDS)} or define wrap()")
    if getattr(workload, "computes_gradients", False):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, process_group=process_group)
    return model
