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
from .meta_kernels import FAST_META, cacheable, cached_meta
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
    """Per-OpOverload facts computed once: profiler name, argument spec, composite-ness, formula,
    whether the mode ignores it, its fast meta kernel, and whether it is decomposed under the mode."""

    __slots__ = ("func", "name", "spec", "npos", "out_at", "composite", "formula", "ignored", "fast_meta", "decompose",
                 "cacheable")

    def __init__(self, func):
        schema = func._schema
        self.func = func  # keeps the op alive while its id keys the cache
        self.name = "aten::" + schema.name.split("::", 1)[1] if schema.name.startswith("aten::") else schema.name
        self.spec = [(a.name, a.kwarg_only) for a in schema.arguments]
        self.npos = next((i for i, (_, kwonly) in enumerate(self.spec) if kwonly), len(self.spec))
        self.out_at = next((i for i, (name, _) in enumerate(self.spec) if name == "out"), -1)
        try:
            self.composite = torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd")
        except Exception:
            self.composite = False
        self.formula = formula_of(func)
        self.ignored = func in _IGNORED
        self.fast_meta = FAST_META.get(func)
        self.decompose = self.formula is None and self.composite
        self.cacheable = cacheable(func, self.composite)


#: id(OpOverload) -> OpInfo (an OpOverload hashes in Python; its id is a C-level hash); the entry holds the op
_INFO: dict[int, OpInfo] = {}


def op_info(func) -> OpInfo:
    """The cached :class:`OpInfo` of an OpOverload."""
    info = _INFO.get(id(func))
    if info is None:
        info = _INFO[id(func)] = OpInfo(func)
    return info


_DTYPE_NAMES: dict = {}


def _dtype_name(dt) -> str:
    name = _DTYPE_NAMES.get(dt)
    if name is None:
        name = _DTYPE_NAMES[dt] = str(dt).replace("torch.", "")
    return name


def dtype_name(dt) -> str:
    """``float32`` for ``torch.float32``; ``""`` for None (an op without tensors)."""
    return _dtype_name(dt) if dt is not None else ""


def shapes_text(key: tuple) -> str:
    """The profiler's ``input_shapes`` string of a shape key from :func:`describe_call`:
    ``[[1, 3, 224, 224], [64, 3, 7, 7], []]``, one entry per schema argument."""
    return "[" + ", ".join([str(list(s)) for s in key]) + "]"


def describe_call(info: OpInfo, args, kwargs, res, want_bytes: bool = True) -> tuple[tuple, Any, int]:
    """One pass over a call: (shape key, dtype, default-rule bytes; 0 unless ``want_bytes``).

    shape key: one entry per schema argument, a tensor's ``torch.Size``, ``()`` otherwise
    (also nested tensors and tensor lists, as the profiler records them), formatted by
    :func:`shapes_text` only when the tables are built; dtype: of the first floating input,
    else the first tensor input, else the output (None without tensors); bytes: distinct
    tensor inputs read once + outputs written once (an ``out=`` tensor counts as an output).
    """
    parts, ins = _inputs(info, args, kwargs)
    fdtype = adtype = None
    for t in ins:
        dt = t.dtype
        if dt.is_floating_point or dt.is_complex:
            fdtype = dt
            break
        if adtype is None:
            adtype = dt
    outs = [res] if isinstance(res, Tensor) else [t for t in res if isinstance(t, Tensor)] \
        if isinstance(res, (list, tuple)) else []
    if fdtype is None and adtype is None and outs:
        adtype = outs[0].dtype
    nbytes = _distinct_bytes(ins) + _distinct_bytes(outs) if want_bytes else 0
    return parts, (fdtype if fdtype is not None else adtype), nbytes


def _inputs(info: OpInfo, args, kwargs) -> tuple[tuple, list]:
    """(shape key, input tensors in argument order): tensor arguments, and the tensors of list arguments."""
    m = min(len(args), info.npos)  # schema arguments read from args; the rest from kwargs
    vals = list(args[:m]) if m < len(args) else list(args)
    for name, _ in info.spec[m:]:
        vals.append(kwargs.get(name))
    out_at = info.out_at if info.out_at >= m else -1
    parts: list[Any] = []  # torch.Size, or () for a non-tensor argument
    ins = []
    for i, v in enumerate(vals):
        if isinstance(v, Tensor):
            if i == out_at:  # an out= tensor is written, not read: it is counted with the outputs
                parts.append(v.shape)
                continue
            parts.append(() if v.is_nested else v.shape)
            ins.append(v)
        else:
            parts.append(())  # the profiler records tensor lists as [] too
            if i != out_at and isinstance(v, (list, tuple)):
                ins.extend([t for t in v if isinstance(t, Tensor)])
    return tuple(parts), ins


def _distinct_bytes(tensors: list) -> int:
    """Bytes of the distinct tensors (by identity) of a list."""
    if len(tensors) == 1:
        return _nbytes(tensors[0])
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += _nbytes(t)
    return total


