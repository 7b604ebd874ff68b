"""A compiled run's kernels joined with provenance and counted work: kernels.csv, module times, coverage.

In: the profiled events (:class:`harness.pipeline.profiling.Profile`), what the compile recorded
(:class:`harness.pipeline.provenance.Recorder`: per compiled graph its nodes with their modules,
and per kernel call site the nodes it fused and the bytes it moves) and the counter's eager
events (``counts.events``: op, module, work per dispatch-level call). Out: :class:`KernelJoin`.

Kernel events. In the trace of a compiled iteration:

- **generated** kernels: a CPU C++ kernel is a ``record_function`` range named
  ``graph_<N>_cpp_fused_<ops>_<i>`` (``torch._inductor.config.cpp.enable_kernel_profile``);
  on CUDA a Triton kernel is a device kernel named ``triton_{poi,red,per,tem}_fused_...``;
- **extern** kernels: ops the compiled code calls (``aten::convolution``, ``aten::addmm``,
  ``mkldnn::_linear_pointwise``), directly inside the ``## Call CompiledFxGraph`` range;
  matched to their call sites in order within that range;
- **replay**: on CUDA under ``reduce-overhead`` (CUDA graphs), device kernels no CPU op launched
  (no correlation): attributed through the capture when their name is a recorded kernel's,
  else kind ``unattributed`` with their time (never folded into another row).

Time is per iteration: a CPU kernel's inclusive CPU time, a device kernel's device time.
Work: each dynamo node is matched, in order, to the counter's eager call of the same op in the
same module; a kernel's ``macs``/``flops``/``other_flops`` and ``eager_bytes`` are the sum of its
nodes' counted work, a node computed by several kernels split equally among them, except that
its multiply-accumulate work goes to the extern kernel(s) among them (the GEMM or convolution;
the generated ones around it copy layouts or apply epilogues). ``bytes`` is what the kernel
itself moves (:mod:`harness.pipeline.provenance`), except for a **gather** (embedding, index_select,
gather, index): a kernel that gathers rows from a table is handed the whole table as a buffer but
reads only the rows it looks up, so its largest input is capped at its gathers' counted bytes (the
rows read, the indices and the output: still an upper bound, of the right size).

Modules: a kernel's time goes to the modules of its nodes, split by their counted work
(flops + other_flops), else by their eager bytes, else equally per node.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from .profiling import US, Profile, _is_cpu

CALL_RANGE = "## Call CompiledFxGraph"
REGION = "Torch-Compiled Region"
GENERATED = re.compile(r"^(graph_\d+_)?(cpp|triton|cpp_template|cuda)_\w*fused\w*$|^triton_(poi|red|per|tem)_\w+$")
WORK = ["macs", "flops", "other_flops"]
GATHERS = frozenset({"aten::embedding", "aten::index_select", "aten::gather", "aten::index", "aten::take"})
COLUMNS = ["kernel", "kind", "call_site", "phase", "fused_ops", "modules", "calls", "time_s", "time_share", "macs",
           "flops", "other_flops", "total_flops", "bytes", "eager_bytes", "achieved_flop_per_s",
           "achieved_total_flop_per_s", "achieved_bytes_per_s", "arithmetic_intensity", "peak_flop_per_s",
           "peak_bytes_per_s", "utilization", "bandwidth_utilization", "memory_level", "level_bandwidth_utilization",
           "bound"]


@dataclass
class KernelJoin:
    table: pd.DataFrame  # kernels.csv
    module_times: dict[tuple[str, str], float]  # (phase, module path incl. ancestors) -> s per iteration
    coverage: dict
    fusion: dict


@dataclass
class _Site:
    """A recorded kernel call site with its counted work (per call)."""

    graph: int
    kernel: Any  # provenance.Kernel
    work: dict = field(default_factory=lambda: {"macs": 0.0, "flops": 0.0, "other_flops": 0.0, "eager_bytes": 0.0})
    modules: dict = field(default_factory=dict)  # module -> weight (counted work)
    ops: list = field(default_factory=list)
    gathered_bytes: float = 0.0  # its gather nodes' counted bytes (per call)

    @property
    def bytes(self) -> float:
        """What the kernel moves per call: its buffers, a gather's table capped at the rows it reads."""
        k = self.kernel
        if not self.gathered_bytes or k.largest_input_bytes <= self.gathered_bytes:
            return float(k.bytes)
        return float(k.bytes - k.largest_input_bytes + self.gathered_bytes)


