"""How long counting takes, as a multiple of one eager forward pass, measured in one run.

For each model (default: torchvision resnet50 and vgg16, batch 1, fp32, 224x224, eval)
this times, interleaved round by round in one process:

* ``forward``      one eager forward pass under ``torch.inference_mode()`` (the unit);
* ``empty TorchDispatchMode (floor)``  the same forward under a dispatch mode that only runs each op:
                   the least any counter built on a ``TorchDispatchMode`` can cost;
* ``count``        ``harness.count.count(model, x)`` (runs the forward, counts it);
* ``count meta``   ``count(model, x, device="meta")`` (copies the structure to meta, no math);
* ``count + every table read``, ``count meta + every table read``: the same, then every table
  of the result read (``Counts`` builds its tables on their first read);
* ``FlopCounterMode``  ``torch.utils.flop_counter.FlopCounterMode`` around a forward,
  under ``inference_mode`` (as ``count``) and under ``no_grad`` (its usual use).

Each figure is the median over the rounds; the ratio is median / median(forward), and
``round spread`` is the lowest and highest ratio of a method's time to the forward's
time *in the same round*. A small model's sample repeats its call so that one sample
of the forward takes at least ``--min-ms`` (the same repeat for every method).

``--models`` takes a comma-separated list of torchvision names (``resnet50``: batch 1,
224x224), ``timm:NAME@SIDE``, ``hf:TYPE`` (the tiny configs of the tests) and
``torchvision:NAME@SIDE``, or ``tests``: every model of ``tests/test_models_count.py``
with its test's options (random weights, nothing downloaded).

``--clock cpu`` times with ``time.thread_time()`` (this thread's CPU time) instead of
the wall clock: on a shared machine it does not count the time a neighbour holds the
core, so ratios are far steadier; it is only meaningful with ``--threads 1`` (the
forward's other threads are not counted).

``--profile`` prints where count's time beyond the forward goes (see :func:`profile`).

Usage::

    python benchmarks/count_speed.py [--rounds N] [--models resnet50,vgg16|tests] [--threads N]
                                     [--clock wall|cpu] [--profile] [--no-fcm]

The machine's load average is printed before and after: on a shared machine,
oneDNN's threads can be slowed many times over by other processes, which makes
wall-clock ratios meaningless; ``--threads 1 --clock cpu`` is robust there.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from harness.core.calls import Call, split_inputs  # noqa: E402
from harness.count import count  # noqa: E402

CLOCK: Callable[[], float] = time.perf_counter


# ------------------------------------------------------------------ models


def build(spec: str) -> tuple[str, torch.nn.Module, Any]:
    """``(label, model in eval mode, inputs)`` for one ``--models`` entry (seeded: same weights every run)."""
    torch.manual_seed(0)
    if ":" not in spec:
        import torchvision

        return spec, getattr(torchvision.models, spec)().eval(), torch.randn(1, 3, 224, 224)
    from harness.models import ModelOptions, load

    source, _, rest = spec.partition(":")
    name, _, side = rest.partition("@")
    if source == "hf":
        hf = _test_lists()[1]
        scen = load(spec, ModelOptions(model_kwargs=hf[name], seq_len=16))
        return spec, scen.build_model().eval(), scen.make_inputs(2, "cpu")
    scen = load(f"{source}:{name}", ModelOptions(input_size=int(side) if side else None))
    return spec, scen.build_model().eval(), scen.make_inputs(1, "cpu")


def _test_lists() -> tuple[list, dict]:
    """``(TIMM, HF)`` of ``tests/test_models_count.py``: the models the counter's tests cross-check."""
    sys.path.insert(0, str(ROOT / "tests"))
    import test_models_count as t

    return t.TIMM, t.HF


def expand(models: str) -> list[str]:
    """The ``--models`` list; ``tests`` stands for every model of ``tests/test_models_count.py``."""
    out: list[str] = []
    for spec in (s.strip() for s in models.split(",")):
        if spec == "tests":
            timm, hf = _test_lists()
            out += [f"timm:{n}@{s}" for n, s in timm] + [f"hf:{n}" for n in hf]
            out.append("torchvision:lraspp_mobilenet_v3_large@64")
        elif spec:
            out.append(spec)
    return out


