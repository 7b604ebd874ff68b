"""``count(model, inputs) -> Counts``: parameters, MACs, flops, bytes, by op and by module."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..errors import HarnessError
from . import meta as _meta
from .mode import CountingMode, ModuleTracker

BY_OP_COLUMNS = ["op", "input_shapes", "dtype", "calls", "macs", "flops", "other_flops", "bytes", "module"]
BY_MODULE_COLUMNS = ["path", "type", "depth", "output_shape", "params", "macs", "flops", "other_flops", "bytes", "calls"]
EVENT_COLUMNS = ["seq", "op", "input_shapes", "dtype", "macs", "flops", "other_flops", "bytes", "module", "counted"]
UNCOUNTED_COLUMNS = ["op", "calls"]


@dataclass(eq=False)
class Counts:
    """What one forward pass of a model costs.

    * ``params``, ``trainable_params``, ``buffers``: element counts of the unique
      parameter / buffer tensors (tied weights once), PyTorch's ``numel()``.
    * ``macs``: multiply-accumulates of matmul-class work (conv, linear, matmul,
      bmm, attention QK^T and PV, RNN gate matmuls); ``flops`` = 2 x ``macs``.
    * ``other_flops``: arithmetic outside multiply-accumulate (bias adds, norms,
      softmax, activations, elementwise), each op's rule in its formula docstring.
    * ``bytes``: memory access cost, each op's inputs, weights and outputs read or
      written once at their dtype's size (ShuffleNet V2's MAC).
    * ``by_op``: one row per (op, input_shapes, dtype, module) with calls and totals.
    * ``by_module``: one row per module (``named_modules`` order); parents include
      their children; a module called twice holds the sum of its calls.
    * ``events``: one row per dispatched op call, in order.
    * ``uncounted``: ops that ran without a formula (op, calls); ``coverage``: shares.
    """

    params: int
    trainable_params: int
    buffers: int
    macs: int
    flops: int
    other_flops: int
    bytes: int
    by_op: pd.DataFrame
    by_module: pd.DataFrame
    uncounted: pd.DataFrame
    coverage: dict
    events: pd.DataFrame
    device: str = "cpu"
    training: bool = False
    notes: list = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"Counts(params={self.params:,}, macs={self.macs:,}, flops={self.flops:,}, "
            f"other_flops={self.other_flops:,}, bytes={self.bytes:,}, "
            f"coverage={self.coverage.get('share_of_calls', 0):.3f}, device={self.device!r})"
        )

    def to_dict(self) -> dict:
        """A JSON-ready dict: totals, coverage, and the tables as lists of records."""
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "buffers": self.buffers,
            "macs": self.macs,
            "flops": self.flops,
            "other_flops": self.other_flops,
            "bytes": self.bytes,
            "device": self.device,
            "training": self.training,
            "coverage": dict(self.coverage),
            "uncounted": _records(self.uncounted),
            "by_module": _records(self.by_module),
            "by_op": _records(self.by_op),
            "notes": list(self.notes),
        }

    def table(self, by: str = "module", depth: int | None = None) -> str:
        """A readable table (SI units) by module (to ``depth``) or by op."""
        from .table import render

        return render(self, by=by, depth=depth)


def _records(df: pd.DataFrame) -> list[dict]:
    out = []
    for row in df.itertuples(index=False):
        rec = {}
        for k, v in zip(df.columns, row):
            if hasattr(v, "item"):
                v = v.item()
            rec[k] = v
        out.append(rec)
    return out


def _split_inputs(inputs) -> tuple[tuple, dict]:
    if inputs is None:
        return (), {}
    if type(inputs) is tuple:
        return inputs, {}
    if isinstance(inputs, dict):
        return (), dict(inputs)
    return (inputs,), {}


def _devices_for_rng(some_params: list, args, kwargs) -> list[int]:
    devs = set()
    for t in list(some_params) + [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]:
        if t.device.type == "cuda":
            devs.add(t.device.index or 0)
    return sorted(devs)


def count(model: nn.Module, inputs: Any = None, *, device: str | torch.device | None = None) -> Counts:
    """Count parameters, MACs, flops, other flops and bytes of one forward pass of ``model``.

    ``inputs`` is a tensor (one positional argument), a tuple (positional
    arguments) or a dict (keyword arguments); any other object (a list, a
    PackedSequence) is passed as the one positional argument.  Works in eval and train mode and
    leaves the model and torch as it found them: modes, hooks (counting uses
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
    """
    if not isinstance(model, nn.Module):
        raise HarnessError(f"count() needs a torch.nn.Module, got {type(model).__name__}")
    args, kwargs = _split_inputs(inputs)

    plist = list(model.parameters())
    params = sum(p.numel() for p in plist)
    trainable = sum(p.numel() for p in plist if p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers())

    want_meta = device is not None and torch.device(device).type == "meta"
    if device is not None and not want_meta:
        here = _meta.model_device(model)
        if here is not None and torch.device(device) != here and torch.device(device).type != here.type:
            raise HarnessError(
                f"count(device={str(device)!r}): the model is on {here}; device= accepts 'meta' "
                "(count without compute), move the model yourself for other devices"
            )
    run_model = model
    on_meta = _meta.is_meta_model(model)
    if want_meta and not on_meta:
        run_model = _meta.meta_copy(model)
        on_meta = True
    if on_meta:
        args, kwargs = _meta.to_meta(args), _meta.to_meta(kwargs)

    named = list(run_model.named_modules(remove_duplicate=False))
    training_flags = [(m, m.training) for _, m in named]
    any_training = any(t for _, t in training_flags)
    # A forward may update buffers in place (BatchNorm statistics in training, caches;
    # kernels update BatchNorm's statistics without bumping version counters): keep a
    # copy of every buffer and write back those that changed (only those: a write
    # bumps the version counter, which autograd checks for tensors it saved).
    saved_buffers = []
    if not on_meta:
        saved_buffers = [(b, b.detach().clone()) for b in run_model.buffers()]
    param_versions = [(p, _version(p)) for p in plist] if not on_meta else []

    tracker = ModuleTracker(None)
    for name, m in named:
        tracker.paths.setdefault(id(m), name)
    mode = CountingMode(tracker, fast_meta=on_meta)
    try:
        with torch.random.fork_rng(devices=_devices_for_rng(plist[:1], args, kwargs)):
            with torch.inference_mode(), tracker, mode:
                run_model(*args, **kwargs)
    except Exception as exc:
        if on_meta and _looks_data_dependent(exc):
            raise HarnessError(
                f"counting on the meta device failed: the forward reads tensor values ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); count on a real device instead"
            ) from exc
        raise
    finally:
        for m, flag in training_flags:
            if m.training != flag:
                m.training = flag
        if saved_buffers:
            with torch.inference_mode():  # also valid for buffers that are inference tensors
                for b, saved in saved_buffers:
                    if not torch.equal(b, saved):
                        b.copy_(saved)

    changed = [p for p, v in param_versions if v is not None and _version(p) != v]
    if changed:
        names = {id(p): n for n, p in model.named_parameters()}
        mode.notes.append("the forward modified parameters in place (" + ", ".join(
            names.get(id(p), "?") for p in changed[:5]) + "); count() cannot undo that")
    return _build(named, tracker, mode, params, trainable, buffers,
                  device="meta" if on_meta else str(_meta.model_device(run_model) or "cpu"),
                  training=any_training)


def _version(t: torch.Tensor):
    try:
        return t._version
    except RuntimeError:  # inference tensors have no version counter
        return None


def _subtree_params(named: list) -> dict[str, int]:
    """Parameters of each module path including its children, unique tensors (as ``mod.parameters()``).

    ``named`` is ``model.named_modules(remove_duplicate=False)``: a shared submodule is
    seen under every path, so each of its parents includes it.
    """
    totals: dict[str, int] = {}
    seen: dict[str, set] = {}
    for path, mod in named:
        for p in mod._parameters.values():
            if p is None:
                continue
            n = p.numel()
            prefix = path
            while True:
                ids = seen.setdefault(prefix, set())
                if id(p) not in ids:
                    ids.add(id(p))
                    totals[prefix] = totals.get(prefix, 0) + n
                if not prefix:
                    break
                cut = prefix.rfind(".")
                prefix = prefix[:cut] if cut >= 0 else ""
    return totals


def _looks_data_dependent(exc: Exception) -> bool:
    text = str(exc)
    return any(s in text for s in ("meta tensor", "meta tensors", "data-dependent", "item()", "Cannot copy out of meta"))


def _build(named: list, tracker: ModuleTracker, mode: CountingMode, params: int, trainable: int,
           buffers: int, device: str, training: bool) -> Counts:
    fpath = tracker.frame_path
    n_frames = len(fpath)
    own = [[0, 0, 0] for _ in range(n_frames)]

    ev_module = []
    by_op: dict[tuple, list] = {}
    for op, shapes, dtype, macs, other, nb, frame in zip(
        mode.ev_op, mode.ev_shapes, mode.ev_dtype, mode.ev_macs, mode.ev_other, mode.ev_bytes, mode.ev_frame
    ):
        path = fpath[frame] if frame >= 0 else ""
        ev_module.append(path)
        key = (op, shapes, dtype, path)
        agg = by_op.get(key)
        if agg is None:
            by_op[key] = [1, macs, other, nb]
        else:
            agg[0] += 1
            agg[1] += macs
            agg[2] += other
            agg[3] += nb
        if frame >= 0:
            o = own[frame]
            o[0] += macs
            o[1] += other
            o[2] += nb

    # frames include their children (children are opened after their parents)
    total = [list(o) for o in own]
    parent = tracker.frame_parent
    for i in range(n_frames - 1, -1, -1):
        p = parent[i]
        if p >= 0:
            tp, ti = total[p], total[i]
            tp[0] += ti[0]
            tp[1] += ti[1]
            tp[2] += ti[2]

    # per module: sum over its calls, skipping calls nested in a call of the same module
    per_module: dict[str, list] = {}
    first_out: dict[str, str] = {}
    for i in range(n_frames):
        path = fpath[i]
        p = parent[i]
        nested = False
        while p >= 0:
            if fpath[p] == path:
                nested = True
                break
            p = parent[p]
        if nested:
            continue
        agg = per_module.setdefault(path, [0, 0, 0, 0])
        agg[0] += total[i][0]
        agg[1] += total[i][1]
        agg[2] += total[i][2]
        agg[3] += 1
        if path not in first_out:
            first_out[path] = tracker.frame_out[i] or ""

    subtree_params = _subtree_params(named)
    rows = []
    listed: set[int] = set()
    for path, mod in named:
        if id(mod) in listed:  # a shared module is listed once, under its first path (as named_modules)
            continue
        listed.add(id(mod))
        agg = per_module.get(path, [0, 0, 0, 0])
        rows.append((
            path, type(mod).__name__, 0 if path == "" else path.count(".") + 1, first_out.get(path, ""),
            subtree_params.get(path, 0), agg[0], 2 * agg[0], agg[1], agg[2], agg[3],
        ))
    by_module = pd.DataFrame(rows, columns=BY_MODULE_COLUMNS)

    by_op_df = pd.DataFrame(
        [(k[0], k[1], k[2], v[0], v[1], 2 * v[1], v[2], v[3], k[3]) for k, v in by_op.items()],
        columns=BY_OP_COLUMNS,
    )

    n = len(mode.ev_op)
    events = pd.DataFrame({
        "seq": range(n),
        "op": mode.ev_op,
        "input_shapes": mode.ev_shapes,
        "dtype": mode.ev_dtype,
        "macs": mode.ev_macs,
        "flops": [2 * m for m in mode.ev_macs],
        "other_flops": mode.ev_other,
        "bytes": mode.ev_bytes,
        "module": ev_module,
        "counted": mode.ev_counted,
    }, columns=EVENT_COLUMNS)

    unc: dict[str, int] = {}
    names_seen: set[str] = set()
    names_counted: set[str] = set()
    calls_counted = 0
    for op, counted in zip(mode.ev_op, mode.ev_counted):
        names_seen.add(op)
        if counted:
            names_counted.add(op)
            calls_counted += 1
        else:
            unc[op] = unc.get(op, 0) + 1
    uncounted = pd.DataFrame(sorted(unc.items(), key=lambda kv: (-kv[1], kv[0])), columns=UNCOUNTED_COLUMNS)
    coverage = {
        "ops_seen": len(names_seen),
        "ops_counted": len(names_counted - set(unc)),
        "calls": n,
        "calls_counted": calls_counted,
        "share_of_calls": (calls_counted / n) if n else 1.0,
        "uncounted_ops": sorted(unc),
    }
    macs = sum(mode.ev_macs)
    return Counts(
        params=params, trainable_params=trainable, buffers=buffers,
        macs=macs, flops=2 * macs, other_flops=sum(mode.ev_other), bytes=sum(mode.ev_bytes),
        by_op=by_op_df, by_module=by_module, uncounted=uncounted, coverage=coverage, events=events,
        device=device, training=training, notes=list(dict.fromkeys(mode.notes)),
    )
