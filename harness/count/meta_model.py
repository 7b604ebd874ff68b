"""Copying a model and its inputs to the meta device: counting without compute or memory.

``count(model, inputs, device="meta")`` copies the *structure* of a real model to
the meta device (parameters and buffers become meta tensors of the same shape,
dtype and requires_grad; no data is copied and the user's model is untouched)
and converts the inputs to meta tensors of the same shape and dtype.  A model
built under ``with torch.device("meta"):`` is counted as it is.

Meta tensors dispatch PyTorch's slow (unfused) Python paths where CPU would take
a fused fast path (``TransformerEncoderLayer``, ``MultiheadAttention``); the
formulas of the fused kernels are defined as the cost of those unfused paths, so
the counts agree.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ..core.text import short_exc
from ..errors import HarnessError


def is_meta_model(model: nn.Module) -> bool:
    """True when the model holds meta tensors (any parameter or buffer)."""
    for p in model.parameters():
        return p.device.type == "meta"
    for b in model.buffers():
        return b.device.type == "meta"
    return False


def model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return None


_META = torch.device("meta")


def _meta_tensor(t: torch.Tensor) -> torch.Tensor:
    """A meta tensor of ``t``'s shape, strides and dtype; an ``nn.Parameter`` for a parameter."""
    m = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=_META)
    # type() first: isinstance(t, nn.Parameter) runs Parameter's Python __instancecheck__
    if type(t) is nn.Parameter or (type(t) is not torch.Tensor and isinstance(t, nn.Parameter)):
        return nn.Parameter(m, requires_grad=t.requires_grad)
    return m


_REGISTRIES = ("_parameters", "_buffers", "_modules")
_PLAIN_CONTAINERS = frozenset({dict, list, set, OrderedDict})
_ATOMS = frozenset({bool, int, float, str, type(None)})


def meta_copy(model: nn.Module) -> nn.Module:
    """A structural copy of ``model`` whose parameters, buffers and tensor attributes are meta tensors.

    Every module is cloned (same class, its attribute dict copied; containers such
    as dicts, lists and sets one level deep; hook dicts copied), parameters and
    buffers become meta tensors (tied weights stay tied, shared submodules stay
    shared), and no tensor data is copied.  The user's model is not modified.
    Falls back to ``copy.deepcopy`` (with meta tensors pre-seeded) when a module
    cannot be cloned this way.
    """
    try:
        return _structural_clone(model)
    except Exception:
        return _deepcopy_meta(model)


def _structural_clone(model: nn.Module) -> nn.Module:
    tensors: dict[int, torch.Tensor] = {}
    modules: dict[int, nn.Module] = {}

    def meta_of(t: torch.Tensor) -> torch.Tensor:
        m = tensors.get(id(t))
        if m is None:
            m = tensors[id(t)] = _meta_tensor(t)
        return m

    def clone(mod: nn.Module) -> nn.Module:
        done = modules.get(id(mod))
        if done is not None:
            return done
        new = object.__new__(type(mod))
        modules[id(mod)] = new
        d = {}
        for k, v in mod.__dict__.items():
            t = type(v)
            if t in _ATOMS or (t is tuple and _ATOMS.issuperset(map(type, v))):  # (3, 3), (1, 1): kept
                d[k] = v
                continue
            if k in _REGISTRIES:
                continue
            if t in _PLAIN_CONTAINERS:
                d[k] = v.copy()
                continue
            if isinstance(v, torch.Tensor):
                v = meta_of(v)
            elif isinstance(v, nn.Module):
                v = clone(v)
            elif isinstance(v, (dict, list, set)):
                v = copy.copy(v)
            d[k] = v
        d["_parameters"] = {k: (meta_of(p) if p is not None else None) for k, p in mod._parameters.items()}
        d["_buffers"] = {k: (meta_of(b) if b is not None else None) for k, b in mod._buffers.items()}
        d["_modules"] = {k: (clone(c) if c is not None else None) for k, c in mod._modules.items()}
        new.__dict__.update(d)
        return new

    return clone(model)


def _deepcopy_meta(model: nn.Module) -> nn.Module:
    memo: dict[int, Any] = {}
    keep = []
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in memo:
            memo[id(t)] = _meta_tensor(t)
            keep.append(t)
    # plain tensor attributes (not registered): meta too, so they mix with meta inputs
    for mod in model.modules():
        for value in vars(mod).values():
            if isinstance(value, torch.Tensor) and id(value) not in memo:
                memo[id(value)] = _meta_tensor(value)
                keep.append(value)
    try:
        clone = copy.deepcopy(model, memo)
    except Exception as exc:
        raise HarnessError(
            f"cannot copy {type(model).__name__} to the meta device ({short_exc(exc)}); "
            "build the model under `with torch.device('meta'):` and count that instead"
        ) from exc
    del keep
    return clone


def to_meta(obj):
    """Inputs to meta: tensors become meta tensors of the same shape/dtype; containers are rebuilt.

    A PackedSequence keeps its ``batch_sizes`` on the CPU (PyTorch requires it there).
    """
    from torch.nn.utils.rnn import PackedSequence

    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "meta" else obj.to("meta")
    if isinstance(obj, PackedSequence):
        return PackedSequence(
            to_meta(obj.data), obj.batch_sizes,
            to_meta(obj.sorted_indices) if obj.sorted_indices is not None else None,
            to_meta(obj.unsorted_indices) if obj.unsorted_indices is not None else None,
        )
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_meta(x) for x in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_meta(x) for x in obj)
    if isinstance(obj, dict):
        return type(obj)((k, to_meta(v)) for k, v in obj.items())
    return obj
