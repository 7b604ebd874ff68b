"""Join measured time with counted work, per operator and per module.

In: the profiler's events of the active steps (:class:`harness.pipeline.profiling.Profile`)
and the counter's per-call events (:class:`harness.count.Counts`). Out: DataFrames
``ops_by_shape`` (per aten op and input shapes), ``ops`` (per aten op), ``modules``
(per module path) and a ``coverage`` dict. All figures are per forward.

Attribution. The counter sees each op at the dispatch level, as the model calls it
under ``torch.inference_mode()``: ``aten::conv2d``, ``aten::linear``, ``aten::lstm``,
``aten::_transformer_encoder_layer_fwd``; the kernels such an op runs inside
(``aten::mkldnn_convolution``, ``aten::addmm``, ``aten::copy_``) are its
implementation. So, in the profiler's event tree, a *dispatch-level* event is one whose
name the counter saw and that has no dispatch-level ancestor. Its ``self_time_s`` is its
inclusive time (its own self time plus that of its implementation); implementation
events get 0; every other event (labels such as ``model_inference``, any wrapper the
counter did not see) keeps its own self time. Each microsecond of profiled self time is
therefore counted exactly once, and the work of an op sits beside the time of the op
that does it: ``aten::linear`` holds the GEMM's FLOPs and time, ``aten::addmm`` beneath
it holds neither, so nothing is counted twice.

Calls are matched one to one when the profiler's dispatch-level sequence of a forward
equals the counter's (the normal case: same model, same inputs, same modes); otherwise
by (op, input shapes), and work the profiler never showed is kept in a row marked
``(not seen by profiler)`` so that totals still add up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .kernel_join import ancestors as _ancestors
from .kernel_join import kernel_join
from .profiling import US, Profile, _is_cpu

WORK = ["macs", "flops", "other_flops", "bytes"]
UNSEEN = "(not seen by profiler)"


@dataclass
class Joined:
    """The join's output. ``calls``: one row per profiled event with attributed time."""

    calls: pd.DataFrame
    ops_by_shape: pd.DataFrame
    ops: pd.DataFrame
    modules: pd.DataFrame
    coverage: dict
    aligned: bool
    time_per_forward_s: float
    op_time_per_forward_s: float
    kernels: pd.DataFrame  # kernels.csv (eager CUDA: device kernels; compiled: harness.pipeline.kernel_join)
    fusion: dict | None = None  # compiled: bytes and kernels per iteration, eager vs compiled


def _event_rows(profile: Profile, counter_ops: set[str]) -> tuple[list[dict], list[dict]]:
    """Walk the CPU-side event forest: one row per event (step, phase, kind, attributed time in s)
    and one row per device kernel, with the row index of the dispatch-level op that launched it."""
    cuda = profile.device_type == "cuda"
    phases = set(profile.phases)
    rows: list[dict] = []
    kernels: list[dict] = []
    step = -1

    def own(e) -> float:
        return (e.self_device_time_total if cuda else e.self_cpu_time_total) * US

    def inclusive(e) -> float:
        return (e.device_time_total if cuda else e.cpu_time_total) * US

    def visit(e, op_row: int | None, phase: str) -> None:
        nonlocal step
        if e.name == profile.label:
            step += 1
        phase = e.name if e.name in phases else phase
        if op_row is not None:
            kind, t = "nested", 0.0
        elif e.name in counter_ops:
            kind, t = "op", inclusive(e)
        elif e.name.startswith("aten::") or "::" in e.name and not e.name.startswith(("harness::", "module::")):
            kind, t = "wrapper", own(e)
        else:
            kind, t = "label", own(e)
        rows.append({"step": step, "phase": phase, "name": e.name, "input_shapes": str(e.input_shapes), "kind": kind,
                     "self_time_s": t, "start_us": e.time_range.start})
        here = op_row if op_row is not None else (len(rows) - 1 if kind == "op" else None)
        for k in getattr(e, "kernels", []):
            kernels.append({"step": step, "phase": phase, "kernel": k.name, "row": here if here is not None else len(rows) - 1,
                            "device_time_s": k.duration * US})
        for c in sorted(e.cpu_children, key=lambda c: c.time_range.start):
            if _is_cpu(c):
                visit(c, here, phase)

    # CPU-side events only: on CUDA, kernels are attached to the op that launched them
    # (its device time), and listing them again as roots would count them twice
    roots = sorted((e for e in profile.events if e.cpu_parent is None and _is_cpu(e)), key=lambda e: e.time_range.start)
    for r in roots:
        visit(r, None, "")
    return rows, kernels


