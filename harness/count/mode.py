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
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..core.text import short_exc
from .meta_kernels import FAST_META
from .registry import PartialCount, Tensor, formula_of
from .registry import nbytes as _nbytes

aten = torch.ops.aten

#: the sequence number of autograd nodes that have none (AccumulateGrad): UINT64_MAX
_NO_SEQUENCE_NR = 2**64 - 1

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
# record_function markers (every optimizer.step() and zero_grad() opens one): not work, and the
# profiler shows them as ranges, not ops, so counting them would misalign the join
for _name in ("_record_function_enter", "_record_function_enter_new", "_record_function_exit"):
    _p = getattr(torch.ops.profiler, _name, None)
    if _p is not None:
        _IGNORED.update(getattr(_p, o) for o in _p.overloads())


class OpInfo:
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
        self.formula = formula_of(func)


_INFO: dict[Any, OpInfo] = {}


def op_info(func) -> OpInfo:
    info = _INFO.get(func)
    if info is None:
        info = _INFO[func] = OpInfo(func)
    return info


_DTYPE_NAMES: dict = {}


def _dtype_name(dt) -> str:
    name = _DTYPE_NAMES.get(dt)
    if name is None:
        name = _DTYPE_NAMES[dt] = str(dt).replace("torch.", "")
    return name


def describe_call(info: OpInfo, args, kwargs, res) -> tuple[str, str, int]:
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


class ModuleTracker:
    """Tracks which module of ``model`` is running, with global forward hooks.

    Every call of a module opens a *frame* (path, parent frame, output shape, and the
    index of the phase it opened in, ``phase``, set by the Counter); the counting mode
    charges each op to the innermost open frame.

    Backward ops run outside any module call. While tracking, an autograd node-creation
    hook (``torch.autograd.graph.node_creation_hook``) records the frame open when each
    autograd node was created (``node_frame``: the node's sequence number -> frame), so
    an op that the autograd engine runs for that node is charged to the module call whose
    forward created it (:meth:`frame_of_op`), as the profiler's forward/backward
    correlation does with sequence numbers.  ``AccumulateGrad`` nodes (one per leaf, no
    sequence number) are not recorded: their ops go to the root.
    """

    def __init__(self, model: torch.nn.Module | None):
        self.paths: dict[int, str] = {}
        if model is not None:
            for name, mod in model.named_modules():
                self.paths[id(mod)] = name
        self.frame_path: list[str] = []
        self.frame_parent: list[int] = []
        self.frame_out: list[str | None] = []
        self.frame_phase: list[int] = []
        self.phase = 0
        self.stack: list[int] = [-1]
        self.node_frame: dict[int, int] = {}
        self._thread = threading.get_ident()
        self._handles: list[Any] = []
        self._node_hook: Any = None

    def __enter__(self):
        mm = torch.nn.modules.module
        self._handles.append(mm.register_module_forward_pre_hook(self._pre))
        self._handles.append(mm.register_module_forward_hook(self._post, always_call=True))
        self._node_hook = torch.autograd.graph.node_creation_hook(self._on_node)
        self._node_hook.__enter__()
        return self

    def __exit__(self, *exc):
        while self._handles:
            self._handles.pop().remove()
        if self._node_hook is not None:
            self._node_hook, hook = None, self._node_hook
            hook.__exit__(None, None, None)
        return False

    def _on_node(self, node) -> None:
        seq = node._sequence_nr()
        if seq != _NO_SEQUENCE_NR:
            self.node_frame[seq] = self.stack[-1]

    def frame_of_op(self) -> int:
        """The frame to charge an op to: the innermost open module call; outside any call, the
        call whose forward created the autograd node being run (backward); else -1 (the root)."""
        frame = self.stack[-1]
        if frame < 0:
            node = torch._C._current_autograd_node()
            if node is not None:
                return self.node_frame.get(node._sequence_nr(), -1)
        return frame

    def _pre(self, module, args):
        path = self.paths.get(id(module))
        if path is None or threading.get_ident() != self._thread:
            return None
        self.frame_path.append(path)
        self.frame_parent.append(self.stack[-1])
        self.frame_out.append(None)
        self.frame_phase.append(self.phase)
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


class OpMode(TorchDispatchMode):
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

    def _on_op(self, info: OpInfo, func, args, kwargs, res) -> None:
        raise NotImplementedError


class CountingMode(OpMode):
    """Counts every dispatched op into per-call event lists, charged to the tracker's current frame
    and to the phase index ``phase`` (set by the Counter; 0 when used alone)."""

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
        self.ev_phase: list[int] = []
        self.phase = 0
        self.notes: list[str] = []
        self.recomputed: list[int] = []  # event indices of forward ops re-run inside backward (see _on_op)

    def _on_op(self, info: OpInfo, func, args, kwargs, res) -> None:
        shapes, dtype, default_bytes = describe_call(info, args, kwargs, res)
        formula = info.formula
        counted = formula is not None
        macs = other = nbytes = 0
        if formula is not None:
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
                self.notes.append(f"{info.name}: formula failed ({short_exc(exc)})")
        self.ev_op.append(info.name)
        self.ev_shapes.append(shapes)
        self.ev_dtype.append(dtype)
        self.ev_macs.append(macs)
        self.ev_other.append(other)
        self.ev_bytes.append(nbytes)
        self.ev_frame.append(self.tracker.frame_of_op() if self.tracker is not None else -1)
        # the autograd engine runs backward nodes with grad mode off (no create_graph); an op
        # dispatched while it runs a node with grad mode on is a forward re-run inside backward
        # (activation checkpointing's recomputation, reentrant or not)
        if torch.is_grad_enabled() and torch._C._current_autograd_node() is not None:
            self.recomputed.append(len(self.ev_op) - 1)
        self.ev_counted.append(counted)
        self.ev_phase.append(self.phase)