def shape_struct(obj):
    """A module output's shapes, cheap to take while it runs (formatted later by :func:`shape_text`):
    a tensor's ``torch.Size`` (``"nested"`` for a nested tensor), lists for lists and tuples, dicts
    for dicts, a type name for anything else, None for None."""
    if isinstance(obj, Tensor):
        return "nested" if obj.is_nested else obj.shape
    if isinstance(obj, (list, tuple)):
        return [shape_struct(x) for x in obj]
    if isinstance(obj, dict):
        return {k: shape_struct(v) for k, v in obj.items()}
    return type(obj).__name__ if obj is not None else None


def shape_text(struct) -> str:
    """Output shape of a module as a string, ``[1, 1000]``, nested lists for tuples; ``""`` for None."""
    return "" if struct is None else str(_as_lists(struct))


def _as_lists(s):
    """A :func:`shape_struct` with its ``torch.Size`` entries as lists (as the string shows them)."""
    if type(s) is torch.Size:
        return list(s)
    if type(s) is list:
        return [_as_lists(x) for x in s]
    if type(s) is dict:
        return {k: _as_lists(v) for k, v in s.items()}
    return s


def shape_repr(obj) -> str:
    """Output shape of a module as a string: ``[1, 1000]``, nested lists for tuples."""
    return shape_text(shape_struct(obj))


def _first_on_meta(args) -> bool:
    for a in args:
        if isinstance(a, Tensor):
            return a.device.type == "meta"
        if isinstance(a, (list, tuple)):
            for t in a:
                if isinstance(t, Tensor):
                    return t.device.type == "meta"
    return False


def _run_fast_meta(info: OpInfo, args, kwargs):
    """The op's fast meta kernel when it has one and its first tensor is on meta, else the op: through the
    meta-result cache (:func:`harness.count.meta_kernels.cached_meta`) when its results are fresh tensors."""
    fm = info.fast_meta
    if fm is not None and _first_on_meta(args):
        res = fm(*args, **kwargs)
        if res is not NotImplemented:
            return res
    if info.cacheable:
        return cached_meta(info.func, args, kwargs)
    return info.func(*args, **kwargs)


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
        self.frame_out: list[Any] = []  # shape_struct of each call's output (shape_text formats it)
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
        if path is None or _get_ident() != self._thread:
            return None
        stack = self.stack
        self.frame_parent.append(stack[-1])
        stack.append(len(self.frame_path))
        self.frame_path.append(path)
        self.frame_out.append(None)
        self.frame_phase.append(self.phase)
        return None

    def _post(self, module, args, output):
        path = self.paths.get(id(module))
        if path is None or _get_ident() != self._thread:
            return None
        stack = self.stack
        fpath = self.frame_path
        for j in range(len(stack) - 1, 0, -1):
            idx = stack[j]
            if fpath[idx] == path:
                del stack[j:]
                try:
                    self.frame_out[idx] = shape_struct(output)
                except Exception:
                    self.frame_out[idx] = ""
                break
        return None


_get_ident = threading.get_ident


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
        info = _INFO.get(id(func)) or op_info(func)
        if kwargs is None:
            kwargs = {}
        if info.ignored:
            return func(*args, **kwargs)
        if info.decompose:
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        res = _run_fast_meta(info, args, kwargs) if self.fast_meta else func(*args, **kwargs)
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
        self.ev_shapes: list[tuple] = []  # shape keys (describe_call), strings only in the tables
        self.ev_dtype: list[Any] = []  # torch dtypes (None: no tensor), names only in the tables
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
        macs = other = 0
        want_bytes = False
        nbytes: int | None = 0
        formula = info.formula
        counted = formula is not None
        if formula is not None:
            try:
                w = formula(res, *args, **kwargs)
                macs, other = int(w.macs), int(w.other)
                nbytes = None if w.bytes is None else int(w.bytes)
            except Exception as exc:  # a formula bug must not break the user's run; it is reported
                counted = False
                macs = other = nbytes = 0
                self.notes.append(_failure_note(info, exc))
            want_bytes = nbytes is None
        shapes, dtype, default_bytes = describe_call(info, args, kwargs, res, want_bytes)
        self.ev_op.append(info.name)
        self.ev_shapes.append(shapes)
        self.ev_dtype.append(dtype)
        self.ev_macs.append(macs)
        self.ev_other.append(other)
        self.ev_bytes.append(default_bytes if nbytes is None else nbytes)
        tracker = self.tracker
        if tracker is None:
            self.ev_frame.append(-1)
        else:
            frame = tracker.stack[-1]
            self.ev_frame.append(frame if frame >= 0 else tracker.frame_of_op())
        # the autograd engine runs backward nodes with grad mode off (no create_graph); an op
        # dispatched while it runs a node with grad mode on is a forward re-run inside backward
        # (activation checkpointing's recomputation, reentrant or not)
        if _grad_enabled() and _current_node() is not None:
            self.recomputed.append(len(self.ev_op) - 1)
        self.ev_counted.append(counted)
        self.ev_phase.append(self.phase)


_grad_enabled = torch.is_grad_enabled
_current_node = torch._C._current_autograd_node


def _failure_note(info: OpInfo, exc: Exception) -> str:
    """The note for a formula that raised: a reference decomposition with uncounted ops, or a bug."""
    if isinstance(exc, PartialCount):
        return f"{info.name}: its reference decomposition has ops without formulas ({exc})"
    return f"{info.name}: formula failed ({short_exc(exc)})"