KERNEL_COLUMNS = ["kernel", "op", "phase", "module", "calls", "device_time_s", "time_share"]


def _kernel_table(kernels: list[dict], calls: pd.DataFrame, steps: int) -> pd.DataFrame:
    """kernels.csv: per (kernel, launching op, phase, module), calls and device time per iteration."""
    if not kernels:
        return pd.DataFrame(columns=KERNEL_COLUMNS)
    k = pd.DataFrame(kernels)
    k["op"] = [calls.at[r, "name"] for r in k.row]
    k["module"] = [calls.at[r, "module"] or "" for r in k.row]
    t = (k.groupby(["kernel", "op", "phase", "module"], as_index=False, sort=False)
         .agg(calls=("device_time_s", "size"), device_time_s=("device_time_s", "sum")))
    t[["calls", "device_time_s"]] = t[["calls", "device_time_s"]] / steps
    total = t.device_time_s.sum()
    t["time_share"] = t.device_time_s / total if total > 0 else 0.0
    return t.sort_values("device_time_s", ascending=False, kind="stable").reset_index(drop=True)[KERNEL_COLUMNS]


def _match_step(got: pd.DataFrame, want_names: list[str], want_shapes: list[str],
                subsequence: bool = True) -> list[int] | None:
    """Rows of one profiled iteration that the counted calls match, in order: all of them when the
    op sequences are equal, else the counted (op, shapes) sequence as a subsequence of the profiled
    one (the profiler saw extra calls, e.g. an ``aten::to`` a library makes inside a tensor
    constructor); None when neither holds."""
    names, shapes = list(got.name), list(got.input_shapes)
    if names == want_names:
        return list(got.index)
    if not subsequence:
        return None
    out, j = [], 0
    for n, sh in zip(want_names, want_shapes):
        while j < len(names) and (names[j] != n or shapes[j] != sh):
            j += 1
        if j == len(names):
            return None
        out.append(got.index[j])
        j += 1
    return out


def _align(calls: pd.DataFrame, cevents: pd.DataFrame, steps: int, complete: bool = True) -> bool:
    """Copy per-call work and module onto the dispatch-level rows the counted calls match, one to one
    in order (:func:`_match_step`); extra profiled calls keep their time and get no work. Only when
    the counted calls hold all the counted work (``complete``) may the profiler have seen extra calls."""
    ops = calls[calls.kind == "op"]
    want_names, want_shapes = list(cevents.op), [str(x) for x in cevents.input_shapes]
    idx: list[int] = []
    for s in range(steps):
        matched = _match_step(ops[ops.step == s], want_names, want_shapes, subsequence=complete)
        if matched is None:
            return False
        idx += matched
    for col in WORK:
        calls.loc[idx, col] = list(cevents[col]) * steps
    calls.loc[idx, "module"] = list(cevents.module) * steps
    counted = set(cevents.loc[cevents.counted.astype(bool), "op"])
    calls.loc[ops.index, "counted"] = ops.name.isin(counted)
    calls.loc[idx, "counted"] = list(cevents.counted) * steps
    calls["matched"] = False
    calls.loc[idx, "matched"] = True
    return len(cevents) > 0 or len(ops) == 0


