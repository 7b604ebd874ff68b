"""``--compile``: the run's model under ``torch.compile``, its compile cost measured apart.

The model is compiled **in place** (``nn.Module.compile``): the module object, its parameter
names and its module paths stay the eager model's, so the profiler's module labels, the
counter's module tree and history's config all speak of the same model.

What a compiled run measures before timing (:func:`warm`), from ``torch._dynamo``'s own
counters (``torch._dynamo.utils.counters``, differences around each call):

- ``compile_s``: the wall time from before the workload's setup (a training run's setup
  already steps once) to the end of the first iteration: tracing, graph lowering, code
  generation, the C++ compiler on CPU, and one run of the compiled code;
- ``settle_iterations``: further iterations until one compiles nothing (a generation's
  growing context recompiles its decode step until dynamo marks the length dynamic);
- ``frames_compiled``, ``graphs``, ``graph_breaks`` (each reason and how often) and
  ``recompiles`` (frames compiled after the first iteration: a new shape or a failed guard);
- ``cache``: ``warm`` when Inductor's FX graph cache served every graph, ``cold`` when it
  served none, ``partly warm`` otherwise (a warm cache compiles several times faster);
- after timing, ``recompiles_while_timed``: a run that kept recompiling is not a steady
  state, and says so (``steady`` false, a warning).

Counting runs the same iteration **eagerly** (:func:`eager`): the compiled code does the same
math, and the counter's dispatch mode sees every aten op only in eager mode.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from ..core.units import seconds
from ..errors import HarnessError
from . import provenance
from .spec import DEFAULT_COMPILE_BACKEND

MAX_SETTLE = 5  # iterations after the first that may still compile before timing starts anyway


def apply(model: Any, mode: str, backend: str | None, dynamic: bool | None, device_type: str = "cpu") -> dict:
    """Compile ``model`` in place; the ``compile`` record's settings (mode, backend, dynamic).
    An unknown backend, or Inductor on a CPU without a C++ compiler, is exit 2 before anything runs."""
    backend = backend or DEFAULT_COMPILE_BACKEND
    check_backend(backend, device_type)
    kwargs: dict[str, Any] = {"backend": backend, "dynamic": dynamic}
    if backend == "inductor":
        kwargs["mode"] = None if mode == "default" else mode
        _profile_generated_kernels()
        kwargs = provenance.record(model, kwargs)  # which nodes, ops and modules each kernel fused
    model.compile(**kwargs)
    return {"mode": mode, "backend": backend, "dynamic": dynamic}


def check_backend(backend: str, device_type: str) -> None:
    """Exit 2 for a backend dynamo does not know (with the names it knows) and for Inductor on a CPU
    without a C++ compiler (naming the compilers it looked for)."""
    import torch._dynamo

    known = torch._dynamo.list_backends(exclude_tags=())
    if backend not in known:
        raise HarnessError(f"--compile-backend {backend!r}: torch.compile knows {', '.join(known)}")
    if backend == "inductor" and device_type == "cpu":
        _check_cpp_compiler()


def _check_cpp_compiler() -> None:
    """Inductor generates C++ on CPU: the compiler it would use must run (``$CXX``, else g++)."""
    from torch._inductor import config
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001 - InvalidCxxCompiler, or whatever the search raised
        tried = [c for c in (config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (config.cpp.cxx,)) if c]
        raise HarnessError(f"--compile on CPU needs a C++ compiler for Inductor: {', '.join(tried) or 'none'} "
                           f"did not run ({type(exc).__name__}); install one (Debian: apt-get install g++) or set "
                           "CXX, or pick another backend (--compile-backend aot_eager)") from exc


def compile_failed(scenario: str, backend: str, exc: BaseException) -> HarnessError | None:
    """A torch.compile failure (dynamo's or Inductor's exceptions) as one line, exit 2, with the full error
    written to a file it names; None for an exception that is not a compile failure."""
    import tempfile
    import traceback

    from torch._dynamo.exc import TorchDynamoException

    if not isinstance(exc, TorchDynamoException):
        return None
    from ..core.text import first_line

    fd, path = tempfile.mkstemp(prefix=f"harness-compile-error-{scenario}-", suffix=".txt")
    with open(fd, "w") as f:
        f.write("".join(traceback.format_exception(exc)))
    cause = getattr(exc, "inner_exception", None) or exc  # BackendCompilerFailed wraps the backend's own error
    return HarnessError(f"scenario '{scenario}': torch.compile ({backend}) failed: {type(cause).__name__}: "
                        f"{first_line(cause)[:300]}; the full error: {path} (more with TORCH_LOGS=+dynamo,+inductor)")


def _profile_generated_kernels() -> None:
    """Generated CPU kernels appear in the profiler's trace by name (``cpp_fused_...``)."""
    import torch._inductor.config as inductor_config

    inductor_config.cpp.enable_kernel_profile = True