# ------------------------------------------------------------------ timing


def _sample(fn: Callable[[], Any], reps: int) -> float:
    t = CLOCK()
    for _ in range(reps):
        fn()
    return (CLOCK() - t) / reps


def _reps(fn: Callable[[], Any], min_ms: float) -> int:
    """How many calls make one sample of ``fn`` last at least ``min_ms``."""
    one = min(_sample(fn, 1) for _ in range(3))
    return max(1, int(min_ms / 1e3 / max(one, 1e-6)) + 1)


def interleaved(methods: dict[str, Callable[[], Any]], rounds: int, min_ms: float) -> dict[str, list[float]]:
    """Per-call seconds of every method, ``rounds`` samples each, the methods taking turns round by round."""
    for fn in methods.values():  # warm-up: allocator, oneDNN primitives, formula caches
        fn()
    reps = _reps(next(iter(methods.values())), min_ms)
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(rounds):
        for k, fn in methods.items():
            times[k].append(_sample(fn, reps))
    return times


class _EmptyMode(TorchDispatchMode):
    """Every op handed to Python and run, nothing recorded: the least any dispatch-mode counter costs."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def bench(label: str, model: torch.nn.Module, inputs: Any, rounds: int, min_ms: float, fcm: bool) -> dict:
    """Median seconds and ratios to the forward of forward, count, count meta (and FlopCounterMode)."""
    call = split_inputs(inputs)

    def forward():
        with torch.inference_mode():
            call(model)

    def fcm_inference():
        with torch.inference_mode(), FlopCounterMode(display=False):
            call(model)

    def fcm_no_grad():
        with torch.no_grad(), FlopCounterMode(display=False):
            call(model)

    def empty_mode():
        with torch.inference_mode(), _EmptyMode():
            call(model)

    methods = {"forward": forward, "empty TorchDispatchMode (floor)": empty_mode, "count": lambda: count(model, inputs),
               "count meta": lambda: count(model, inputs, device="meta"),
               "count + every table read": lambda: read_tables(count(model, inputs)),
               "count meta + every table read": lambda: read_tables(count(model, inputs, device="meta"))}
    if fcm:
        methods.update({"FlopCounterMode (inference_mode)": fcm_inference, "FlopCounterMode (no_grad)": fcm_no_grad})
    times = interleaved(methods, rounds, min_ms)
    med = {k: statistics.median(v) for k, v in times.items()}
    per_round = {k: [a / f for a, f in zip(v, times["forward"])] for k, v in times.items()}
    return {"model": label, "median_s": med, "ratio": {k: med[k] / med["forward"] for k in med},
            "spread": {k: (min(v), max(v)) for k, v in per_round.items()}}


# ------------------------------------------------------------------ profile


class _Timed:
    """A stand-in for ``harness.count.build.frame`` (columns -> typed arrays -> DataFrame) that times its calls."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.seconds = 0.0
        self.calls = 0  # of the table builds, counted by the caller

    def __call__(self, *args, **kwargs):
        t = CLOCK()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += CLOCK() - t


def _record_ops(model: torch.nn.Module, call: Call, fast_meta: bool) -> list[tuple]:
    """Every ``(info, func, args, kwargs, res)`` the counting mode's ``_on_op`` sees in one forward."""
    from harness.count.mode import OpMode

    calls: list[tuple] = []

    class Recorder(OpMode):
        def _on_op(self, info, func, args, kwargs, res):
            calls.append((info, func, args, kwargs, res))

    Recorder.fast_meta = fast_meta
    with torch.inference_mode(), Recorder():
        call(model)
    return calls