def _by_key(by_op: pd.DataFrame, phases: tuple[str, ...]) -> pd.DataFrame:
    """The counter's work per (phase, op, input shapes); a count without phases gets the run's one phase."""
    df = by_op if "phase" in by_op else by_op.assign(phase=phases[0] if len(phases) == 1 else "")
    return df.groupby(["phase", "op", "input_shapes"], as_index=False)[WORK + ["calls"]].sum()


def _key_join(calls: pd.DataFrame, by_op: pd.DataFrame, cevents: pd.DataFrame, steps: int,
              phases: tuple[str, ...] = ("forward",)) -> pd.DataFrame:
    """Fallback: put each (phase, op, shapes) group's work on its profiled calls of that phase.

    When the profiler shows calls with the same op and shapes in the phase, the group's work
    goes whole onto the first of them (its row then holds exactly the counted integers); when
    only the op name matches, it is spread over that op's calls in the phase by their time.
    Work of a group the profiler never showed goes to a row marked ``UNSEEN``.
    """
    counted_ops = set(cevents.loc[cevents.counted, "op"])
    calls["counted"] = calls["name"].isin(counted_ops)
    ops = calls[calls.kind == "op"]
    extra_rows = []
    for _, k in _by_key(by_op, phases).iterrows():
        in_phase = ops[(ops.phase == k.phase) & (ops.name == k.op)] if k.phase else ops[ops.name == k.op]
        sel = in_phase[in_phase.input_shapes == k.input_shapes]
        if not sel.empty:
            first = sel.index[0]
            for c in WORK:
                calls.loc[first, c] = calls.loc[first, c] + k[c] * steps
            continue
        sel = in_phase
        if sel.empty:
            extra_rows.append({"step": -1, "phase": k.phase, "name": k.op, "input_shapes": UNSEEN, "kind": "op",
                               "self_time_s": 0.0, **{c: float(k[c]) * steps for c in WORK},
                               "counted": k.op in counted_ops, "module": None})
            continue
        weights = sel.self_time_s if sel.self_time_s.sum() > 0 else pd.Series(1.0, index=sel.index)
        share = weights / weights.sum()
        for c in WORK:
            calls.loc[sel.index, c] = calls.loc[sel.index, c].fillna(0) + share * float(k[c]) * steps
    if extra_rows:
        calls = pd.concat([calls, pd.DataFrame(extra_rows)], ignore_index=True)
    return calls


@dataclass
class Ceilings:
    """The roofline's ceilings: the run's peaks, and where a Peak is given, per-op FLOP/s ceilings
    (TF32 for convs/matmuls on CUDA) and the bandwidth of the memory level a working set fits in."""

    flop_per_s: float | None
    bytes_per_s: float | None
    peak: Any = None  # harness.hardware.Peak

    def flop_for(self, names: pd.Series | None, n: int) -> pd.Series:
        if self.peak is None or names is None or not self.flop_per_s:
            return pd.Series([self.flop_per_s or math.nan] * n, dtype=float)
        return pd.Series([self.peak.ceiling_for_op(str(x))[0] or math.nan for x in names], dtype=float)

    def levels(self, working_sets: pd.Series) -> tuple[list[str], pd.Series]:
        if self.peak is None:
            return ["DRAM"] * len(working_sets), pd.Series([self.bytes_per_s or math.nan] * len(working_sets), dtype=float)
        pairs = [self.peak.bandwidth_for(int(w)) for w in working_sets.fillna(0)]
        return [lv for _, lv in pairs], pd.Series([bw or math.nan for bw, _ in pairs], dtype=float)


