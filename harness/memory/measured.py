"""Measured memory by category over one profiled iteration (memory.csv, summary.json ``memory``).

One more iteration of the workload runs under ``torch.profiler`` with ``profile_memory=True``,
apart from the timed profiled pass (the hooks below would add time to its per-op figures).
Every allocation and free the profiler records on the run's device (address, signed size,
time) is a :class:`~harness.memory.timeline.Alloc`; its storage's category comes from the
addresses the harness knows, each taken at a moment marked in the same trace
(``record_function("harness::memory_mark#k")``, so times compare on the profiler's own clock):

* before the iteration (the **baseline**, taken inside it, before its first op): parameters,
  buffers, ``.grad`` tensors, ``optimizer.state`` tensors and the inputs (the call's tensors, a
  train run's targets, a generation's prompt), each storage once, with its size;
* at the end of every phase and of the iteration: the same model and optimizer tensors again
  (gradients made by backward, state made by a first step);
* during it: every tensor autograd saves for backward (a ``saved_tensors_hooks`` pack hook),
  the model's outputs (a forward hook on the root module) and a train step's loss, and after
  the prefill and each decode step of a generation its KV cache (``driver.cache(state)``).

Why not ``torch.profiler._memory_profiler.MemoryProfile`` (``export_memory_timeline``): its
categories come from a data-flow analysis of the op graph that needs ``with_stack`` and is
reported wrong in the field (a GB/GiB mix-up, pytorch#120171; unknown categories), and it
cannot name a KV cache or an output; the addresses above are what the harness knows for sure.

Each allocation made in the iteration is attributed to the module whose forward was running
(a ``record_function("harness.module::<path>")`` opened by forward pre/post hooks); in backward,
to the module whose forward op created the autograd node (matched by sequence number);
parameters, buffers, gradients and optimizer state to the module that owns the parameter.

CUDA: the same events (the caching allocator's blocks) plus the allocator's own figures:
``max_memory_allocated``, ``max_memory_reserved`` and their difference (fragmentation and cache).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import pandas as pd

from . import timeline
from .categories import (ACTIVATIONS, BUFFERS, CATEGORIES, GRADIENTS, INPUTS, KV_CACHE, OPTIMIZER_STATE, OUTPUTS,
                         PARAMETERS)
from .timeline import Alloc, Known, Phases

__all__ = ["Measured", "measure", "measure_or_error", "from_events", "compare", "cuda_figures", "render", "scalars", "ROOT", "TOP_MODULES"]

LABEL = "harness::memory_iteration"
MARK = "harness::memory_mark#"
MODULE = "harness.module::"
ROOT = "(model)"  # the root module's path, as modules.csv names it
TOP_MODULES = 10
_BACKWARD = "autograd::engine::evaluate_function"


@dataclass
class Measured:
    """One iteration's measured memory: ``table`` is memory.csv (``t_s, phase, category, bytes``)."""

    table: pd.DataFrame
    peak: timeline.Peak
    by_module: dict[str, int]
    phases: list[tuple[str, float, float]]  # every phase occurrence: (name, start_s, end_s) from the iteration's start
    device: str = "cpu"
    cuda: dict | None = None
    lifetimes: list = field(default_factory=list, repr=False)
    forecast: dict | None = None  # the run's own meta-device forecast beside it (harness.memory.beside)

    def boundaries(self) -> list[tuple[float, str]]:
        """``(t_s, phase)`` where a phase of another name than the one before begins (decode steps: once)."""
        out: list[tuple[float, str]] = []
        for name, start, _ in self.phases:
            if not out or out[-1][1] != name:
                out.append((start, name))
        return out

    def live_at(self, t_s: float) -> dict[str, int]:
        """Live bytes per category after the events at or before ``t_s``."""
        w = timeline.wide(self.table)
        row = w[w.index <= t_s].iloc[-1]
        return {c: int(row[c]) for c in CATEGORIES}

    def summary(self) -> dict[str, Any]:
        """summary.json ``memory``: the peak, its phase and moment, its split by category and module."""
        out = {"peak_bytes": self.peak.bytes, "at_phase": self.peak.phase, "at_s": self.peak.t_s,
               "baseline_bytes": int(self.table[self.table.t_s == 0]["bytes"].sum()),
               "by_category_at_peak": dict(self.peak.by_category), "by_module_at_peak": dict(self.by_module),
               "source": "torch.profiler memory events, storages matched by address"}
        if self.cuda is not None:
            out["cuda"] = dict(self.cuda)
        if self.forecast is not None:
            out["forecast"] = dict(self.forecast)
        return out


# ----------------------------------------------------------------- what the harness knows