def _stages(model: torch.nn.Module, call: Call, fast_meta: bool) -> dict[str, Callable[[], Any]]:
    """The forward with the counter's pieces added one at a time (each stage includes the previous)."""
    from harness.count import Counter
    from harness.count.mode import CountingMode, ModuleTracker, OpMode

    class Bare(OpMode):
        def _on_op(self, info, func, args, kwargs, res):
            pass

    Bare.fast_meta = fast_meta

    def dispatch():
        with torch.inference_mode(), Bare():
            call(model)

    def hooks():
        with torch.inference_mode(), ModuleTracker(model), Bare():
            call(model)

    def counting():
        tracker = ModuleTracker(model)
        with torch.inference_mode(), tracker, CountingMode(tracker, fast_meta=fast_meta):
            call(model)

    def counter():
        c = Counter(model)
        with c, torch.inference_mode():
            call(model)

    return {"dispatch": dispatch, "hooks": hooks, "counting": counting, "counter": counter}


def _replay(calls: list[tuple]) -> dict[str, Callable[[], Any]]:
    """Per-op work alone, replayed over recorded calls: the formulas, and the whole ``_on_op``."""
    from harness.count.mode import CountingMode

    def formulas():
        for info, func, args, kwargs, res in calls:
            if info.formula is not None:
                try:
                    info.formula(res, *args, **kwargs)
                except Exception:  # counted as the mode does: a failing formula is a note
                    pass

    def on_op():
        mode = CountingMode(None)
        for c in calls:
            mode._on_op(*c)

    def _in_inference(fn):
        def run():
            with torch.inference_mode():
                fn()
        return run

    return {"replay formulas": _in_inference(formulas), "replay _on_op": _in_inference(on_op)}


def read_tables(counts: Any) -> Any:
    """Read every table of a ``Counts`` (each is built on its first read)."""
    from harness.count.counts import TABLES

    for name in TABLES:
        getattr(counts, name)
    return counts


def _tables(model: torch.nn.Module, call: Call) -> tuple[dict[str, Callable[[], Any]], _Timed]:
    """``Counter.result()`` of one counted forward (taken anew on every call), alone and with every
    table read (built), and the DataFrame timer of the latter."""
    from harness.count import Counter
    from harness.count import build as build_mod

    c = Counter(model)
    with c, torch.inference_mode():
        call(model)
    timed = _Timed(build_mod.frame)

    def tables():
        timed.calls += 1
        build_mod.frame = timed
        try:
            read_tables(c.result())
        finally:
            build_mod.frame = timed.fn

    return {"result": c.result, "tables": tables}, timed


def profile(label: str, model: torch.nn.Module, inputs: Any, rounds: int, min_ms: float) -> None:
    """Where count's time beyond the forward goes, on the CPU and on meta; prints two tables.

    Stages add one piece of the counter at a time, all interleaved round by round, each the
    median of ``rounds``: the forward; under the dispatch mode with a no-op ``_on_op``
    (C++ -> Python per op, op lookup, decomposition, running the op); plus the module
    tracking hooks; plus the per-op counting (describing shapes/dtype/bytes, the formula,
    recording the event); the whole ``Counter`` (setup and restore: RNG fork, buffer
    snapshot and compare, parameter versions); and ``Counter.result()`` (totals, coverage and
    the snapshot the tables are built from). ``count()`` end to end gives the rest (placing
    inputs, the meta copy). The per-op counting is split further by replaying the recorded
    ops outside the forward: the formulas alone, and the rest of ``_on_op``. Last, what
    ``count()`` no longer pays: building every table on its first read, split into DataFrame
    construction (``build.frame``: typed arrays, then the frame) and the Python aggregation
    and shape/dtype strings before it.
    """
    from harness.count import meta_model

    call = split_inputs(inputs)
    for meta in (False, True):
        m, c = (meta_model.meta_copy(model), Call(meta_model.to_meta(call.args), meta_model.to_meta(call.kwargs))) \
            if meta else (model, call)

        def forward():
            with torch.inference_mode():
                call(model)

        methods: dict[str, Callable[[], Any]] = {"forward": forward}
        methods.update(_stages(m, c, fast_meta=meta))
        tables, timed = _tables(m, c)
        methods.update(tables)
        methods.update(_replay(_record_ops(m, c, fast_meta=meta)))
        if meta:
            methods["meta copy"] = lambda: (meta_model.meta_copy(model), meta_model.to_meta(call.args))
            methods["count"] = lambda: count(model, inputs, device="meta")
        else:
            methods["count"] = lambda: count(model, inputs)
        times = interleaved(methods, rounds, min_ms)
        df_share = timed.seconds / timed.calls  # a mean over every call (the other rows are medians)
        _print_breakdown(label, meta, {k: statistics.median(v) for k, v in times.items()}, df_share)


