"""The counting engine: a TorchDispatchMode that applies the formula registry to
every op that runs, and global module hooks that say which module was running.

Why these mechanisms:

* A ``TorchDispatchMode`` sees the ops that really run (including fused kernels
  such as ``_transformer_encoder_layer_fwd`` and ``_native_multi_head_attention``)
  and does not disable PyTorch's fast paths (a ``TorchFunctionMode`` would: the
  fast paths bail out when ``has_torch_function`` is true).
* Module attribution uses the *global* forward pre/post hooks
  (``register_module_forward_pre_hook``), registered for the duration of a count
  and always removed: ``nn.TransformerEncoderLayer`` refuses its fast path when a
  per-module hook is attached to it or to any of its children.
* Composite ops that have no formula are decomposed under the mode (their parts
  are counted); ops with no formula and no decomposition are recorded as
  uncounted, never as a silent zero.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .meta import FAST_META
from .registry import FORMULAS, Tensor, Work, io_bytes
from .registry import nbytes as _nbytes

aten = torch.ops.aten

#: metadata queries that are not ops worth recording (they reach the mode only for subclasses)
_IGNORED = set()
for _name, _ov in [
    ("size", "default"), ("sym_size", "int"), ("stride", "default"), ("sym_stride", "int"),
    ("storage_offset", "default"), ("sym_storage_offset", "default"), ("numel", "default"),
    ("sym_numel", "default"), ("dim", "default"), ("is_contiguous", "default"),
    ("is_contiguous", "memory_format"), ("sym_is_contiguous", "default"),
    ("is_strides_like_format", "default"), ("is_non_overlapping_and_dense", "default"),
]:
    _packet = getattr(aten, _name, None)
    _op = getattr(_packet, _ov, None) if _packet is not None else None
    if _op is not None:
        _IGNORED.add(_op)
for _prim in ("device", "layout"):
    _p = getattr(torch.ops.prim, _prim, None)
    if _p is not None:
        _IGNORED.add(_p.default)


class _OpInfo:
    """Per-OpOverload facts computed once: profiler name, argument spec, composite-ness."""

    __slots__ = ("name", "spec", "composite", "formula")

    def __init__(self, func):
        schema = func._schema
        self.name = "aten::" + schema.name.split("::", 1)[1] if schema.name.startswith("aten::") else schema.name
        self.spec = [(a.name, a.kwarg_only) for a in schema.arguments]
        try:
            self.composite = torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd")
        except Exception:
            self.composite = False
        self.formula = FORMULAS.get(func._overloadpacket)


_INFO: dict[Any, _OpInfo] = {}


def op_info(func) -> _OpInfo:
    info = _INFO.get(func)
    if info is None:
        info = _INFO[func] = _OpInfo(func)
    return info


def _arg_values(info: _OpInfo, args, kwargs):
    """The values of every schema argument in order (None for defaults not passed)."""
    n = len(args)
    out = []
    for i, (name, kwonly) in enumerate(info.spec):
        if not kwonly and i < n:
            out.append(args[i])
        else:
            out.append(kwargs.get(name))
    return out


def input_shapes(info: _OpInfo, args, kwargs) -> str:
    """The profiler's ``input_shapes`` for this call: one entry per schema argument,
    a tensor's sizes, ``[]`` for anything else (non-tensors, None, tensor lists)."""
    parts = []
    for v in _arg_values(info, args, kwargs):
        if isinstance(v, Tensor) and not v.is_nested:
            parts.append(str(list(v.shape)))
        else:
            parts.append("[]")
    return "[" + ", ".join(parts) + "]"


_DTYPE_NAMES: dict = {}


def _dtype_name(dt) -> str:
    name = _DTYPE_NAMES.get(dt)
    if name is None:
        name = _DTYPE_NAMES[dt] = str(dt).replace("torch.", "")
    return name


def describe_call(info: _OpInfo, args, kwargs, res) -> tuple[str, str, int]:
    """One pass over a call: (profiler input_shapes, dtype, default-rule bytes).

    input_shapes: one entry per schema argument, a tensor's sizes, ``[]`` otherwise;
    dtype: of the first floating input, else the first tensor input, else the output;
    bytes: distinct tensor inputs read once + outputs written once.
    """
    n = len(args)
    parts = []
    seen = set()
    nbytes_in = 0
    fdtype = None
    adtype = None

    def read(t: Tensor) -> None:
        """A tensor input: read once however often it is passed; the first float sets dtype."""
        nonlocal nbytes_in, fdtype, adtype
        if id(t) not in seen:
            seen.add(id(t))
            nbytes_in += _nbytes(t)
        if fdtype is None:
            if t.is_floating_point() or t.is_complex():
                fdtype = t.dtype
            elif adtype is None:
                adtype = t.dtype

    for i, (name, kwonly) in enumerate(info.spec):
        if not kwonly and i < n:
            v = args[i]
        else:
            v = kwargs.get(name)
            if name == "out":  # an out= tensor is written, not read: it is counted with the outputs
                parts.append(str(list(v.shape)) if isinstance(v, Tensor) else "[]")
                continue
        if isinstance(v, Tensor):
            parts.append("[]" if v.is_nested else str(list(v.shape)))
            read(v)
        else:
            parts.append("[]")  # the profiler records tensor lists as [] too
            if isinstance(v, (list, tuple)):
                for t in v:
                    if isinstance(t, Tensor):
                        read(t)
    out_total = 0
    if isinstance(res, Tensor):
        out_total = _nbytes(res)
        if adtype is None and fdtype is None:
            adtype = res.dtype
    elif isinstance(res, (list, tuple)):
        oseen = set()
        for t in res:
            if isinstance(t, Tensor) and id(t) not in oseen:
                oseen.add(id(t))
                out_total += _nbytes(t)
                if adtype is None and fdtype is None:
                    adtype = t.dtype
    dt = fdtype if fdtype is not None else adtype
    return "[" + ", ".join(parts) + "]", (_dtype_name(dt) if dt is not None else ""), nbytes_in + out_total