def _ancestor_names(e) -> list[str]:
    out, p = [], e.cpu_parent
    while p is not None:
        out.append(p.name)
        p = p.cpu_parent
    return out


def _context(e, label: str, phases: set[str]) -> tuple[str, int | None]:
    """(phase, id of the enclosing CompiledFxGraph call range) of a CPU event."""
    phase, rng, p = "", None, e.cpu_parent
    while p is not None:
        if p.name in phases and not phase:
            phase = p.name
        if rng is None and p.name.startswith(CALL_RANGE):
            rng = p.id
        p = p.cpu_parent
    return phase, rng


def _cpu_kernels(profile: Profile, extern_names: set[str]) -> list[dict]:
    """CPU-side kernel events: generated ranges, and extern ops directly inside a compiled call range."""
    cuda = profile.device_type == "cuda"
    out = []
    for e in profile.events:
        if not _is_cpu(e):
            continue
        parent = e.cpu_parent
        generated = bool(GENERATED.match(e.name))
        extern = e.name in extern_names and parent is not None and parent.name.startswith(CALL_RANGE)
        if not (generated or extern):
            continue
        phase, rng = _context(e, profile.label, set(profile.phases))
        t = (e.device_time_total if cuda else e.cpu_time_total) * US
        out.append({"name": e.name, "generated": generated, "phase": phase, "range": rng, "time_s": t,
                    "start": e.time_range.start})
    return sorted(out, key=lambda r: r["start"])


def _device_kernels(profile: Profile) -> list[dict]:
    """CUDA: device kernels launched by a CPU op inside a compiled range, and those no CPU op launched
    (CUDA-graph replay): ``{"name", "phase", "range", "time_s", "replay"}``."""
    attached: dict[str, float] = {}
    out = []
    for e in profile.events:
        if not _is_cpu(e):
            continue
        for k in getattr(e, "kernels", []):
            attached[k.name] = attached.get(k.name, 0.0) + k.duration * US
            if GENERATED.match(k.name):
                phase, rng = _context(e, profile.label, set(profile.phases))
                out.append({"name": k.name, "generated": True, "phase": phase, "range": rng,
                            "time_s": k.duration * US, "start": e.time_range.start, "replay": False})
    device: dict[str, float] = {}
    for e in profile.events:
        if not _is_cpu(e) and not getattr(e, "is_user_annotation", False):
            device[e.name] = device.get(e.name, 0.0) + (e.time_range.end - e.time_range.start) * US
    for name, t in device.items():
        rest = t - attached.get(name, 0.0)
        if rest > 1e-12:
            out.append({"name": name, "generated": bool(GENERATED.match(name)), "phase": profile.phases[0]
                        if len(profile.phases) == 1 else "", "range": None, "time_s": rest, "start": math.inf,
                        "replay": True})
    return out


def _match_nodes(recorder: Any, cevents: pd.DataFrame) -> dict[tuple[int, str], int]:
    """(graph index, node name) -> row of the counter's events: the same op in the same module, in order
    (else the same op anywhere after the previous match)."""
    ops, mods = list(cevents["op"]), list(cevents["module"].fillna(""))
    out: dict[tuple[int, str], int] = {}
    ptr = 0
    for gi, g in enumerate(recorder.graphs):
        for name, (op, module) in g.nodes.items():
            if not op:
                continue
            names = (op, op.removesuffix("_") if op.endswith("_") else op + "_")  # in place or not
            j = next((i for i in range(ptr, len(ops)) if ops[i] in names and mods[i] == module), None)
            if j is None:
                j = next((i for i in range(ptr, len(ops)) if ops[i] in names), None)
            if j is not None:
                out[(gi, name)] = j
                ptr = j + 1
    return out


