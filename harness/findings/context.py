"""What every finding family reads: the run's tables and summary, the ceilings, the measured per-op
overhead — one :class:`Context`, built from a finished run (:func:`from_run`) or by hand in a test.

Helpers shared by the families: the profiled time of one call (:meth:`Context.call_time`), the
bandwidth an op's working set meets (:meth:`Context.bandwidth`), the shapes of an event.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from ..core.units import si

ITEMSIZE = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2, "int64": 8, "int32": 4, "int8": 1,
            "uint8": 1, "bool": 1, "int16": 2}


@dataclass
class Context:
    """A run as the families read it.

    ``summary``: summary.json's dict; ``ops``/``ops_by_shape``/``modules``: the run's tables;
    ``events``: the counter's per-call events in dispatch order (``seq, op, input_shapes, dtype, macs,
    flops, other_flops, bytes, module, phase``; may be empty); ``peak``: the run's
    :class:`harness.hardware.Peak`; ``alternates``: peaks of other dtypes on the same device
    (``{"bfloat16": Peak}``); ``overhead_s``: measured seconds of one tiny op's dispatch on this
    machine (:func:`harness.findings.overhead.dispatch_overhead_s`); ``ab_base``: the ``ab`` command
    without its sides' options (``python -m harness ab T T:{side} --batch-size 4 ...``, ``{side}`` filled
    per finding), None when the run cannot be replayed by name; ``layout_times``: conv2d/pooling shapes timed in
    both layouts (:func:`harness.findings.layout.measure`: ``{key_of(event): (contiguous s, channels_last
    s, args)}``), empty when not measured; ``batch_times``: conv2d/linear shapes timed at the run's batch and
    ``batch_factor`` times it (:func:`harness.findings.underfilled.measure`: ``{op + shapes: (s, s)}``);
    ``batch_fit``: the largest batch whose forecast peak fits the device's memory
    (:func:`harness.findings.underfilled.largest_batch`: ``{batch_size, budget_bytes, budget_source, capped}``),
    empty when not searched; ``fit_search``: what searches it, run by the first finding that needs it (the
    search is a few forecasts on meta: only for a run that gets an underfilled finding); ``attention_times``: eager attention blocks timed eager and as
    scaled_dot_product_attention (:func:`harness.findings.attention.measure`: ``{key_of(block): (eager s, sdpa
    s, block)}``), empty when not measured; ``kernels``: a compiled run's kernel table (kernels.csv of
    :mod:`harness.pipeline.kernel_join`: ``kernel, kind, phase, calls, time_s, bytes, achieved_bytes_per_s`` per
    iteration), empty otherwise.
    """

    summary: dict
    ops: pd.DataFrame
    ops_by_shape: pd.DataFrame
    modules: pd.DataFrame
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    peak: Any = None
    alternates: dict = field(default_factory=dict)
    overhead_s: float | None = None
    ab_base: str | None = None
    layout_times: dict = field(default_factory=dict)
    batch_times: dict = field(default_factory=dict)
    batch_factor: int = 1
    batch_fit: dict = field(default_factory=dict)
    fit_search: Callable[[], dict] | None = None
    attention_times: dict = field(default_factory=dict)
    kernels: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __post_init__(self) -> None:
        self._times: dict | None = None

    # ------------------------------------------------------------ run figures
    @property
    def latency_s(self) -> float | None:
        lat = (self.summary.get("latency_s") or {}).get("p50")
        return float(lat) if lat else None

    @property
    def profiled_s(self) -> float:
        """Profiled seconds per iteration (the tables' time basis)."""
        prof = self.summary.get("profiled") or {}
        t = prof.get("time_per_iteration_s") or prof.get("time_per_forward_s")
        if t:
            return float(t)
        return float(self.ops["self_time_s"].sum()) if "self_time_s" in self.ops else 0.0

    @property
    def dtype(self) -> str:
        return str(self.summary.get("dtype") or "float32")

    def ab(self, side: str) -> str | None:
        return self.ab_base.replace("{side}", side) if self.ab_base else None

    def compile_side(self, phase: str) -> str:
        """The side that fuses a phase's ops: ``compile``; a training step's optimizer phase is compiled only
        with ``optimizer_step=compiled`` (``--compile`` compiles the model, not the optimizer step)."""
        train_optimizer = self.summary.get("workload") == "train" and phase == "optimizer"
        return "compile,optimizer_step=compiled" if train_optimizer else "compile"

    # ------------------------------------------------------------ per call
    def call_time(self, phase: str, op: str, input_shapes: Any) -> float:
        """Profiled seconds of one call of ``op`` with these shapes in ``phase``: its ops_by_shape row's
        time over its dispatch calls (else the op's mean over every shape; 0 when not profiled)."""
        if self._times is None:
            self._times = _time_index(self.ops_by_shape, ["phase", "name", "input_shapes"])
            self._times.update(_time_index(self.ops, ["phase", "name"]))
        key = (str(phase), op, str(_shapes(input_shapes)))
        return self._times.get(key, self._times.get((str(phase), op), 0.0))

    # ------------------------------------------------------------ ceilings
    def bandwidth(self, working_set_bytes: float) -> tuple[float | None, str]:
        """``(bytes/s, where it comes from)`` for an op touching ``working_set_bytes``: the calibrated
        level's bandwidth, else main memory's, else the fastest op of this run (a measured lower bound)."""
        peak = self.peak
        if peak is not None:
            bw, level = peak.bandwidth_for(int(working_set_bytes))
            if bw:
                return float(bw), f"{level} {si(bw, 'B/s')}"
        ops = self.ops_by_shape
        if "achieved_bytes_per_s" in ops and len(ops):
            rates = ops.loc[ops.get("kind", "op") == "op", "achieved_bytes_per_s"].replace([math.inf], math.nan).dropna()
            if len(rates) and rates.max() > 0:
                return float(rates.max()), f"{si(rates.max(), 'B/s')} (fastest op of this run; bandwidth not calibrated)"
        return None, "bandwidth unknown"

    def flop_ceiling(self, op: str, peak: Any = None) -> float | None:
        peak = peak if peak is not None else self.peak
        if peak is None:
            return None
        flop, _ = peak.ceiling_for_op(op)
        return flop

    def roofline_s(self, op: str, flops: float, nbytes: float, peak: Any = None) -> float | None:
        """The least time the op's work could take: max(FLOPs / its ceiling, bytes / bandwidth)."""
        flop = self.flop_ceiling(op, peak)
        bw, _ = self.bandwidth(nbytes)
        parts = [flops / flop if flop and flops else 0.0, nbytes / bw if bw and nbytes else 0.0]
        return max(parts) if (flop or bw) else None


def _time_index(df: pd.DataFrame, keys: list[str]) -> dict:
    """``{(phase, name[, input_shapes]): seconds per dispatch call}`` over a table's ``op`` rows (rows of
    one key pooled: their time over their calls)."""
    if df is None or not len(df) or "self_time_s" not in df:
        return {}
    rows = df[df["kind"] == "op"] if "kind" in df else df
    sums: dict = {}
    for rec in rows.to_dict("records"):
        calls = rec.get("dispatch_calls") or rec.get("calls") or 0
        if not calls or math.isnan(float(calls)):
            continue
        phase = rec.get("phase") if isinstance(rec.get("phase"), str) else ""
        key = (phase, str(rec["name"])) + ((str(_shapes(rec.get("input_shapes"))),) if "input_shapes" in keys else ())
        t, n = sums.get(key, (0.0, 0.0))
        sums[key] = (t + float(rec["self_time_s"]), n + float(calls))
    return {k: t / n for k, (t, n) in sums.items()}


def _shapes(value: Any) -> list:
    """An event's ``input_shapes`` as a list of lists (a CSV holds their text)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return []
    return [list(s) if isinstance(s, (list, tuple)) else [] for s in (value or [])]


def tensor_shapes(value: Any) -> list[list[int]]:
    """The non-scalar shapes among an event's inputs (scalars and non-tensors show as ``[]``)."""
    return [s for s in _shapes(value) if s]


def numel(shape: list[int]) -> int:
    return int(math.prod(shape)) if shape else 1


def broadcast(shapes: list[list[int]]) -> list[int]:
    """The broadcast shape of element-wise inputs (numpy's rule)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for s in shapes:
        for i, d in enumerate(s, start=ndim - len(s)):
            out[i] = d if out[i] == 1 else out[i]
    return out


def itemsize(dtype: Any) -> int:
    return ITEMSIZE.get(str(dtype).removeprefix("torch."), 4)