@contextlib.contextmanager
def eager(model: Any, workload: Any = None) -> Iterator[None]:
    """Run ``model`` eagerly inside the block (a no-op for a model that is not compiled), and whatever
    ``workload`` compiled itself (a training step's compiled optimizer step: ``Workload.eagerly``)."""
    saved = getattr(model, "_compiled_call_impl", None)
    with workload.eagerly() if workload is not None else contextlib.nullcontext():
        if saved is None:
            yield
            return
        model._compiled_call_impl = None
        try:
            yield
        finally:
            model._compiled_call_impl = saved


def count_eagerly(workload: Any, prep: Any) -> Any:
    """``workload.count(prep)`` with the model run eagerly: the work a compiled model does is the
    eager model's math (the counter's dispatch mode sees every aten op only in eager mode)."""
    with eager(prep.model, workload):
        return workload.count(prep)


def counters() -> dict:
    """A snapshot of dynamo's and Inductor's counters that :func:`warm` reads."""
    from torch._dynamo.utils import counters as c

    return {"frames": c["frames"].get("ok", 0), "graphs": c["stats"].get("unique_graphs", 0),
            "breaks": dict(c["graph_break"]), "cache_hits": c["inductor"].get("fxgraph_cache_hit", 0),
            "cache_misses": c["inductor"].get("fxgraph_cache_miss", 0)}


def _breaks(before: dict, after: dict) -> list[dict]:
    """Graph breaks between two snapshots: ``[{"reason", "count"}]``, most frequent first."""
    counts = {str(r): int(n - before["breaks"].get(r, 0)) for r, n in after["breaks"].items()}
    return [{"reason": r, "count": n} for r, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n > 0]


def _cache_state(hits: int, misses: int) -> str:
    if hits + misses == 0:
        return "not used"
    return "warm" if misses == 0 else "cold" if hits == 0 else "partly warm"


def begin() -> tuple[dict, float]:
    """The counters and the clock before anything runs the compiled model (pass to :func:`warm`)."""
    return counters(), time.perf_counter()


