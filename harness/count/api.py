"""``count(model, inputs) -> Counts``: parameters, MACs, flops, bytes of one forward pass, by op and by module."""
from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

from ..core.calls import Call, split_inputs
from ..core.text import short_exc
from ..core.training import default_loss, make_optimizer, train_step
from ..errors import HarnessError
from . import meta_model
from .counter import Counter
from .counts import BY_MODULE_COLUMNS, BY_OP_COLUMNS, BY_PHASE_COLUMNS, EVENT_COLUMNS, UNCOUNTED_COLUMNS, Counts

__all__ = ["count", "Counts", "Counter", "BY_OP_COLUMNS", "BY_MODULE_COLUMNS", "BY_PHASE_COLUMNS", "EVENT_COLUMNS",
           "UNCOUNTED_COLUMNS"]


def count(model: nn.Module, inputs: Any = None, *, device: str | torch.device | None = None, train: bool = False,
          loss_fn: Any = None, targets: Any = None, optimizer: Any = None) -> Counts:
    """Count parameters, MACs, flops, other flops and bytes of one forward pass of ``model``.

    ``train=True`` counts one training step instead (:func:`count_train_step`).

    ``inputs`` follows ``harness.core.calls.split_inputs``: a tuple is the positional
    arguments, a dict the keyword arguments, anything else (a tensor, a list, a
    PackedSequence) the one positional argument; None calls ``model()``.  Works in eval
    and train mode and leaves the model and torch as it found them: modes, hooks (counting uses
    global module hooks, removed afterwards), grad mode, RNG state, and buffers
    (any buffer the forward updates in place, such as BatchNorm statistics in
    training mode, is restored); nothing is monkey-patched, also when the forward
    raises.

    Execution: the forward runs under ``torch.inference_mode()`` (also when the
    caller is already in it), in the model's current train/eval mode.  Counting
    never needs autograd; inference mode is what the harness's runs use, it keeps
    PyTorch's fused fast paths (they need grad disabled), and it lets the counter
    see each op as the model calls it (``aten::linear``, ``aten::lstm``,
    ``aten::scaled_dot_product_attention``) before a backend picks a kernel, so the
    counts do not depend on that choice.  Counting sees what the run sees: fused
    kernels such as ``_transformer_encoder_layer_fwd`` are counted by formulas equal
    to the unfused math.

    Attention with a causal mask (``is_causal=True`` or a mask) is counted over the
    full sequence length, the convention of ``torch.utils.flop_counter`` and of MFU
    papers: QK^T is L x S x E MACs and PV is L x S x Ev MACs per head, masked or not.

    ``device="meta"`` counts a copy of the model's structure on the meta device
    without running its math (inputs become meta tensors of the same shape and
    dtype); the user's model is not modified.  A model built on the meta device is
    counted as is.  Meta and CPU counts agree.

    This is a :class:`Counter` with one phase, ``forward``; ``Counts.by_phase`` has one row.
    """
    if not isinstance(model, nn.Module):
        raise HarnessError(f"count() needs a torch.nn.Module, got {type(model).__name__}")
    call = split_inputs(inputs)
    run_model, call, on_meta = _placed(model, call, device)
    if train:
        return count_train_step(run_model, call, loss_fn=loss_fn, targets=targets, optimizer=optimizer)
    counter = Counter(run_model, default_phase="forward", rng_devices=_cuda_devices(call))
    try:
        with counter, torch.inference_mode():
            call(run_model)
    except Exception as exc:
        if on_meta and _looks_data_dependent(exc):
            raise HarnessError(
                f"counting on the meta device failed: the forward reads tensor values ({short_exc(exc)}); "
                "count on a real device instead"
            ) from exc
        raise
    return counter.result()


def count_train_step(model: nn.Module, call: Call, *, loss_fn: Any = None, targets: Any = None,
                     optimizer: Any = None) -> Counts:
    """One training step in train mode, phases ``forward``, ``backward``, ``optimizer`` (``by_phase``).

    ``loss_fn(output, targets)`` defaults to the mean of the output's floating-point tensors;
    ``optimizer`` is an optimizer over the model's parameters, ``"adamw"`` (the default:
    ``AdamW(lr=1e-4)``), ``"sgd"`` or ``"none"`` (no optimizer phase). An optimizer without state
    takes one uncounted step first, so the counted step is a steady-state one. Parameters,
    their gradients and the optimizer's state are put back afterwards (the step changes them
    in place); so are modes, buffers and RNG state (the :class:`Counter`).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer or "adamw", params) if optimizer is None or isinstance(optimizer, str) else optimizer
    saved_params = [(p, p.detach().clone(), p.grad) for p in model.parameters()]
    saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]  # the warm-up step moves BatchNorm's
    saved_state = copy.deepcopy(opt.state_dict()) if opt is not None else None
    training = [(m, m.training) for m in model.modules()]
    loss_fn = loss_fn or default_loss
    counter = Counter(model, default_phase="forward", rng_devices=_cuda_devices(call))
    try:
        model.train()
        with torch.random.fork_rng(devices=_cuda_devices(call)):  # the warm-up's dropout draws too
            if opt is not None and not opt.state:
                train_step(model, call, opt, loss_fn, targets, _no_scope)
            with counter:
                train_step(model, call, opt, loss_fn, targets, counter.phase)
    finally:
        with torch.no_grad():
            for p, value, grad in saved_params:
                p.copy_(value)
                p.grad = grad
            for b, value in saved_buffers:
                b.copy_(value)
        if opt is not None and saved_state is not None:
            opt.load_state_dict(saved_state)
        for m, flag in training:
            m.training = flag
    return counter.result()


def _no_scope(phase: str):
    return contextlib.nullcontext()


def _placed(model: nn.Module, call: Call, device) -> tuple[nn.Module, Call, bool]:
    """The model and inputs to run: ``device="meta"`` copies a real model's structure to meta."""
    want_meta = device is not None and torch.device(device).type == "meta"
    if device is not None and not want_meta:
        here = meta_model.model_device(model)
        if here is not None and torch.device(device) != here and torch.device(device).type != here.type:
            raise HarnessError(
                f"count(device={str(device)!r}): the model is on {here}; device= accepts 'meta' "
                "(count without compute), move the model yourself for other devices"
            )
    on_meta = meta_model.is_meta_model(model)
    if want_meta and not on_meta:
        model = meta_model.meta_copy(model)
        on_meta = True
    if on_meta:
        call = Call(meta_model.to_meta(call.args), meta_model.to_meta(call.kwargs))
    return model, call, on_meta


def _cuda_devices(call: Call) -> list[int]:
    """CUDA devices of the inputs, whose RNG the forward may draw from (the Counter forks the model's).
    A read-only walk (:func:`harness.core.tensors.walk_tensors`): containers are not rebuilt, which a
    PackedSequence would refuse."""
    from ..core.devices import cuda_index
    from ..core.tensors import walk_tensors

    return sorted({cuda_index(t.device) for t in walk_tensors((call.args, call.kwargs), modules=False)
                   if t.device.type == "cuda"})


def _looks_data_dependent(exc: Exception) -> bool:
    text = str(exc)
    return any(s in text for s in ("meta tensor", "meta tensors", "data-dependent", "data-independent", "item()",
                                   "Cannot copy out of meta"))
