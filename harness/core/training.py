"""The plain training step that :func:`harness.count.count` (``train=True``) counts and the ``train``
workload (:mod:`harness.pipeline.workloads.train`) times: ``zero_grad``; forward + loss; backward;
optimizer step, each phase in a scope. Also its defaults: :func:`default_loss` and the
``--optimizer`` choices (:data:`OPTIMIZERS`, :func:`make_optimizer`).

Below both the counter and the pipeline, so that the counter depends on nothing in
:mod:`harness.pipeline` (the pipeline depends on the counter, not the other way round).
Importing it does not import torch (the workloads declare their options without it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ContextManager

from ..errors import HarnessError

if TYPE_CHECKING:
    import torch

__all__ = ["OPTIMIZERS", "OPTIMIZER_IMPLS", "default_loss", "make_optimizer", "train_step", "with_impl"]

OPTIMIZERS = ("adamw", "sgd", "none")
#: ``--optimizer-impl``: torch's own choice (``default``: the single-tensor loop on CPU, ``foreach`` on CUDA),
#: or one forced: ``for_loop`` (``foreach=False``), ``foreach`` (``foreach=True``), ``fused`` (``fused=True``)
OPTIMIZER_IMPLS = ("default", "for_loop", "foreach", "fused")
_IMPL_KWARGS: dict[str, dict[str, bool | None]] = {
    "default": {}, "for_loop": {"foreach": False, "fused": None}, "foreach": {"foreach": True, "fused": None},
    "fused": {"foreach": None, "fused": True}}


def default_loss(output: Any, targets: Any = None) -> torch.Tensor:
    """A scalar to differentiate: ``output.loss`` when the output carries one (Hugging Face), else the
    sum of ``t.float().mean()`` over the output's floating-point tensors (tuples, lists, dicts and
    dataclasses walked in order)."""
    import torch

    loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    tensors = [t for t in _tensors(output) if t.is_floating_point() and t.requires_grad]
    if not tensors:
        raise HarnessError("--workload train: the model's output has no floating-point tensor that requires grad; "
                           "define loss_fn(output, targets) in the scenario")
    total = tensors[0].float().mean()
    for t in tensors[1:]:
        total = total + t.float().mean()
    return total


def _tensors(obj: Any):
    """The output's tensors in order, each once (:func:`harness.core.tensors.walk_tensors`)."""
    from .tensors import walk_tensors

    return walk_tensors(obj, modules=False)


def make_optimizer(name: str, params: list, *, impl: str = "default") -> torch.optim.Optimizer | None:
    """The ``--optimizer`` choices: ``adamw`` (lr 1e-4), ``sgd`` (lr 1e-2, momentum 0.9), ``none``; ``impl``
    one of :data:`OPTIMIZER_IMPLS` (``fused=True`` / ``foreach=True|False``, or torch's default)."""
    import torch

    if impl not in _IMPL_KWARGS:
        raise HarnessError(f"unknown --optimizer-impl '{impl}'; use one of {', '.join(OPTIMIZER_IMPLS)}")
    if name == "none" or not params:
        return None
    foreach, fused = _IMPL_KWARGS[impl].get("foreach"), _IMPL_KWARGS[impl].get("fused")  # None: torch's choice
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-2, momentum=0.9, foreach=foreach, fused=fused)
    return torch.optim.AdamW(params, lr=1e-4, foreach=foreach, fused=fused)


def with_impl(optimizer: Any, impl: str) -> Any:
    """A scenario's optimizer rebuilt with ``impl``'s ``foreach``/``fused`` keywords: the same class, param
    groups and hyper-parameters (``optimizer.defaults``, those its constructor takes), before any step.
    ``default`` (or no optimizer) returns it as it is; a class without both keywords, or a combination
    torch refuses (fused on a dtype or device it lacks), is exit 2."""
    import inspect

    if optimizer is None or impl == "default":
        return optimizer
    cls = type(optimizer)
    accepted = inspect.signature(cls.__init__).parameters
    if "foreach" not in accepted or "fused" not in accepted:
        raise HarnessError(f"--optimizer-impl {impl}: the scenario's make_optimizer returns {cls.__name__}, which "
                           "takes no foreach/fused keywords; use --optimizer adamw|sgd or leave --optimizer-impl out")
    kw = _IMPL_KWARGS[impl]
    groups = [{**g, **kw} for g in optimizer.param_groups]
    defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted and k not in ("self", "params")}
    try:
        return cls(groups, **{**defaults, **kw})
    except (RuntimeError, ValueError, TypeError) as exc:
        raise HarnessError(f"--optimizer-impl {impl}: {cls.__name__} refused it: {exc}") from None


def train_step(model: torch.nn.Module, call: Callable, optimizer: Any, loss_fn: Callable, targets: Any,
               scope: Callable[[str], ContextManager], step: Callable[[], Any] | None = None) -> None:
    """One step: zero_grad; forward + loss; backward; optimizer step, each phase in ``scope(name)`` (a
    :class:`~harness.count.Counter`'s ``phase``, a workload's timer scope, or a no-op). ``step``: what
    runs the optimizer step (a compiled ``optimizer.step``; default ``optimizer.step``)."""
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    else:
        model.zero_grad(set_to_none=True)
    with scope("forward"):
        loss = loss_fn(call(model), targets)
    with scope("backward"):
        loss.backward()
    if optimizer is not None:
        with scope("optimizer"):
            (step or optimizer.step)()
