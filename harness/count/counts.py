"""``Counts``: what a counted workload costs, in totals and in tables (columns below)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

BY_OP_COLUMNS = ["op", "input_shapes", "dtype", "calls", "macs", "flops", "other_flops", "bytes", "module", "phase"]
BY_MODULE_COLUMNS = ["path", "type", "depth", "output_shape", "params", "macs", "flops", "other_flops", "bytes",
                     "calls", "phase"]
EVENT_COLUMNS = ["seq", "op", "input_shapes", "dtype", "macs", "flops", "other_flops", "bytes", "module", "counted",
                 "phase"]
BY_PHASE_COLUMNS = ["phase", "calls", "macs", "flops", "other_flops", "bytes"]
UNCOUNTED_COLUMNS = ["op", "calls"]
WORK_COLUMNS = ["macs", "flops", "other_flops", "bytes"]


class Deferred:
    """A table not built yet: ``Deferred(fn, *args)()`` is ``fn(*args)``. A :class:`Counts` table
    field may hold one; the field's first read builds the table and keeps it."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., pd.DataFrame], *args: Any):
        self.fn = fn
        self.args = args

    def __call__(self) -> pd.DataFrame:
        return self.fn(*self.args)


class _Table:
    """A :class:`Counts` table field: holds a DataFrame, or a :class:`Deferred` that builds it on the
    first read (``count()`` returns before any table is built; reading totals builds none)."""

    def __init__(self, name: str):
        self.name = name
        self.key = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            raise AttributeError(self.name)
        value = obj.__dict__[self.key]
        if type(value) is Deferred:
            value = obj.__dict__[self.key] = value()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.key] = value


#: the table fields of :class:`Counts`
TABLES = ("by_op", "by_module", "uncounted", "events", "by_phase")


@dataclass(eq=False)
class Counts:
    """What a counted workload (one forward pass for ``count()``) costs.

    * ``params``, ``trainable_params``, ``buffers``: element counts of the unique
      parameter / buffer tensors (tied weights once), PyTorch's ``numel()``.
    * ``macs``: multiply-accumulates of matmul-class work (conv, linear, matmul,
      bmm, grouped mm, attention QK^T and PV, RNN gate matmuls); ``flops`` = 2 x ``macs``.
    * ``other_flops``: arithmetic outside multiply-accumulate (bias adds, norms,
      softmax, activations, elementwise), each op's rule in its formula docstring.
    * ``bytes``: memory access cost, each op's inputs, weights and outputs read or
      written once at their dtype's size (ShuffleNet V2's MAC).
    * ``by_op``: one row per (phase, op, input_shapes, dtype, module) with calls and totals.
    * ``by_module``: one row per (phase, module), phases in order, modules in
      ``named_modules`` order; a parent includes every descendant (called or not)
      and any module its calls called; ``calls`` is the module's own calls.
    * ``by_phase``: one row per phase in order of first use: calls (op calls) and totals.
    * ``events``: one row per dispatched op call, in order, with its phase.
    * ``uncounted``: ops that ran without a formula (op, calls); ``coverage``: shares.

    Totals are sums over every phase; :meth:`op_totals` and :meth:`module_totals` give
    ``by_op`` and ``by_module`` summed over phases (the same rows when there is one phase).

    The tables are built when first read (a field may be given a :class:`Deferred`): a count
    whose caller reads only totals does not pay for DataFrames. A pickle holds built tables.
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
    by_phase: pd.DataFrame
    device: str = "cpu"
    training: bool = False
    notes: list = field(default_factory=list)

    def __getstate__(self) -> dict:
        """The instance's state with every table built (a pickle holds data, not the builders)."""
        for name in TABLES:
            getattr(self, name)
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return (
            f"Counts(params={self.params:,}, macs={self.macs:,}, flops={self.flops:,}, "
            f"other_flops={self.other_flops:,}, bytes={self.bytes:,}, "
            f"coverage={self.coverage.get('share_of_calls', 0):.3f}, device={self.device!r}, "
            f"phases={self.phases!r})"
        )

    @property
    def phases(self) -> list[str]:
        """Phase names in order of first use."""
        return list(self.by_phase["phase"])

    def op_totals(self) -> pd.DataFrame:
        """``by_op`` summed over phases: one row per (op, input_shapes, dtype, module), first-seen order."""
        keys = ["op", "input_shapes", "dtype", "module"]
        df = self.by_op.groupby(keys, sort=False, as_index=False)[["calls"] + WORK_COLUMNS].sum()
        return df[[c for c in BY_OP_COLUMNS if c != "phase"]]

    def module_totals(self) -> pd.DataFrame:
        """``by_module`` summed over phases: one row per module (calls summed; output_shape the first seen)."""
        df = self.by_module
        firsts = df.assign(output_shape=df["output_shape"].where(df["output_shape"] != "")).groupby(
            "path", sort=False)[["type", "depth", "output_shape", "params"]].first()
        sums = df.groupby("path", sort=False)[WORK_COLUMNS + ["calls"]].sum()
        out = firsts.join(sums).reset_index()
        out["output_shape"] = out["output_shape"].fillna("")
        return out[[c for c in BY_MODULE_COLUMNS if c != "phase"]]

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
            "uncounted": records(self.uncounted),
            "by_phase": records(self.by_phase),
            "by_module": records(self.by_module),
            "by_op": records(self.by_op),
            "notes": list(self.notes),
        }

    def table(self, by: str = "module", depth: int | None = None) -> str:
        """A readable table (SI units) by module (to ``depth``) or by op, summed over phases."""
        from .table import render

        return render(self, by=by, depth=depth)


for _name in TABLES:  # after the dataclass is made: its __init__ assigns through the descriptors
    setattr(Counts, _name, _Table(_name))


def records(df: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values (numpy scalars unwrapped)."""
    out = []
    for row in df.itertuples(index=False):
        rec = {}
        for k, v in zip(df.columns, row):
            if hasattr(v, "item"):
                v = v.item()
            rec[k] = v
        out.append(rec)
    return out
