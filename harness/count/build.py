"""From the counting mode's per-call events to a :class:`Counts`: events, by_op, by_module, by_phase, coverage.

Module attribution: an op is charged to the innermost module call open when it ran
(``events.module``, ``""`` outside any call).  A ``by_module`` row sums the ops of
every module *credited* for it: the module whose call ran it, every module whose call
was open around it (the call tree: a module includes what its forward called), and
every structural parent of those (path prefixes: an ``nn.ModuleList`` that is never
called itself still includes its layers, exactly as for params).  Each op is added
once per module however many of these routes lead to it.  A backward op runs outside
any module call: it is charged to the module call whose forward created the autograd
node it runs for (:meth:`ModuleTracker.frame_of_op`), so a module's backward row holds
the gradient kernels of its own forward ops.  Ops outside any module call and any
node (the loss's seed gradient, ``AccumulateGrad``, an optimizer step) are credited to
the root row ``""`` only.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import pandas as pd

from .counts import (BY_MODULE_COLUMNS, BY_OP_COLUMNS, BY_PHASE_COLUMNS, EVENT_COLUMNS, UNCOUNTED_COLUMNS,
                     Counts, Deferred)
from .mode import CountingMode, ModuleTracker, dtype_name, shape_text, shapes_text


def build_counts(named: list, tracker: ModuleTracker, mode: CountingMode, phase_names: list[str],
                 order: list[int], params: tuple[int, int, int], device: str, training: bool) -> Counts:
    """Totals and coverage of the events in ``mode``, and its tables, each built on first read from
    a :class:`Snapshot` taken now (the events, module calls and modules as they are at this call).

    ``named``: ``model.named_modules(remove_duplicate=False)``; ``phase_names[i]``: the
    name of phase index ``i``; ``order``: the phase indices to list, in order;
    ``params``: (params, trainable_params, buffers).
    """
    snap = Snapshot(named, tracker, mode, phase_names, order)
    unc, coverage = _coverage(mode)
    macs = sum(mode.ev_macs)
    return Counts(
        params=params[0], trainable_params=params[1], buffers=params[2],
        macs=macs, flops=2 * macs, other_flops=sum(mode.ev_other), bytes=sum(mode.ev_bytes),
        by_op=Deferred(_by_op, snap), by_module=Deferred(_by_module, snap),
        uncounted=Deferred(_uncounted, unc), coverage=coverage,
        events=Deferred(_events, snap), by_phase=Deferred(_by_phase, snap),
        device=device, training=training, notes=list(dict.fromkeys(mode.notes)),
    )


class Snapshot:
    """What the tables are built from, copied when the counts are taken (a :class:`Counter` may go
    on counting; its earlier result keeps what was counted until then): the events' columns (as
    :class:`CountingMode` keeps them), the module calls (:class:`ModuleTracker`'s frames), every
    entry of ``named`` as (path, module id, type name, [(parameter id, numel)]), and the phases."""

    def __init__(self, named: list, tracker: ModuleTracker, mode: CountingMode, phase_names: list[str],
                 order: list[int]):
        self.ev_op = list(mode.ev_op)
        self.ev_shapes = list(mode.ev_shapes)
        self.ev_dtype = list(mode.ev_dtype)
        self.ev_macs = list(mode.ev_macs)
        self.ev_other = list(mode.ev_other)
        self.ev_bytes = list(mode.ev_bytes)
        self.ev_frame = list(mode.ev_frame)
        self.ev_counted = list(mode.ev_counted)
        self.ev_phase = list(mode.ev_phase)
        self.frame_path = list(tracker.frame_path)
        self.frame_parent = list(tracker.frame_parent)
        self.frame_out = list(tracker.frame_out)
        self.frame_phase = list(tracker.frame_phase)
        self.modules = [(path, id(mod), type(mod).__name__,
                         [(id(p), p.numel()) for p in mod._parameters.values() if p is not None])
                        for path, mod in named]
        self.phase_names = list(phase_names)
        self.order = list(order)
        self._text: _EventText | None = None

    def text(self) -> "_EventText":
        """The events' text columns (made once, shared by ``events`` and ``by_op``)."""
        if self._text is None:
            fpath = self.frame_path
            self._text = _EventText(
                module=[fpath[f] if f >= 0 else "" for f in self.ev_frame],
                shapes=_texts(self.ev_shapes, shapes_text),
                dtype=_texts(self.ev_dtype, dtype_name),
            )
        return self._text


class _EventText(NamedTuple):
    """The events' text columns, one entry per event: module path, input_shapes, dtype."""

    module: list[str]
    shapes: list[str]
    dtype: list[str]


def _texts(keys: list, fmt: Callable[[Any], str]) -> list[str]:
    """``fmt`` of every key, each distinct key formatted once."""
    cache: dict = {}
    out = []
    for k in keys:
        text = cache.get(k)
        if text is None:
            text = cache[k] = fmt(k)
        out.append(text)
    return out


def _events(snap: Snapshot) -> pd.DataFrame:
    """One row per dispatched op call, in order."""
    mode, ev, phase_names = snap, snap.text(), snap.phase_names
    n = len(mode.ev_op)
    return frame({
        "seq": range(n),
        "op": mode.ev_op,
        "input_shapes": ev.shapes,
        "dtype": ev.dtype,
        "macs": mode.ev_macs,
        "flops": [2 * m for m in mode.ev_macs],
        "other_flops": mode.ev_other,
        "bytes": mode.ev_bytes,
        "module": ev.module,
        "counted": mode.ev_counted,
        "phase": [phase_names[p] for p in mode.ev_phase],
    }, EVENT_COLUMNS)


def _by_op(snap: Snapshot) -> pd.DataFrame:
    """One row per (phase, op, input_shapes, dtype, module): phases in order, then first-seen order."""
    mode, ev, phase_names = snap, snap.text(), snap.phase_names
    rank = {p: i for i, p in enumerate(snap.order)}
    agg: dict[tuple, list] = {}
    for phase, op, shapes, dtype, macs, other, nb, path in zip(
        mode.ev_phase, mode.ev_op, ev.shapes, ev.dtype, mode.ev_macs, mode.ev_other, mode.ev_bytes, ev.module,
    ):
        key = (phase, op, shapes, dtype, path)
        a = agg.get(key)
        if a is None:
            agg[key] = [1, macs, other, nb]
        else:
            a[0] += 1
            a[1] += macs
            a[2] += other
            a[3] += nb
    keys = sorted(agg, key=lambda k: rank[k[0]])  # stable: first-seen order within a phase
    sums = [agg[k] for k in keys]
    return frame({
        "op": [k[1] for k in keys], "input_shapes": [k[2] for k in keys], "dtype": [k[3] for k in keys],
        "calls": [a[0] for a in sums], "macs": [a[1] for a in sums], "flops": [2 * a[1] for a in sums],
        "other_flops": [a[2] for a in sums], "bytes": [a[3] for a in sums], "module": [k[4] for k in keys],
        "phase": [phase_names[k[0]] for k in keys],
    }, BY_OP_COLUMNS, from_rows=True)


def _credited(tracker: Snapshot) -> list[frozenset]:
    """For each frame, the module paths its ops are credited to (see the module docstring)."""
    out: list[frozenset] = []
    for path, parent in zip(tracker.frame_path, tracker.frame_parent):
        paths = set(out[parent]) if parent >= 0 else {""}
        prefix = path
        while prefix not in paths:
            paths.add(prefix)
            cut = prefix.rfind(".")
            prefix = prefix[:cut] if cut >= 0 else ""
        out.append(frozenset(paths))
    return out


def _module_work(snap: Snapshot) -> dict[tuple[int, str], list[int]]:
    """(phase, path) -> [macs, other_flops, bytes] by the crediting rule."""
    tracker = mode = snap
    own: dict[tuple[int, int], list[int]] = {}
    for frame, phase, macs, other, nb in zip(mode.ev_frame, mode.ev_phase, mode.ev_macs, mode.ev_other,
                                             mode.ev_bytes):
        o = own.get((frame, phase))
        if o is None:
            own[(frame, phase)] = [macs, other, nb]
        else:
            o[0] += macs
            o[1] += other
            o[2] += nb
    credited = _credited(tracker)
    root = frozenset({""})
    work: dict[tuple[int, str], list[int]] = {}
    for (frame, phase), (macs, other, nb) in own.items():
        for path in (credited[frame] if frame >= 0 else root):
            w = work.setdefault((phase, path), [0, 0, 0])
            w[0] += macs
            w[1] += other
            w[2] += nb
    return work


def _module_calls(tracker: Snapshot) -> tuple[dict, dict]:
    """(phase, path) -> own calls (a call nested in a call of the same module is part of it) and first output."""
    fpath, parent = tracker.frame_path, tracker.frame_parent
    calls: dict[tuple[int, str], int] = {}
    first_out: dict[tuple[int, str], str] = {}
    for i, path in enumerate(fpath):
        p = parent[i]
        while p >= 0 and fpath[p] != path:
            p = parent[p]
        if p >= 0:
            continue
        key = (tracker.frame_phase[i], path)
        calls[key] = calls.get(key, 0) + 1
        if key not in first_out:
            first_out[key] = shape_text(tracker.frame_out[i])
    return calls, first_out


def _by_module(snap: Snapshot) -> pd.DataFrame:
    """One row per (phase, module); a shared module once, under its first path (as ``named_modules``)."""
    phase_names, order = snap.phase_names, snap.order
    work = _module_work(snap)
    calls, first_out = _module_calls(snap)
    subtree_params = _subtree_params(snap.modules)
    modules = []
    listed: set[int] = set()
    for path, mod_id, typ, _ in snap.modules:
        if mod_id not in listed:
            listed.add(mod_id)
            modules.append((path, typ, 0 if path == "" else path.count(".") + 1, subtree_params.get(path, 0)))
    zero = (0, 0, 0)
    keys = [(phase, path) for phase in order for path, _, _, _ in modules]
    sums = [work.get(k, zero) for k in keys]
    reps = len(order)
    return frame({
        "path": [m[0] for m in modules] * reps, "type": [m[1] for m in modules] * reps,
        "depth": [m[2] for m in modules] * reps, "output_shape": [first_out.get(k, "") for k in keys],
        "params": [m[3] for m in modules] * reps, "macs": [w[0] for w in sums], "flops": [2 * w[0] for w in sums],
        "other_flops": [w[1] for w in sums], "bytes": [w[2] for w in sums], "calls": [calls.get(k, 0) for k in keys],
        "phase": [phase_names[phase] for phase in order for _ in modules],
    }, BY_MODULE_COLUMNS, from_rows=True)


def _subtree_params(modules: list) -> dict[str, int]:
    """Parameters of each module path including its children, unique tensors (as ``mod.parameters()``).

    ``modules`` is :attr:`Snapshot.modules`, from ``model.named_modules(remove_duplicate=False)``:
    a shared submodule is seen under every path, so each of its parents includes it.
    """
    totals: dict[str, int] = {}
    seen: dict[str, set] = {}
    for path, _, _, own in modules:
        for pid, n in own:
            prefix = path
            while True:
                ids = seen.setdefault(prefix, set())
                if pid not in ids:
                    ids.add(pid)
                    totals[prefix] = totals.get(prefix, 0) + n
                if not prefix:
                    break
                cut = prefix.rfind(".")
                prefix = prefix[:cut] if cut >= 0 else ""
    return totals


def _by_phase(snap: Snapshot) -> pd.DataFrame:
    """One row per phase in order of first use: op calls and totals."""
    mode, phase_names, order = snap, snap.phase_names, snap.order
    agg = {p: [0, 0, 0, 0] for p in order}
    for phase, macs, other, nb in zip(mode.ev_phase, mode.ev_macs, mode.ev_other, mode.ev_bytes):
        a = agg[phase]
        a[0] += 1
        a[1] += macs
        a[2] += other
        a[3] += nb
    sums = list(agg.values())
    return frame({
        "phase": [phase_names[p] for p in agg], "calls": [a[0] for a in sums], "macs": [a[1] for a in sums],
        "flops": [2 * a[1] for a in sums], "other_flops": [a[2] for a in sums], "bytes": [a[3] for a in sums],
    }, BY_PHASE_COLUMNS, from_rows=True)


def _coverage(mode: CountingMode) -> tuple[dict[str, int], dict]:
    """(uncounted op -> calls, the coverage dict) of the events."""
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
    n = len(mode.ev_op)
    coverage = {
        "ops_seen": len(names_seen),
        "ops_counted": len(names_counted - set(unc)),
        "calls": n,
        "calls_counted": calls_counted,
        "share_of_calls": (calls_counted / n) if n else 1.0,
        "uncounted_ops": sorted(unc),
    }
    return unc, coverage


def _uncounted(unc: dict[str, int]) -> pd.DataFrame:
    """The ops that ran without a formula, most calls first."""
    ops = sorted(unc, key=lambda op: (-unc[op], op))
    return frame({"op": ops, "calls": [unc[op] for op in ops]}, UNCOUNTED_COLUMNS, from_rows=True)


# ---------------------------------------------------------------- DataFrames from columns

#: the text columns; "counted" is bool; every other column holds Python ints
_TEXT = frozenset({"op", "input_shapes", "dtype", "module", "phase", "path", "type", "output_shape"})
_STR_DTYPE: list = []  # the dtype pandas gives a column of Python strings (str in pandas 3, object before)


def frame(columns: dict[str, Any], names: list[str], from_rows: bool = False) -> pd.DataFrame:
    """A DataFrame of ``columns`` (lists, or a range) in the order ``names``, with the dtypes pandas
    infers from those lists (int64, bool, its string dtype), built from typed arrays: several
    times faster than letting pandas infer them. An empty frame is built as pandas builds it from
    rows (``from_rows``: object columns) or from the lists (float64); ints beyond int64 fall back
    to pandas' own inference."""
    n = len(columns[names[0]])
    if not n:
        return pd.DataFrame([], columns=names) if from_rows else pd.DataFrame(columns, columns=names)
    arrays = [_array(k, columns[k]) for k in names]
    if _FROM_ARRAYS is not None and not any(type(a) is list for a in arrays):
        return _FROM_ARRAYS(arrays, columns=names, index=pd.RangeIndex(n), verify_integrity=False)
    return pd.DataFrame(dict(zip(names, arrays)), columns=names, copy=False)


#: pandas' constructor from typed arrays (private, in pandas since 0.23): half the time of
#: ``pd.DataFrame(dict)``, which re-checks every array; the public constructor where it is missing
_FROM_ARRAYS = getattr(pd.DataFrame, "_from_arrays", None)


def _array(name: str, values):
    """The typed array of one column: pandas' string dtype for text, bool, else int64 (a list when a
    value does not fit int64, for pandas to infer)."""
    if name in _TEXT:
        return _text_array(values)
    if name == "counted":
        return np.array(values, dtype=bool)
    if isinstance(values, range):
        return np.arange(values.start, values.stop, values.step, dtype=np.int64)
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:  # a figure beyond int64: as pandas would store it (uint64 or object)
        return list(values)


def _text_array(values: list):
    """A text column as pandas stores a list of str: its string dtype (pandas 3), object before."""
    if not _STR_DTYPE:
        _STR_DTYPE.append(pd.DataFrame({"s": ["x"]})["s"].dtype)
    dt = _STR_DTYPE[0]
    return np.array(values, dtype=object) if dt == object else pd.array(values, dtype=dt)