def _derive(df: pd.DataFrame, time_col: str, ceilings: Ceilings, total_time: float) -> pd.DataFrame:
    """Add rates, intensity, utilization, memory level, bound and share of time (README documents each).

    ``utilization`` is against the row's own FLOP/s ceiling; ``bandwidth_utilization`` against
    main memory (DRAM); ``memory_level`` is the level one call's working set (its counted
    bytes) fits in, and ``level_bandwidth_utilization`` is against that level's bandwidth.
    """
    df = df.reset_index(drop=True)
    t = df[time_col].where(df[time_col] > 0)
    df["total_flops"] = df["flops"] + df["other_flops"]
    df["achieved_flop_per_s"] = df["flops"] / t
    df["achieved_total_flop_per_s"] = df["total_flops"] / t
    df["achieved_bytes_per_s"] = df["bytes"] / t
    df["arithmetic_intensity"] = df["total_flops"] / df["bytes"].where(df["bytes"] > 0)
    df["peak_flop_per_s"] = ceilings.flop_for(df["name"] if "name" in df else None, len(df))
    df["peak_bytes_per_s"] = ceilings.bytes_per_s if ceilings.bytes_per_s else math.nan
    # FLOP/s utilization is about multiply-add work: blank (NaN) where there is none, never 0 %
    df["utilization"] = (df["achieved_flop_per_s"] / df["peak_flop_per_s"]).where(df["flops"] > 0)
    df["bandwidth_utilization"] = df["achieved_bytes_per_s"] / df["peak_bytes_per_s"]
    calls = df["calls"].where(df["calls"] > 0, 1) if "calls" in df else 1
    df["memory_level"], level_bw = ceilings.levels(df["bytes"] / calls)
    df["level_bandwidth_utilization"] = df["achieved_bytes_per_s"] / level_bw
    ridge = df["peak_flop_per_s"] / level_bw
    df["bound"] = ["" if not (tf > 0) or math.isnan(ai) or math.isnan(r) else ("compute" if ai >= r else "memory")
                   for tf, ai, r in zip(df["total_flops"], df["arithmetic_intensity"].fillna(math.nan), ridge)]
    df["time_share"] = df[time_col] / total_time if total_time > 0 else math.nan
    return df


def _kind(kinds: pd.Series) -> str:
    """One kind for a group of events: an op wherever it ran at the dispatch level."""
    for k in ("op", "wrapper", "label"):
        if (kinds == k).any():
            return k
    return "nested"


def _phase_of_events(cevents: pd.DataFrame, phases: tuple[str, ...]) -> pd.DataFrame:
    """The counter's events with a ``phase`` column (a one-phase count without one gets that phase)."""
    if "phase" not in cevents:
        cevents["phase"] = phases[0] if len(phases) == 1 else ""
    return cevents


def _attributed_calls(profile: Profile, counts: Any, cevents: pd.DataFrame) -> tuple[pd.DataFrame, bool, list[dict]]:
    """Profiled events with the counter's work on the dispatch-level ones; whether calls aligned."""
    steps = profile.steps
    rows, kernels = _event_rows(profile, set(cevents.op))
    calls = pd.DataFrame(rows)
    for c in WORK:
        calls[c] = 0.0
    calls["module"] = None
    calls["counted"] = False
    complete = all(abs(float(cevents[c].sum()) - float(getattr(counts, c))) <= 1e-6 * max(1.0, abs(float(getattr(counts, c))))
                   for c in WORK)
    aligned = _align(calls, cevents, steps, complete)
    if not aligned:
        for c in WORK:
            calls[c] = 0.0
        calls = _key_join(calls, counts.by_op, cevents, steps, profile.phases)
        calls["phase"] = calls["phase"].fillna(profile.phases[0] if len(profile.phases) == 1 else "")
    calls[WORK] = calls[WORK].fillna(0.0)
    return calls, aligned, kernels