def _sites(recorder: Any, cevents: pd.DataFrame) -> list[_Site]:
    """Every recorded call site with its share of its nodes' counted work and its modules' weights."""
    matched = _match_nodes(recorder, cevents)
    sites = [_Site(gi, k) for gi, g in enumerate(recorder.graphs) for k in g.kernels]
    holders: dict[tuple[int, str], list[_Site]] = {}
    for s in sites:
        nodes = recorder.graphs[s.graph].nodes
        fused = set(s.kernel.nodes)
        in_order = [n for n in nodes if n in fused] + [n for n in s.kernel.nodes if n not in nodes]
        s.ops = list(dict.fromkeys(nodes[n][0] for n in in_order if n in nodes and nodes[n][0]))
        s.modules = {nodes[n][1]: 0.0 for n in in_order if n in nodes}
        for n in in_order:
            holders.setdefault((s.graph, n), []).append(s)
    for (gi, n), hs in holders.items():
        op, module = recorder.graphs[gi].nodes.get(n, ("", ""))
        row = cevents.iloc[matched[(gi, n)]] if (gi, n) in matched else None
        externs = [h for h in hs if h.kernel.kind == "extern"]
        for h in hs:
            share = 1.0 / len(hs)
            if row is None:
                continue
            mac_share = (1.0 / len(externs) if h in externs else 0.0) if externs else share
            h.work["macs"] += float(row["macs"]) * mac_share
            h.work["flops"] += float(row["flops"]) * mac_share
            h.work["other_flops"] += float(row["other_flops"]) * share
            h.work["eager_bytes"] += float(row["bytes"]) * share
            if op in GATHERS:
                h.gathered_bytes += float(row["bytes"]) * share
            w = float(row["flops"]) * mac_share + float(row["other_flops"]) * share
            h.modules[module] = h.modules.get(module, 0.0) + w
    return sites


def _assign(events: list[dict], sites: list[_Site], recorder: Any) -> list[tuple[dict, _Site | None]]:
    """Each kernel event with its call site. Within one compiled call range, the i-th event of a name is
    the i-th call site of that name (Inductor calls one generated kernel from several sites when their
    code is the same; extern ops repeat), in the graph whose generated kernels that range ran."""
    by_name: dict[str, list[_Site]] = {}
    for s in sites:
        by_name.setdefault(s.kernel.name, []).append(s)
    range_graph: dict[Any, int] = {}
    for ev in events:
        if ev["generated"] and ev["name"] in by_name and ev["range"] is not None:
            range_graph.setdefault(ev["range"], by_name[ev["name"]][0].graph)
    used: dict[tuple[Any, str], int] = {}
    out = []
    for ev in events:
        gi = range_graph.get(ev["range"])
        cands = [s for s in by_name.get(ev["name"], []) if gi is None or s.graph == gi]
        if ev.get("replay"):  # no call range: every recorded site of the name shares the replayed time
            out.append((ev, cands[0] if cands else None))
            continue
        i = used.get((ev["range"], ev["name"]), 0)
        used[(ev["range"], ev["name"])] = i + 1
        out.append((ev, cands[i % len(cands)] if cands else None))
    return out


def _rows(assigned: list[tuple[dict, _Site | None]], steps: int) -> pd.DataFrame:
    """One row per (call site or unrecorded kernel name, phase): calls, time and work per iteration."""
    groups: dict[tuple, dict] = {}
    for ev, s in assigned:
        site = f"{s.graph}:{s.kernel.handle}" if s is not None else ""
        kind = ("replay" if ev.get("replay") else s.kernel.kind) if s is not None else (
            "unattributed" if ev.get("replay") else "generated" if ev["generated"] else "extern")
        key = (ev["name"], site, ev["phase"], kind)
        g = groups.setdefault(key, {"site": s, "calls": 0, "time_s": 0.0})
        g["calls"] += 1
        g["time_s"] += ev["time_s"]
    rows = []
    for (name, site, phase, kind), g in groups.items():
        s, calls = g["site"], g["calls"] / steps
        if kind == "replay" and s is not None:  # replayed kernels: calls unknown; one per recorded call site
            calls = 1.0
        mods = {m: w for m, w in (s.modules.items() if s is not None else [])}
        rows.append({"kernel": name, "kind": kind, "call_site": site, "phase": phase,
                     "fused_ops": ";".join(s.ops) if s is not None else "",
                     "modules": ";".join(m or "(root)" for m in mods), "_modules": mods, "calls": calls,
                     "time_s": g["time_s"] / steps, "bytes": (s.bytes if s is not None else 0.0) * calls,
                     **{c: (s.work[c] if s is not None else 0.0) * calls for c in WORK + ["eager_bytes"]}})
    return pd.DataFrame(rows)