def dtype_of(args, kwargs, res) -> str:
    """dtype of the first floating tensor input; else of the first tensor input; else of the output."""
    first_any = None
    for v in list(args) + list(kwargs.values()):
        ts = (v,) if isinstance(v, Tensor) else (v if isinstance(v, (list, tuple)) else ())
        for t in ts:
            if isinstance(t, Tensor):
                if t.is_floating_point() or t.is_complex():
                    return _dtype_name(t.dtype)
                if first_any is None:
                    first_any = t.dtype
    if first_any is not None:
        return _dtype_name(first_any)
    if isinstance(res, Tensor):
        return _dtype_name(res.dtype)
    if isinstance(res, (list, tuple)):
        for r in res:
            if isinstance(r, Tensor):
                return _dtype_name(r.dtype)
    return ""


def shape_repr(obj) -> str:
    """Output shape of a module as a string: ``[1, 1000]``, nested lists for tuples."""

    def conv(o):
        if isinstance(o, Tensor):
            if o.is_nested:
                return "nested"
            return list(o.shape)
        if isinstance(o, (list, tuple)):
            return [conv(x) for x in o]
        if isinstance(o, dict):
            return {k: conv(v) for k, v in o.items()}
        return type(o).__name__ if o is not None else None

    if obj is None:
        return ""
    return str(conv(obj))


class FormulaFailed(Exception):
    pass


class PartialCount(Exception):
    """Raised by a reference computation that met ops without formulas."""

    def __init__(self, ops):
        super().__init__(", ".join(sorted(ops)))
        self.ops = set(ops)


def _first_on_meta(args) -> bool:
    for a in args:
        if isinstance(a, Tensor):
            return a.device.type == "meta"
        if isinstance(a, (list, tuple)):
            for t in a:
                if isinstance(t, Tensor):
                    return t.device.type == "meta"
    return False


def run_op(func, args, kwargs, fast_meta: bool):
    """Run the op; on the meta device use a fast output-only kernel where one is registered."""
    if fast_meta:
        fm = FAST_META.get(func)
        if fm is not None and _first_on_meta(args):
            res = fm(*args, **kwargs)
            if res is not NotImplemented:
                return res
    return func(*args, **kwargs)


def evaluate(info: _OpInfo, func, args, kwargs, res) -> Work:
    """Apply the op's formula; bytes None -> default rule."""
    w = info.formula(res, *args, **kwargs)
    if w.bytes is None:
        w = Work(int(w.macs), int(w.other), io_bytes(args, kwargs, res))
    return w


class ModuleTracker:
    """Tracks which module of ``model`` is running, with global forward hooks.

    Every call of a module opens a *frame* (path, parent frame, output shape); the
    counting mode charges each op to the innermost open frame.
    """

    def __init__(self, model: torch.nn.Module | None):
        self.paths: dict[int, str] = {}
        if model is not None:
            for name, mod in model.named_modules():
                self.paths[id(mod)] = name
        self.frame_path: list[str] = []
        self.frame_parent: list[int] = []
        self.frame_out: list[str | None] = []
        self.stack: list[int] = [-1]
        self._thread = threading.get_ident()
        self._handles: list[Any] = []

    def __enter__(self):
        mm = torch.nn.modules.module
        self._handles.append(mm.register_module_forward_pre_hook(self._pre))
        self._handles.append(mm.register_module_forward_hook(self._post, always_call=True))
        return self

    def __exit__(self, *exc):
        while self._handles:
            self._handles.pop().remove()
        return False

    def _pre(self, module, args):
        path = self.paths.get(id(module))
        if path is None or threading.get_ident() != self._thread:
            return None
        self.frame_path.append(path)
        self.frame_parent.append(self.stack[-1])
        self.frame_out.append(None)
        self.stack.append(len(self.frame_path) - 1)
        return None

    def _post(self, module, args, output):
        path = self.paths.get(id(module))
        if path is None or threading.get_ident() != self._thread:
            return None
        stack = self.stack
        for j in range(len(stack) - 1, 0, -1):
            idx = stack[j]
            if self.frame_path[idx] == path:
                del stack[j:]
                try:
                    self.frame_out[idx] = shape_repr(output)
                except Exception:
                    self.frame_out[idx] = ""
                break
        return None

    @property
    def current(self) -> int:
        return self.stack[-1]