def _storage(t: Any) -> tuple[int, int] | None:
    """(address, bytes) of a tensor's storage; None for meta, sparse or storage-less tensors."""
    try:
        if t.device.type == "meta" or t.is_sparse:
            return None
        s = t.untyped_storage()
        return s.data_ptr(), s.nbytes()
    except (RuntimeError, NotImplementedError, AttributeError):
        return None


def _owners(model: Any) -> dict[int, str]:
    """id(parameter or buffer) -> the path of the module that holds it (:data:`ROOT` for the root)."""
    out: dict[int, str] = {}
    for path, mod in model.named_modules():
        for t in [*mod.parameters(recurse=False), *mod.buffers(recurse=False)]:
            out.setdefault(id(t), path or ROOT)
    return out


def _model_tensors(workload: Any, prep: Any, owners: dict[int, str]) -> Iterator[tuple[Any, str, str | None]]:
    """(tensor, category, owner module) for parameters, buffers, gradients and optimizer state."""
    model = prep.model
    for p in model.parameters():
        yield p, PARAMETERS, owners.get(id(p))
        if p.grad is not None:
            yield p.grad, GRADIENTS, owners.get(id(p))
    for b in model.buffers():
        yield b, BUFFERS, owners.get(id(b))
    opt = getattr(workload, "optimizer", None)
    if opt is not None:
        from ..core.tensors import walk_tensors

        for p, state in opt.state.items():
            for t in walk_tensors(state, modules=False):
                yield t, OPTIMIZER_STATE, owners.get(id(p))


def _inputs(workload: Any, prep: Any) -> list:
    from ..core.tensors import walk_tensors
    from .inputs import iteration_inputs

    return list(walk_tensors(iteration_inputs(workload, prep), modules=False))


class Tracker:
    """Registers (address, category) at marked moments during the profiled iteration."""

    def __init__(self, workload: Any, prep: Any):
        self.workload, self.prep = workload, prep
        self.owners = _owners(prep.model)
        self.marks = 0
        self.known: list[tuple[int, int, str, str | None]] = []  # (mark, ptr, category, module)
        self.baseline: list[Known] = []

    def mark(self) -> int:
        from torch.profiler import record_function

        k = self.marks
        self.marks += 1
        with record_function(f"{MARK}{k}"):
            pass
        return k

    def note(self, tensors: Any, category: str, module: str | None = None) -> None:
        from ..core.tensors import walk_tensors

        k = self.mark()
        for t in walk_tensors(tensors, modules=False):
            st = _storage(t)
            if st is not None and st[0]:
                self.known.append((k, st[0], category, module))

    def snapshot(self) -> None:
        """The model's and the optimizer's tensors as they are now."""
        k = self.mark()
        for t, cat, owner in _model_tensors(self.workload, self.prep, self.owners):
            st = _storage(t)
            if st is not None and st[0]:
                self.known.append((k, st[0], cat, owner))

    def take_baseline(self) -> None:
        items = [*_model_tensors(self.workload, self.prep, self.owners),
                 *((t, INPUTS, None) for t in _inputs(self.workload, self.prep))]
        for t, cat, owner in items:
            st = _storage(t)
            if st is not None and st[0]:
                self.baseline.append(Known(0, st[0], cat, st[1], owner))

    def pack(self, t: Any) -> Any:
        self.note(t, ACTIVATIONS)
        return t

    @contextlib.contextmanager
    def scope(self, phase: str) -> Iterator[None]:
        from torch.profiler import record_function

        with record_function(phase):
            yield
        self.snapshot()