class _CompileScope:
    """A phase scope that notes which phase occurrences compiled frames (``compiled_in``)."""

    def __init__(self, label: Callable[[str, int], str]):
        self.label, self.iteration = label, 0
        self.rows: list[dict] = []  # {iteration, phase, index, at, frames}
        self._seen: dict[str, int] = {}

    def start(self, iteration: int) -> None:
        self.iteration, self._seen = iteration, {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        index = self._seen[phase] = self._seen.get(phase, -1) + 1
        before = counters()["frames"]
        yield
        frames = counters()["frames"] - before
        if frames:
            self.rows.append({"iteration": self.iteration, "phase": phase, "index": index,
                              "at": self.label(phase, index), "frames": frames})


def warm(iteration: Callable[[Any], None], sync: Callable[[], None], settings: dict,
         begun: tuple[dict, float] | None, label: Callable[[str, int], str]) -> dict:
    """Run the first (compiling) iteration, then iterations until one compiles nothing; the record.
    ``iteration(scope)`` runs one iteration with a phase scope; ``begun`` (:func:`begin`, taken before the
    workload's setup) makes that setup part of the cost; ``label(phase, index)`` names a phase occurrence
    (``Workload.occurrence``)."""
    start, t0 = begun or begin()
    scope = _CompileScope(label)
    iteration(scope)
    sync()
    compile_s = time.perf_counter() - t0
    first = counters()
    settle = 0
    while settle < MAX_SETTLE:
        before = counters()["frames"]
        scope.start(settle + 1)
        iteration(scope)
        sync()
        settle += 1
        if counters()["frames"] == before:
            break
    end = counters()
    return {**settings, "compile_s": compile_s, "settle_iterations": settle,
            "frames_compiled": end["frames"] - start["frames"], "graphs": end["graphs"] - start["graphs"],
            "graph_breaks": _breaks(start, end), "recompiles": end["frames"] - first["frames"],
            "compiled_in": scope.rows,
            "cache": _cache_state(end["cache_hits"] - start["cache_hits"], end["cache_misses"] - start["cache_misses"]),
            "frames_before_timing": end["frames"]}


def after_timing(record: dict) -> dict:
    """The record with ``recompiles_while_timed`` and ``steady`` (nothing compiled while timed)."""
    out = {k: v for k, v in record.items() if k != "frames_before_timing"}
    timed = counters()["frames"] - record["frames_before_timing"]
    return {**out, "recompiles_while_timed": timed, "steady": timed == 0}


UNATTRIBUTED = ("compiled: ops.csv and the operator table cover only the aten ops the compiled code still calls; "
                "its fused kernels, with the ops and modules they fused, are in kernels.csv, and modules.csv "
                "attributes their time (coverage: the 'kernels' line)")


def warnings(record: dict | None) -> list[str]:
    """Lines for summary.warnings: what the tables of a compiled run leave out, and a model that kept
    recompiling while timed."""
    if not record:
        return []
    out = [UNATTRIBUTED]
    if not record.get("steady", True):
        out.append(f"the compiled model recompiled {record['recompiles_while_timed']} times while timed: its median "
                   "is not a steady state (pass --dynamic, or a fixed shape)")
    return out


def describe(record: dict) -> str:
    """One terminal line: mode, backend, compile time, what dynamo did and where it compiled."""
    breaks = sum(b["count"] for b in record.get("graph_breaks", []))
    dyn = {None: "", True: ", dynamic", False: ", static"}[record.get("dynamic")]
    return (f"compiled ({record['mode']}, {record['backend']}{dyn}): {record['compile_s']:.1f} s to the end of the "
            f"first iteration, "
            f"{record['graphs']} graph{'s' if record['graphs'] != 1 else ''}, {breaks} graph break"
            f"{'s' if breaks != 1 else ''}, {record['recompiles']} recompile{'s' if record['recompiles'] != 1 else ''}"
            f" after it, Inductor cache {record['cache']}{_where(record.get('compiled_in') or [])}")


def _where(rows: list[dict]) -> str:
    """``; compiled in prefill, decode step 1 (context 33), decode step 2 (context 34)`` (phases of several
    occurrences, or any iteration after the first); '' when one phase compiled once in the first iteration."""
    if not rows or (len(rows) == 1 and rows[0]["iteration"] == 0):
        return ""
    said = [r["at"] + (f" of iteration {r['iteration'] + 1}" if r["iteration"] else "") for r in rows]
    shown = said if len(said) <= 6 else [*said[:5], f"… {len(said) - 5} more"]
    return "; compiled in " + ", ".join(shown)


def describe_vs_eager(v: dict) -> str:
    """One line: the speedup with its interval and the verdict."""
    if v.get("skipped"):
        return f"eager vs compiled not timed ({v['skipped']})"
    lo, hi = v.get("speedup_low"), v.get("speedup_high")
    interval = f" [{_x(lo)}, {_x(hi)}]" if lo is not None and hi is not None else ""
    verdict = {"faster": "compiling paid off", "slower": "compiling made it slower",
               "no significant change": "no significant change"}.get(v["verdict"], v["verdict"])
    why = f" ({v['inconclusive_reason']})" if v.get("inconclusive_reason") else ""
    per = v.get("iteration_word") or "iteration"
    return (f"{_x(v['speedup'])}x the eager speed{interval} per {v['judged']}, {v['level'] * 100:.0f} % interval, "
            f"{v['pairs']} pairs in {v['elapsed_s']:.1f} s: {verdict}{why}; median {per}: eager "
            f"{seconds(v['eager_median_s'])}, compiled {seconds(v['compiled_median_s'])}")


def _x(ratio: float) -> str:
    """A speed ratio: 3 decimals below 10 (``1.038``), 1 above (``25.3``)."""
    return f"{ratio:.3f}" if ratio < 10 else f"{ratio:.1f}"