class _OpMode(TorchDispatchMode):
    """Runs each dispatched op and hands it to :meth:`_on_op`.

    Ops without a formula that have a composite decomposition are decomposed under the
    mode, so their parts are seen instead. Counting is of eager execution;
    ``torch.compile``'d code is not supported (its kernels do not dispatch aten ops).
    So ``__torch_dispatch__`` is not wrapped in ``torch._disable_dynamo``, which would
    import torch._dynamo (seconds) on first use.
    """

    fast_meta = True

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _IGNORED:
            return func(*args, **kwargs)
        info = op_info(func)
        if info.formula is None and info.composite:
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        res = run_op(func, args, kwargs, self.fast_meta)
        self._on_op(info, func, args, kwargs, res)
        return res

    def _on_op(self, info: _OpInfo, func, args, kwargs, res) -> None:
        raise NotImplementedError


class CountingMode(_OpMode):
    """Counts every dispatched op into per-call event lists, charged to the tracker's current frame."""

    def __init__(self, tracker: ModuleTracker | None = None, fast_meta: bool = False):
        super().__init__()
        self.tracker = tracker
        self.fast_meta = fast_meta
        # per-call events, column-wise
        self.ev_op: list[str] = []
        self.ev_shapes: list[str] = []
        self.ev_dtype: list[str] = []
        self.ev_macs: list[int] = []
        self.ev_other: list[int] = []
        self.ev_bytes: list[int] = []
        self.ev_frame: list[int] = []
        self.ev_counted: list[bool] = []
        self.notes: list[str] = []

    def _on_op(self, info: _OpInfo, func, args, kwargs, res) -> None:
        shapes, dtype, default_bytes = describe_call(info, args, kwargs, res)
        formula = info.formula
        counted = formula is not None
        macs = other = nbytes = 0
        if counted:
            try:
                w = formula(res, *args, **kwargs)
                macs, other = int(w.macs), int(w.other)
                nbytes = default_bytes if w.bytes is None else int(w.bytes)
            except PartialCount as exc:
                counted = False
                macs = other = nbytes = 0
                self.notes.append(f"{info.name}: its reference decomposition has ops without formulas ({exc})")
            except Exception as exc:  # a formula bug must not break the user's run; it is reported
                counted = False
                macs = other = nbytes = 0
                self.notes.append(f"{info.name}: formula failed ({type(exc).__name__}: {exc})")
        self.ev_op.append(info.name)
        self.ev_shapes.append(shapes)
        self.ev_dtype.append(dtype)
        self.ev_macs.append(macs)
        self.ev_other.append(other)
        self.ev_bytes.append(nbytes)
        self.ev_frame.append(self.tracker.stack[-1] if self.tracker is not None else -1)
        self.ev_counted.append(counted)


class SumMode(_OpMode):
    """A lightweight mode that only sums Work; used to evaluate reference decompositions."""

    def __init__(self):
        super().__init__()
        self.macs = self.other = self.bytes = 0
        self.missing: set[str] = set()

    def _on_op(self, info: _OpInfo, func, args, kwargs, res) -> None:
        if info.formula is None:
            self.missing.add(info.name)
        else:
            w = evaluate(info, func, args, kwargs, res)
            self.macs += w.macs
            self.other += w.other
            self.bytes += w.bytes


_REFERENCE_CACHE: dict[Any, Work] = {}


def reference_cost(key, setup: Callable[[], Callable[[], Any]]) -> Work:
    """The total Work of a reference computation on meta tensors; cached by ``key``.

    ``setup()`` builds what the computation needs (modules, meta tensors; not
    counted) and returns a runner; ``runner()`` runs under a fresh SumMode in
    inference mode.  Used by formulas that define a fused kernel's cost as the cost
    of PyTorch's own unfused reference path, so that every dispatch route counts
    the same.
    """
    if key is not None and key in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[key]
    with torch.inference_mode(False):
        runner = setup()
    mode = SumMode()
    with torch.inference_mode(), mode:
        runner()
    if mode.missing:
        raise PartialCount(mode.missing)
    w = Work(mode.macs, mode.other, mode.bytes)
    if key is not None:
        _REFERENCE_CACHE[key] = w
    return w


def meta_like(t: Tensor | None) -> Tensor | None:
    """A meta tensor with the same shape, strides and dtype (None stays None)."""
    if t is None:
        return None
    return torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=t.dtype, device="meta")


def shape_key(*objs) -> tuple:
    """A hashable description of tensors (shape, stride, dtype) and plain values, for caches."""
    out = []
    for o in objs:
        if isinstance(o, Tensor):
            out.append(("T", tuple(o.shape), tuple(o.stride()) if not o.is_nested else None, str(o.dtype)))
        elif isinstance(o, (list, tuple)):
            out.append(shape_key(*o))
        else:
            out.append(o)
    return tuple(out)