def _print_breakdown(label: str, meta: bool, med: dict[str, float], df_s: float) -> None:
    """The stage differences as rows: seconds, share of count's time beyond the forward, and x forward."""
    fwd, total = med["forward"], med["count"]
    base = med["dispatch"]
    rows: list[tuple[str, float]] = []
    if meta:
        rows.append(("meta copy (structure + inputs)", med["meta copy"]))
        rows.append(("dispatch mode + model Python + meta kernels", base))
    else:
        rows.append(("dispatch mode (Python per op, no counting)", base - fwd))
    on_op, formulas = med["replay _on_op"], med["replay formulas"]
    rows += [
        ("module tracking hooks", med["hooks"] - base),
        ("per-op counting", med["counting"] - med["hooks"]),
        ("  formulas (replayed alone)", formulas),
        ("  describe + record event (replayed _on_op - formulas)", on_op - formulas),
        ("counter setup / restore", med["counter"] - med["counting"]),
        ("Counter.result (totals, coverage, snapshot)", med["result"]),
    ]
    accounted = sum(v for k, v in rows if not k.startswith("  "))
    over = total - (0.0 if meta else fwd)
    rows.append(("rest of count() (inputs, placing, model walks)", over - accounted))
    tables = med["tables"] - med["result"]
    rows += [
        ("after count(): every table built on its first read", tables),
        ("  DataFrame construction (build.frame)", df_s),
        ("  aggregation, strings (the rest of the tables)", tables - df_s),
    ]
    where = "meta" if meta else "cpu"
    print(f"\n{label} ({where}): forward {fwd * 1e3:.2f} ms, count{' meta' if meta else ''} {total * 1e3:.2f} ms "
          f"= {total / fwd:.3f}x forward; {'all of count' if meta else 'beyond the forward'}: {over * 1e3:.2f} ms")
    print(f"  {'part':<56} {'ms':>8} {'share':>7} {'x fwd':>7}")
    for k, v in rows:
        print(f"  {k:<56} {v * 1e3:>8.3f} {v / over * 100 if over else 0:>6.1f}% {v / fwd:>7.3f}")


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    global CLOCK
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--models", default="resnet50,vgg16")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this thread's CPU time (steady on a shared machine; use with --threads 1)")
    ap.add_argument("--min-ms", type=float, default=20.0, help="repeat a small model's calls to fill a sample")
    ap.add_argument("--profile", action="store_true", help="print where count's time beyond the forward goes")
    ap.add_argument("--no-fcm", action="store_true", help="skip the FlopCounterMode comparisons")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        CLOCK = time.thread_time
        if torch.get_num_threads() > 1:
            print("warning: --clock cpu counts this thread only; the forward's other threads are missed")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, median of "
          f"{args.rounds} interleaved rounds, load average {_load()}")
    if not args.profile:
        print(f"{'model':<34} {'method':<34} {'median':>10} {'x forward':>10} {'round spread':>16}")
    for spec in expand(args.models):
        label, model, inputs = build(spec)
        if args.profile:
            profile(label, model, inputs, args.rounds, args.min_ms)
            continue
        r = bench(label, model, inputs, args.rounds, args.min_ms, fcm=not args.no_fcm)
        for k, v in r["median_s"].items():
            lo, hi = r["spread"][k]
            print(f"{r['model']:<34} {k:<34} {v * 1e3:>8.2f}ms {r['ratio'][k]:>9.3f}x {lo:>7.3f}-{hi:.3f}x")
    print(f"load average after: {_load()}")
    return 0


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


with contextlib.suppress(Exception):  # keep a broken pipe (| head) quiet
    import signal

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

if __name__ == "__main__":
    raise SystemExit(main())
