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

import pandas as pd

from .counts import (BY_MODULE_COLUMNS, BY_OP_COLUMNS, BY_PHASE_COLUMNS, EVENT_COLUMNS, UNCOUNTED_COLUMNS,
                     Counts)
from .mode import CountingMode, ModuleTracker


def build_counts(named: list, tracker: ModuleTracker, mode: CountingMode, phase_names: list[str],
                 order: list[int], params: tuple[int, int, int], device: str, training: bool) -> Counts:
    """Tables and totals of the events in ``mode``.

    ``named``: ``model.named_modules(remove_duplicate=False)``; ``phase_names[i]``: the
    name of phase index ``i``; ``order``: the phase indices to list, in order;
    ``params``: (params, trainable_params, buffers).
    """
    fpath = tracker.frame_path
    ev_module = [fpath[f] if f >= 0 else "" for f in mode.ev_frame]
    rank = {p: i for i, p in enumerate(order)}
    uncounted, coverage = _coverage(mode)
    macs = sum(mode.ev_macs)
    return Counts(
        params=params[0], trainable_params=params[1], buffers=params[2],
        macs=macs, flops=2 * macs, other_flops=sum(mode.ev_other), bytes=sum(mode.ev_bytes),
        by_op=_by_op(mode, ev_module, phase_names, rank),
        by_module=_by_module(named, tracker, mode, phase_names, order),
        uncounted=uncounted, coverage=coverage,
        events=_events(mode, ev_module, phase_names),
        by_phase=_by_phase(mode, phase_names, order),
        device=device, training=training, notes=list(dict.fromkeys(mode.notes)),
    )


def _events(mode: CountingMode, ev_module: list[str], phase_names: list[str]) -> pd.DataFrame:
    n = len(mode.ev_op)
    return pd.DataFrame({
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
        "phase": [phase_names[p] for p in mode.ev_phase],
    }, columns=EVENT_COLUMNS)


def _by_op(mode: CountingMode, ev_module: list[str], phase_names: list[str], rank: dict[int, int]) -> pd.DataFrame:
    """One row per (phase, op, input_shapes, dtype, module): phases in order, then first-seen order."""
    agg: dict[tuple, list] = {}
    for phase, op, shapes, dtype, macs, other, nb, path in zip(
        mode.ev_phase, mode.ev_op, mode.ev_shapes, mode.ev_dtype, mode.ev_macs, mode.ev_other, mode.ev_bytes,
        ev_module,
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
    rows = [(k[1], k[2], k[3], agg[k][0], agg[k][1], 2 * agg[k][1], agg[k][2], agg[k][3], k[4], phase_names[k[0]])
            for k in keys]
    return pd.DataFrame(rows, columns=BY_OP_COLUMNS)


def _credited(tracker: ModuleTracker) -> list[frozenset]:
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


def _module_work(tracker: ModuleTracker, mode: CountingMode) -> dict[tuple[int, str], list[int]]:
    """(phase, path) -> [macs, other_flops, bytes] by the crediting rule."""
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


def _module_calls(tracker: ModuleTracker) -> tuple[dict, dict]:
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
            first_out[key] = tracker.frame_out[i] or ""
    return calls, first_out


def _by_module(named: list, tracker: ModuleTracker, mode: CountingMode, phase_names: list[str],
               order: list[int]) -> pd.DataFrame:
    """One row per (phase, module); a shared module once, under its first path (as ``named_modules``)."""
    work = _module_work(tracker, mode)
    calls, first_out = _module_calls(tracker)
    subtree_params = _subtree_params(named)
    modules = []
    listed: set[int] = set()
    for path, mod in named:
        if id(mod) not in listed:
            listed.add(id(mod))
            modules.append((path, type(mod).__name__, 0 if path == "" else path.count(".") + 1,
                            subtree_params.get(path, 0)))
    zero = (0, 0, 0)
    rows = []
    for phase in order:
        name = phase_names[phase]
        for path, typ, depth, nparams in modules:
            key = (phase, path)
            macs, other, nb = work.get(key, zero)
            rows.append((path, typ, depth, first_out.get(key, ""), nparams, macs, 2 * macs, other, nb,
                         calls.get(key, 0), name))
    return pd.DataFrame(rows, columns=BY_MODULE_COLUMNS)


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


def _by_phase(mode: CountingMode, phase_names: list[str], order: list[int]) -> pd.DataFrame:
    agg = {p: [0, 0, 0, 0] for p in order}
    for phase, macs, other, nb in zip(mode.ev_phase, mode.ev_macs, mode.ev_other, mode.ev_bytes):
        a = agg[phase]
        a[0] += 1
        a[1] += macs
        a[2] += other
        a[3] += nb
    rows = [(phase_names[p], a[0], a[1], 2 * a[1], a[2], a[3]) for p, a in agg.items()]
    return pd.DataFrame(rows, columns=BY_PHASE_COLUMNS)


def _coverage(mode: CountingMode) -> tuple[pd.DataFrame, dict]:
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
    uncounted = pd.DataFrame(sorted(unc.items(), key=lambda kv: (-kv[1], kv[0])), columns=UNCOUNTED_COLUMNS)
    coverage = {
        "ops_seen": len(names_seen),
        "ops_counted": len(names_counted - set(unc)),
        "calls": n,
        "calls_counted": calls_counted,
        "share_of_calls": (calls_counted / n) if n else 1.0,
        "uncounted_ops": sorted(unc),
    }
    return uncounted, coverage
