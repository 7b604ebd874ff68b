"""Live bytes by category over one iteration, from allocation events: pure arithmetic, no torch.

In: the allocator's events of one iteration (:class:`Alloc`: time, address, signed size, the
module scope it happened in), the storages live before it began (:class:`Known` at ``t0`` with
their size: the **baseline**) and the storages known to belong to a category at some moment
during it (:class:`Known`: a parameter's address, a ``.grad``, an optimizer state tensor, a
tensor autograd saved for backward, the KV cache, the model's output).

Out: one :class:`Lifetime` per allocation (address, bytes, start, end, category, module) and
from them the long table of ``memory.csv`` (:func:`series`: ``t_s, phase, category, bytes``) and
the peak (:func:`peak`).

The rules, in one place:

* an allocation lives from its event to the free event at the same address (or past the
  iteration's end when none comes); a free at an address allocated before the iteration and
  not in the baseline is a baseline allocation nobody named: a ``temporaries`` lifetime from
  ``t0`` to the free;
* a :class:`Known` names the allocation at its address that is live at its moment (allocated at
  or before it, freed after it); an allocation named by several takes the first category of
  :data:`PRECEDENCE` (a weight that autograd saves stays ``parameters``; a model output saved for
  backward stays ``outputs``); one named by none is ``temporaries``;
* the **peak** is the largest sum over all categories of live bytes, evaluated after all the
  events of each distinct timestamp; its moment is the first time the sum reaches it.

The same code serves CPU (the profiler counts allocations from zero) and CUDA (the caching
allocator's block addresses): only the events differ, so it is tested with hand-made events.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import pandas as pd

from .categories import (ACTIVATIONS, BUFFERS, CATEGORIES, GRADIENTS, INPUTS, KV_CACHE, OPTIMIZER_STATE, OUTPUTS,
                         PARAMETERS, TEMPORARIES)

#: Which category wins when one allocation is named by several (first wins).
PRECEDENCE: tuple[str, ...] = (PARAMETERS, BUFFERS, GRADIENTS, OPTIMIZER_STATE, KV_CACHE, INPUTS, OUTPUTS,
                               ACTIVATIONS, TEMPORARIES)
NO_PHASE = "(none)"  # memory.csv's phase outside every phase range (a train step's zero_grad)
NO_MODULE = "(outside the model)"
COLUMNS = ["t_s", "phase", "category", "bytes"]
_RANK = {c: i for i, c in enumerate(PRECEDENCE)}
assert set(PRECEDENCE) == set(CATEGORIES)


class Alloc(NamedTuple):
    """One allocator event: ``nbytes`` > 0 allocates at ``ptr``, < 0 frees it. ``t_ns`` on the
    same clock as the phases and :class:`Known` moments."""

    t_ns: int
    ptr: int
    nbytes: int
    module: str | None = None


class Known(NamedTuple):
    """The storage at ``ptr`` belongs to ``category`` at ``t_ns`` (it is live then). Baseline
    entries (``t_ns`` = the iteration's start) carry the storage's size and its owner module."""

    t_ns: int
    ptr: int
    category: str
    nbytes: int = 0
    module: str | None = None


@dataclass
class Lifetime:
    ptr: int
    nbytes: int
    start_ns: int
    end_ns: int | None  # None: still live when the iteration ended
    category: str = TEMPORARIES
    module: str | None = None

    def live_at(self, t_ns: int) -> bool:
        return self.start_ns <= t_ns and (self.end_ns is None or self.end_ns > t_ns)


class Phases:
    """The phase ranges of the iteration, ``(name, start_ns, end_ns)``; :meth:`at` names the one open at a time."""

    def __init__(self, ranges: Iterable[tuple[str, int, int]]):
        self.ranges = sorted(ranges, key=lambda r: r[1])
        self._starts = [r[1] for r in self.ranges]

    def at(self, t_ns: int) -> str:
        i = bisect.bisect_right(self._starts, t_ns) - 1
        if i >= 0 and t_ns < self.ranges[i][2]:
            return self.ranges[i][0]
        return NO_PHASE


def lifetimes(events: Iterable[Alloc], baseline: Iterable[Known], known: Iterable[Known], t0_ns: int) -> list[Lifetime]:
    """Every allocation's lifetime, categorized by the rules of the module docstring. ``events`` may
    begin before ``t0_ns`` (a warm-up iteration under the same profiler, so that frees of what it
    left behind are seen); a baseline storage without a live allocation at ``t0_ns`` gets one."""
    out: list[Lifetime] = []
    live: dict[int, Lifetime] = {}
    ordered = sorted(enumerate(events), key=lambda ie: (ie[1].t_ns, ie[0]))
    before = [e for _, e in ordered if e.t_ns < t0_ns]
    for e in before:
        _apply(e, live, out, t0_ns)
    for b in sorted(baseline, key=lambda k: _RANK[k.category]):
        if b.ptr not in live:  # a storage named twice (a tied weight, a view) is counted once
            live[b.ptr] = Lifetime(b.ptr, b.nbytes, t0_ns, None, b.category, b.module)
            out.append(live[b.ptr])
    for e in [e for _, e in ordered if e.t_ns >= t0_ns]:
        _apply(e, live, out, t0_ns)
    out = [lt for lt in out if lt.end_ns is None or lt.end_ns > t0_ns]  # gone before the iteration
    _categorize(out, [*baseline, *known])
    return out


def _apply(e: Alloc, live: dict[int, Lifetime], out: list[Lifetime], t0_ns: int) -> None:
    """One event: open a lifetime at its address, or close the one open there."""
    if e.nbytes > 0:
        if e.ptr in live:  # an address reused without a free we saw: the old one ended here
            live.pop(e.ptr).end_ns = e.t_ns
        live[e.ptr] = Lifetime(e.ptr, e.nbytes, e.t_ns, None, TEMPORARIES, e.module)
        out.append(live[e.ptr])
    elif e.nbytes < 0:
        lt = live.pop(e.ptr, None)
        if lt is None:  # allocated before the events began and not in the baseline
            lt = Lifetime(e.ptr, -e.nbytes, min(t0_ns, e.t_ns), None, TEMPORARIES, e.module)
            out.append(lt)
        lt.end_ns = e.t_ns


def _categorize(lts: list[Lifetime], known: Iterable[Known]) -> None:
    by_ptr: dict[int, list[Lifetime]] = {}
    for lt in lts:
        by_ptr.setdefault(lt.ptr, []).append(lt)
    for k in known:
        for lt in by_ptr.get(k.ptr, ()):
            if lt.live_at(k.t_ns) and _RANK[k.category] < _RANK[lt.category]:
                lt.category = k.category
                if k.module is not None:
                    lt.module = k.module


def _deltas(lts: list[Lifetime], t0_ns: int) -> pd.DataFrame:
    """Net change of live bytes per (time, category), times in ns, sorted by time."""
    rows = [(max(lt.start_ns, t0_ns), lt.category, lt.nbytes) for lt in lts]
    rows += [(lt.end_ns, lt.category, -lt.nbytes) for lt in lts if lt.end_ns is not None]
    df = pd.DataFrame(rows, columns=["t_ns", "category", "delta"])
    return df.groupby(["t_ns", "category"], as_index=False, sort=True)["delta"].sum()


def series(lts: list[Lifetime], t0_ns: int, phases: Phases) -> pd.DataFrame:
    """memory.csv: one row per (event time, category) whose live bytes changed there, plus a row per
    category at ``t_s`` 0 (the baseline, zeros included). ``bytes`` is the category's live bytes
    after the events of that time; the total at a time is the sum of each category's latest row."""
    d = _deltas(lts, t0_ns)
    d["bytes"] = d.groupby("category")["delta"].cumsum()
    start = d[d.t_ns == t0_ns].set_index("category")["bytes"]
    first = pd.DataFrame({"t_ns": t0_ns, "category": list(CATEGORIES),
                          "bytes": [int(start.get(c, 0)) for c in CATEGORIES]})
    later = d[(d.t_ns > t0_ns) & (d.delta != 0)][["t_ns", "category", "bytes"]]
    out = pd.concat([first, later], ignore_index=True)
    out["phase"] = [phases.at(int(t)) for t in out.t_ns]
    out["t_s"] = (out.t_ns - t0_ns) / 1e9
    out["bytes"] = out["bytes"].astype("int64")
    return out[COLUMNS]


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """memory.csv's long rows as one row per time, one column per category (bytes, carried forward)."""
    w = table.pivot_table(index="t_s", columns="category", values="bytes", aggfunc="last").sort_index().ffill()
    return w.reindex(columns=list(CATEGORIES)).fillna(0).astype("int64")


class Peak(NamedTuple):
    bytes: int
    t_s: float
    phase: str
    by_category: dict[str, int]


def peak(table: pd.DataFrame) -> Peak:
    """The largest total of live bytes in memory.csv's table, its first moment, phase and split."""
    w = wide(table)
    total = w.sum(axis=1)
    t = float(total.idxmax())
    phase = table.loc[table.t_s == t, "phase"].iloc[0]
    return Peak(int(total.loc[t]), t, str(phase), {c: int(w.at[t, c]) for c in CATEGORIES})


def by_module_at(lts: list[Lifetime], t_ns: int, top: int = 10) -> dict[str, int]:
    """Live bytes at ``t_ns`` per module (the allocation's own module, children apart), the ``top`` largest."""
    acc: dict[str, int] = {}
    for lt in lts:
        if lt.live_at(t_ns):
            name = lt.module if lt.module is not None else NO_MODULE
            acc[name] = acc.get(name, 0) + lt.nbytes
    ranked = sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return dict(ranked)