@contextlib.contextmanager
def _module_scopes(model: Any, tracker: Tracker, enabled: bool = True) -> Iterator[None]:
    """``record_function("harness.module::<path>")`` around every module's forward; the root's
    outputs noted as :data:`OUTPUTS`. Not on a compiled model (``enabled`` False): a hook added
    after ``torch.compile`` fails its guards and recompiles it."""
    from torch.profiler import record_function

    if not enabled:
        yield
        return
    open_: list = []
    handles = []

    def pre(name: str):
        def hook(mod, args):
            rf = record_function(MODULE + name)
            rf.__enter__()
            open_.append(rf)
        return hook

    def post(mod, args, out):
        if open_:
            open_.pop().__exit__(None, None, None)

    for path, mod in model.named_modules():
        handles.append(mod.register_forward_pre_hook(pre(path or ROOT)))
        handles.append(mod.register_forward_hook(post, always_call=True))
    handles.append(model.register_forward_hook(lambda mod, args, out: tracker.note(out, OUTPUTS)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _loss_noted(workload: Any, tracker: Tracker) -> Iterator[None]:
    """A train step's loss noted as :data:`OUTPUTS` (the workload's ``loss_fn`` wrapped for this iteration)."""
    fn = getattr(workload, "loss_fn", None)
    if not callable(fn):
        yield
        return

    def noted(output: Any, targets: Any = None) -> Any:
        loss = fn(output, targets)
        tracker.note(loss, OUTPUTS)
        return loss

    workload.loss_fn = noted
    try:
        yield
    finally:
        workload.loss_fn = fn


def _iterate(workload: Any, prep: Any, tracker: Tracker) -> None:
    """One iteration with the tracker's scope; a generation notes its KV cache after each step."""
    import torch

    driver = getattr(workload, "driver", None)
    with torch.autograd.graph.saved_tensors_hooks(tracker.pack, lambda t: t), _loss_noted(workload, tracker):
        if callable(getattr(workload, "generate", None)) and driver is not None:
            workload.generate(prep, tracker.scope, after=lambda state: tracker.note(driver.cache(state), KV_CACHE))
        else:
            workload.iteration(prep, tracker.scope)


def measure(workload: Any, prep: Any) -> Measured:
    """Run one iteration of ``workload`` (set up) on ``prep`` under the profiler and measure its memory."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from ..pipeline.profiling import _quiet_kineto
    from ..pipeline.workloads import no_scope

    device = prep.device
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    tracker = Tracker(workload, prep)
    stats: dict[str, int] = {}
    with workload.grad_mode():
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        with _quiet_kineto(), profile(activities=activities, profile_memory=True, record_shapes=False) as prof:
            # a first iteration under the profiler: the frees of what it leaves behind (a train step's
            # gradients, freed by the next zero_grad) are reported only for blocks allocated while profiling
            workload.iteration(prep, no_scope)
            if cuda:
                torch.cuda.synchronize(device)
                stats["allocated_at_start_bytes"] = int(torch.cuda.memory_allocated(device))
            with _module_scopes(prep.model, tracker, getattr(prep, "compile", None) is None), record_function(LABEL):
                tracker.take_baseline()
                tracker.snapshot()
                _iterate(workload, prep, tracker)
                if cuda:
                    torch.cuda.synchronize(device)
        if cuda:
            stats["max_allocated_bytes"] = int(torch.cuda.max_memory_allocated(device))
            stats["max_reserved_bytes"] = int(torch.cuda.max_memory_reserved(device))
    tree = prof.profiler.kineto_results.experimental_event_tree()  # type: ignore[union-attr]
    return from_events(tree, tracker, tuple(workload.phases), device, cuda_figures(stats) if cuda else None)


@dataclass
class _Trace:
    """What the profiler's event tree says about the iteration."""

    t0_ns: int = 0
    t1_ns: int = 0
    allocs: list = field(default_factory=list)  # (t_ns, ptr, nbytes, module or None, backward seq or None)
    marks: dict = field(default_factory=dict)   # mark index -> t_ns
    phases: list = field(default_factory=list)  # (name, start_ns, end_ns)
    seq_module: dict = field(default_factory=dict)  # forward op's sequence number -> module path


def _on_device(dev: Any, device: Any) -> bool:
    if dev is None or dev.type != device.type:
        return False
    return device.type != "cuda" or device.index is None or dev.index in (None, device.index)


def _walk(roots: list, phases: set[str], device: Any) -> _Trace:
    """Depth-first over the event tree, each node seen with the module scope and backward node above it."""
    from torch._C._profiler import _EventType

    tr = _Trace()
    stack = [(n, None, None) for n in reversed(roots)]
    while stack:
        node, module, seq = stack.pop()
        kind, f = node.typed
        if kind == _EventType.Allocation:
            if _on_device(f.device, device):
                tr.allocs.append((node.start_time_ns, int(f.ptr), int(f.alloc_size), module, seq))
            continue
        name = node.name
        if kind == _EventType.TorchOp:
            if name.startswith(MODULE):
                module = name[len(MODULE):]
            elif name.startswith(_BACKWARD):
                seq = f.sequence_number
            elif module is not None and f.sequence_number >= 0:
                tr.seq_module.setdefault(f.sequence_number, module)
            if name == LABEL:
                tr.t0_ns, tr.t1_ns = node.start_time_ns, node.end_time_ns
            elif name.startswith(MARK):
                tr.marks[int(name[len(MARK):])] = node.start_time_ns
            elif name in phases:
                tr.phases.append((name, node.start_time_ns, node.end_time_ns))
        stack.extend((c, module, seq) for c in reversed(node.children))
    return tr


def measure_or_error(workload: Any, prep: Any) -> Measured | str:
    """:func:`measure`, or why it failed (one line): the run goes on without memory by category,
    and says so in its warnings."""
    try:
        return measure(workload, prep)
    except Exception as exc:  # noqa: BLE001 - any failure of this extra pass must not lose the run
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


def from_events(tree: list, tracker: Tracker, phases: tuple[str, ...], device: Any, cuda: dict | None = None) -> Measured:
    """:class:`Measured` from the profiler's event tree (``experimental_event_tree()``) and what the tracker noted."""
    tr = _walk(tree, set(phases), device)
    t0, t1 = tr.t0_ns, tr.t1_ns
    allocs = [Alloc(t, p, n, m if m is not None else tr.seq_module.get(s) if s is not None else None)
              for t, p, n, m, s in tr.allocs if t <= t1]
    baseline = [b._replace(t_ns=t0) for b in tracker.baseline]
    known = [Known(tr.marks[k], p, c, 0, m) for k, p, c, m in tracker.known if k in tr.marks]
    ph = Phases([r for r in tr.phases if t0 <= r[1] <= t1])
    return build(allocs, baseline, known, t0, ph, device=device.type, cuda=cuda)


def build(allocs: list[Alloc], baseline: list[Known], known: list[Known], t0_ns: int, phases: Phases, *,
          device: str = "cpu", cuda: dict | None = None, top: int = TOP_MODULES) -> Measured:
    """:class:`Measured` from allocator events and known storages (any device: the events decide)."""
    lts = timeline.lifetimes(allocs, baseline, known, t0_ns)
    table = timeline.series(lts, t0_ns, phases)
    pk = timeline.peak(table)
    at_ns = t0_ns + round(pk.t_s * 1e9)
    return Measured(table=table, peak=pk, by_module=timeline.by_module_at(lts, at_ns, top),
                    phases=[(n, (a - t0_ns) / 1e9, (b - t0_ns) / 1e9) for n, a, b in phases.ranges], device=device, cuda=cuda, lifetimes=lts)


def cuda_figures(stats: dict[str, int]) -> dict[str, int]:
    """The CUDA allocator's figures over the iteration: ``max_allocated_bytes``, ``max_reserved_bytes``
    and ``fragmentation_bytes`` = reserved − allocated at their maxima (cached and fragmented blocks)."""
    out = dict(stats)
    out["fragmentation_bytes"] = out["max_reserved_bytes"] - out["max_allocated_bytes"]
    return out


# ----------------------------------------------------------------- for the lead: forecast beside measured

def compare(forecast: dict[str, int], measured: dict[str, int]) -> list[dict[str, Any]]:
    """One row per category (and ``total``): forecast bytes, measured bytes, error = forecast/measured − 1
    (None where nothing was measured). ``measured`` is summary.json ``memory.by_category_at_peak``."""
    rows = []
    for c in [*CATEGORIES, "total"]:
        f = sum(forecast.get(k, 0) for k in CATEGORIES) if c == "total" else forecast.get(c, 0)
        m = sum(measured.get(k, 0) for k in CATEGORIES) if c == "total" else measured.get(c, 0)
        rows.append({"category": c, "forecast_bytes": int(f), "measured_bytes": int(m),
                     "error": (f / m - 1) if m else None})
    return rows


def render(memory: dict | None, top: int = 3) -> str | None:
    """The terminal's row: the peak, its phase and its largest categories (None without a measurement)."""
    from ..core.units import si

    if not memory or memory.get("peak_bytes") is None:
        return None
    cats = sorted(((b, c) for c, b in (memory.get("by_category_at_peak") or {}).items() if b), reverse=True)[:top]
    parts = ", ".join(f"{c.replace('_', ' ')} {si(b, 'B')}" for b, c in cats)
    return f"{si(memory['peak_bytes'], 'B')} at {memory.get('at_phase')}" + (f" ({parts})" if parts else "")


def forecast_text(memory: dict | None) -> str:
    """``forecast 25.2 MB (-4.6 %)``: the run's own meta-device forecast and its error ('' without one)."""
    from ..core.units import si

    f = (memory or {}).get("forecast") or {}
    if f.get("error") is None:
        return ""
    pct = round(f["error"] * 100, 1) + 0.0  # no "-0.0 %"
    return f"forecast {si(f['peak_bytes'], 'B')} ({pct:+.1f} %)"


def scalars(summary: dict) -> list[tuple[str, float]]:
    """TensorBoard scalars of the measured memory: ``memory/measured_peak_MB`` and ``memory/at_peak/<category>_MB``."""
    m = summary.get("memory") or {}
    if m.get("peak_bytes") is None:
        return []
    out = [("memory/measured_peak_MB", m["peak_bytes"] / 1e6)]
    out += [(f"memory/at_peak/{c}_MB", b / 1e6) for c, b in (m.get("by_category_at_peak") or {}).items()]
    return out