def ancestors(path: str) -> list[str]:
    """'' for the root, then each dotted prefix: 'a.b.c' -> ['', 'a', 'a.b', 'a.b.c']."""
    if not path:
        return [""]
    parts = path.split(".")
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


def _module_times(rows: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Kernel time per (phase, module), ancestors included: each kernel's time split over its modules by
    their counted work, else equally."""
    out: dict[tuple[str, str], float] = {}
    for _, r in rows.iterrows():
        mods: dict = r["_modules"]
        if not mods:
            continue
        total = sum(mods.values())
        for m, w in mods.items():
            share = w / total if total > 0 else 1.0 / len(mods)
            for a in ancestors(m):
                out[(r["phase"], a)] = out.get((r["phase"], a), 0.0) + r["time_s"] * share
    return out


def _coverage(rows: pd.DataFrame, region_s: float) -> dict:
    total = float(rows["time_s"].sum()) if len(rows) else 0.0
    has_mod = rows["_modules"].map(bool) if len(rows) else pd.Series(dtype=bool)
    has_work = (rows[WORK + ["eager_bytes"]].sum(axis=1) > 0) if len(rows) else pd.Series(dtype=bool)
    rest = rows[~has_mod].sort_values("time_s", ascending=False) if len(rows) else rows

    def share(mask) -> float:
        return float(rows.loc[mask, "time_s"].sum()) / total if total > 0 else 0.0

    return {"kernel_time_per_iteration_s": total, "compiled_region_s": region_s,
            "share_of_kernel_time_in_modules": share(has_mod), "share_of_kernel_time_counted": share(has_work),
            "unattributed_kernels": [{"kernel": r.kernel, "kind": r.kind, "time_s": float(r.time_s),
                                      "share": float(r.time_s) / total if total > 0 else 0.0}
                                     for r in rest.itertuples()]}


def _fusion(rows: pd.DataFrame, cevents: pd.DataFrame, counts: Any) -> dict:
    """Bytes moved and kernels launched per iteration, eager (the counted dispatch-level ops) vs compiled."""
    launched = rows[rows.kind.isin(["generated", "extern", "replay"])] if len(rows) else rows
    eager_bytes = float(getattr(counts, "bytes", cevents["bytes"].sum()))
    compiled_bytes = float(launched["bytes"].sum()) if len(rows) else 0.0
    return {"eager_bytes": eager_bytes, "compiled_bytes": compiled_bytes, "bytes_saved": eager_bytes - compiled_bytes,
            "eager_kernels": float(len(cevents)), "compiled_kernels": float(launched["calls"].sum()) if len(rows) else 0.0,
            "generated_kernels": float(launched.loc[launched.kind == "generated", "calls"].sum()) if len(rows) else 0.0,
            "extern_kernels": float(launched.loc[launched.kind == "extern", "calls"].sum()) if len(rows) else 0.0}


def _region_time(profile: Profile) -> float:
    t = sum(e.cpu_time_total for e in profile.events if _is_cpu(e) and e.name.startswith(REGION)
            and not any(a.startswith(REGION) for a in _ancestor_names(e)))
    return t * US / profile.steps


def kernel_join(profile: Profile, counts: Any, cevents: pd.DataFrame, recorder: Any,
                derive: Callable[[pd.DataFrame, float], pd.DataFrame]) -> KernelJoin:
    """The compiled run's kernels joined with provenance and counted work (see the module docstring).
    ``derive(table, total time)``: rates, utilization, memory level (``join._derive`` with the run's ceilings)."""
    sites = _sites(recorder, cevents)
    externs = {s.kernel.name for s in sites if s.kernel.kind == "extern"}
    events = _cpu_kernels(profile, externs)
    if profile.device_type == "cuda":
        events = [e for e in events if not e["generated"]] + _device_kernels(profile)
    rows = _rows(_assign(events, sites, recorder), profile.steps)
    if not len(rows):
        return KernelJoin(pd.DataFrame(columns=COLUMNS), {}, _coverage(rows, 0.0), _fusion(rows, cevents, counts))
    times, cov = _module_times(rows), _coverage(rows, _region_time(profile))
    fusion = _fusion(rows, cevents, counts)
    rows["name"] = rows["kernel"]
    table = derive(rows, cov["kernel_time_per_iteration_s"])
    table = table.sort_values("time_s", ascending=False, kind="stable").reset_index(drop=True)
    return KernelJoin(table[COLUMNS], times, cov, fusion)