def _op_table(calls: pd.DataFrame, keys: list[str], raw: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Attributed figures per ``phase`` + ``keys``, per iteration, beside the profiler's own columns.

    The profiler's columns (``calls``, ``*_cpu_time_total_s``, memory) are per name over the
    whole iteration; a name that runs in several phases gets them on its first phase's row.
    """
    agg = (calls.groupby(["phase"] + keys, as_index=False, sort=False)
           .agg(self_time_s=("self_time_s", "sum"), macs=("macs", "sum"), flops=("flops", "sum"),
                other_flops=("other_flops", "sum"), bytes=("bytes", "sum"), kind=("kind", _kind),
                counted=("counted", "max"), dispatch_calls=("kind", lambda k: float((k == "op").sum()))))
    agg[["self_time_s", "dispatch_calls"] + WORK] = agg[["self_time_s", "dispatch_calls"] + WORK] / steps
    if len(raw):
        first = ~agg.duplicated(keys)
        df = agg[first].merge(raw, on=keys, how="outer")
        df = pd.concat([df, agg[~first]], ignore_index=True)
        df["phase"] = df["phase"].fillna("")
    else:
        df = agg
    df["kind"] = df["kind"].fillna("nested")
    df["calls"] = df["calls"].fillna(0) if "calls" in df else 0
    df[["self_time_s", "dispatch_calls"] + WORK] = df[["self_time_s", "dispatch_calls"] + WORK].fillna(0.0)
    df["counted"] = df["counted"].fillna(False).astype(bool)
    return df


def _module_times(calls: pd.DataFrame, counts: Any, aligned: bool, steps: int) -> dict[tuple[str, str], float]:
    """Seconds per iteration of the ops dispatched inside each module (children included), per phase."""
    op_calls = calls[calls.kind == "op"]
    out: dict[tuple[str, str], float] = {}

    def add(phase: str, module: str, t: float) -> None:
        for a in _ancestors(module):
            out[(phase, a)] = out.get((phase, a), 0.0) + t

    if aligned:
        for (phase, m), t in op_calls.groupby([op_calls["phase"], op_calls["module"].fillna("")])["self_time_s"].sum().items():
            add(phase, m, t / steps)
        return out
    phases = tuple(dict.fromkeys(op_calls["phase"])) or ("",)
    by_key = _by_key(counts.by_op, phases)
    by_op = counts.by_op if "phase" in counts.by_op else counts.by_op.assign(phase=phases[0])
    key_time = op_calls.groupby(["phase", "name", "input_shapes"])["self_time_s"].sum() / steps
    name_time = op_calls.groupby(["phase", "name"])["self_time_s"].sum() / steps
    key_calls = by_key.set_index(["phase", "op", "input_shapes"])["calls"]
    name_calls = by_key.groupby(["phase", "op"])["calls"].sum()
    for _, r in by_op.iterrows():
        key = (r.phase, r.op, r.input_shapes)
        if key in key_time.index:
            t = key_time[key] * r.calls / key_calls[key]
        else:  # shapes did not match: share the name's time in the phase by calls
            t = name_time.get((r.phase, r.op), 0.0) * r.calls / max(name_calls.get((r.phase, r.op), 1), 1)
        add(r.phase, r.module or "", t)
    return out


def _modules(calls, counts, aligned, steps, phases, ceilings: Ceilings, op_time,
             times: dict[tuple[str, str], float] | None = None) -> pd.DataFrame:
    """counts.by_module with ``phase`` and ``time_s`` per iteration, and the derived rates. ``times``: a
    compiled run's module times from its kernels (:mod:`harness.pipeline.kernel_join`)."""
    times = times if times is not None else _module_times(calls, counts, aligned, steps)
    modules = counts.by_module.copy()
    if "phase" not in modules:
        modules.insert(0, "phase", phases[0] if len(phases) == 1 else "")
    modules["time_s"] = [times.get((ph, p), 0.0) for ph, p in zip(modules["phase"], modules["path"])]
    return _derive(modules, "time_s", Ceilings(ceilings.flop_per_s, ceilings.bytes_per_s), op_time)


def _coverage(calls: pd.DataFrame, counts: Any, aligned: bool, steps: int, op_time: float,
              total_time: float = 0.0) -> dict:
    cov = dict(getattr(counts, "coverage", {}) or {})
    op_calls = calls[calls.kind == "op"]
    counted_time = float(op_calls.loc[op_calls.counted.astype(bool), "self_time_s"].sum()) / steps
    unc = op_calls[~op_calls.counted.astype(bool)]
    top_unc = (unc.groupby("name")["self_time_s"].agg(["sum", "count"]).sort_values("sum", ascending=False).head(10))
    return {
        "share_of_ops": (cov.get("ops_counted", 0) / cov["ops_seen"]) if cov.get("ops_seen") else 1.0,
        "share_of_calls": cov.get("share_of_calls", 1.0),
        # no op time in a profiled iteration that took time (a compiled model's fused kernels): none covered
        "share_of_time": counted_time / op_time if op_time > 0 else 0.0 if total_time > 0 else 1.0,
        "ops_seen": cov.get("ops_seen"),
        "ops_counted": cov.get("ops_counted"),
        "uncounted_ops": cov.get("uncounted_ops", []),
        "top_uncounted_by_time": [
            {"op": n, "calls": float(r["count"]) / steps, "time_s": float(r["sum"]) / steps} for n, r in top_unc.iterrows()
        ],
        "calls_aligned": aligned,
        # dispatch-level calls the profiler saw but the counter did not (aligned runs; per iteration)
        "extra_profiled_calls": (float((~op_calls["matched"]).sum()) / steps
                                 if aligned and "matched" in op_calls else 0.0),
    }


def join(profile: Profile, counts: Any, *, peak_flop_per_s: float | None = None, peak_bytes_per_s: float | None = None,
         peak: Any = None, provenance: Any = None) -> Joined:
    """Join a profile with counts. See the module docstring for the attribution rule.

    ``peak`` (a :class:`harness.hardware.Peak`) gives per-op ceilings and memory levels; the two
    floats are the run's peaks (taken from ``peak`` when it is given). ``provenance`` (a compiled
    model's :class:`harness.pipeline.provenance.Recorder`): kernels.csv, module times and coverage
    come from the kernels the compiled code ran (:func:`harness.pipeline.kernel_join.kernel_join`).
    """
    cevents = _phase_of_events(counts.events.copy(), profile.phases)
    if "counted" not in cevents:
        cevents["counted"] = True
    cevents["module"] = cevents["module"].fillna("")
    steps = profile.steps
    calls, aligned, kernels = _attributed_calls(profile, counts, cevents)
    total_time = float(calls.self_time_s.sum()) / steps
    op_time = float(calls.loc[calls.kind == "op", "self_time_s"].sum()) / steps
    ceilings = (Ceilings(peak.flop_per_s, peak.bytes_per_s, peak) if peak is not None
                else Ceilings(peak_flop_per_s, peak_bytes_per_s))

    def table(keys: list[str], raw: pd.DataFrame) -> pd.DataFrame:
        df = _derive(_op_table(calls, keys, raw, steps), "self_time_s", ceilings, total_time)
        return df.sort_values("self_time_s", ascending=False, kind="stable").reset_index(drop=True)

    coverage = _coverage(calls, counts, aligned, steps, op_time, total_time)
    if provenance is not None and provenance.graphs:  # a compiled run: its kernels replace the device kernels
        kj = kernel_join(profile, counts, cevents, provenance, lambda df, t: _derive(df, "time_s", ceilings, t))
        kernel_table, times, fusion = kj.table, kj.module_times, kj.fusion
        coverage = {**coverage, **kj.coverage}
    else:
        kernel_table, times, fusion = _kernel_table(kernels, calls, steps), None, None
    return Joined(calls=calls, ops_by_shape=table(["name", "input_shapes"], profile.ops_by_shape_raw),
                  ops=table(["name"], profile.ops_raw),
                  modules=_modules(calls, counts, aligned, steps, profile.phases, ceilings, op_time, times),
                  coverage=coverage, aligned=aligned, kernels=kernel_table, fusion=fusion,
                  time_per_forward_s=total_time, op_time_per_forward_s=op_time)
