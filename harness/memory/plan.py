"""The largest batch that fits a memory budget, searched with forecasts on the meta device.

:func:`plan_spec` forecasts the spec's workload (:mod:`harness.memory.forecast`) at batch 1, then
grows the batch until a forecast peak exceeds the budget (exponential: at least doubling, or past
the batch where a straight line through the last two forecasts meets the budget), then narrows
the bracket (binary search; each probe where the line through the two largest fitting forecasts, else
the chord across the bracket, meets the budget, and at the midpoint after two probes in a row that
did not halve the bracket). A peak that is affine in the batch is settled in four forecasts: 1, 2,
the crossing + 1, the crossing. (Only chord guesses count towards the midpoint rule: the line
through the largest fitting forecasts moves the lower end to the boundary in one or two probes.) The model is
built on meta once; each probe makes its inputs and runs the workload's setup and one iteration.
A peak is assumed not to shrink as the batch grows.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..pipeline.spec import RunSpec
    from .result import MemoryForecast

MAX_BATCH = 1 << 20


@dataclass
class Plan:
    """A plan's answer: ``fits`` (the forecast at the largest batch whose peak is within the budget; None
    when batch 1 is not), ``over`` (the forecast at the next batch, which is not; None when the search
    stopped at ``max_batch``), the budget, and every probe ``(batch, peak_bytes)`` in search order."""

    budget_bytes: int
    budget_source: str
    fits: MemoryForecast | None
    over: MemoryForecast | None
    max_batch: int
    probes: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def batch_size(self) -> int | None:
        return self.fits.batch_size if self.fits is not None else None

    @property
    def capped(self) -> bool:
        """The search stopped at ``max_batch`` with the budget not reached."""
        return self.fits is not None and self.over is None

    def to_dict(self) -> dict[str, Any]:
        return {"budget_bytes": self.budget_bytes, "budget_source": self.budget_source,
                "batch_size": self.batch_size, "capped": self.capped, "max_batch": self.max_batch,
                "fits": self.fits.to_dict() if self.fits is not None else None,
                "over": self.over.to_dict() if self.over is not None else None,
                "overflow_bytes": self.over.peak_bytes - self.budget_bytes if self.over is not None else None,
                "probes": [{"batch_size": b, "peak_bytes": p} for b, p in self.probes], "seconds": self.seconds}


def plan_spec(spec: RunSpec, budget_bytes: int, budget_source: str = "given", max_batch: int = MAX_BATCH) -> Plan:
    """The largest batch of ``spec`` (its scenario, workload, options, dtype, device) whose forecast peak is
    at most ``budget_bytes`` (module docstring); ``spec.batch_size`` is ignored."""
    from ..pipeline import scenario as scenarios
    from ..pipeline import workloads
    from .forecast import forecast_prepared, meta_prepared, target_device

    t0 = time.perf_counter()
    sc = scenarios.load(spec.target, spec.model_options())
    target = target_device(spec.device or sc.device)
    model = meta_prepared(sc, spec.replace(batch_size=1)).model  # built once, on meta

    def probe(batch: int) -> MemoryForecast:
        prep = meta_prepared(sc, spec.replace(batch_size=batch), model=model)
        return forecast_prepared(prep, workloads.get(spec.workload or sc.workload, **spec.workload_options), target)

    seen = search(probe, budget_bytes, max_batch)
    fitting = [b for b, f in seen.items() if f.peak_bytes <= budget_bytes]
    best = max(fitting) if fitting else None
    over = seen.get(best + 1) if best is not None else seen.get(1)
    return Plan(budget_bytes, budget_source, seen[best] if best is not None else None, over, max_batch,
                [(b, f.peak_bytes) for b, f in seen.items()], time.perf_counter() - t0)


def search(probe: Callable[[int], MemoryForecast], budget: int, max_batch: int = MAX_BATCH) -> dict[int, MemoryForecast]:
    """Every forecast made, by batch, in probe order (module docstring). The largest fitting batch ``b``
    is among them, and so is ``b + 1`` unless ``b`` is ``max_batch``."""
    seen: dict[int, MemoryForecast] = {}

    def fits(b: int) -> bool:
        if b not in seen:
            seen[b] = probe(b)
        return seen[b].peak_bytes <= budget

    if not fits(1):
        return seen
    lo, hi = 1, None
    while hi is None:
        step = _crossing(seen, lo, budget)
        nxt = min(max(2 * lo, step + 1 if step is not None else 2 * lo), max_batch)
        if nxt <= lo:
            return seen
        if fits(nxt):
            lo = nxt
        else:
            hi = nxt
    slow = 0  # chord guesses in a row that did not halve the bracket; at 2 the next probe is the midpoint
    while hi - lo > 1:
        guess, chord = _guess(seen, lo, hi, budget) if slow < 2 else (None, False)
        mid = guess if guess is not None else (lo + hi) // 2
        width = hi - lo
        if fits(mid):
            lo = mid
        else:
            hi = mid
        slow = 0 if hi - lo <= width // 2 else slow + chord
    return seen


def _guess(seen: dict[int, MemoryForecast], lo: int, hi: int, budget: int) -> tuple[int | None, bool]:
    """Inside (lo, hi): where the line through the two largest fitting forecasts meets the budget (``lo + 1``
    when that is ``lo``: the boundary is probed) once ``lo`` is newer than ``hi`` (else that line already
    gave ``hi``), else where the chord from ``lo`` to ``hi`` does; and whether it is the chord's."""
    order = list(seen)
    line = _crossing(seen, lo, budget) if order.index(lo) > order.index(hi) else None
    for c, chord in ((line, False), (_crossing(seen, lo, budget, hi), True)):
        if c is not None and lo <= c < hi:
            return max(c, lo + 1), chord
    return None, False


def _crossing(seen: dict[int, MemoryForecast], lo: int, budget: int, hi: int | None = None) -> int | None:
    """The batch where the line through the forecasts at ``lo`` and ``hi`` (else the largest batch below
    ``lo``) meets the budget, rounded down; None without two points or with a flat line."""
    other = hi if hi is not None else max((b for b in seen if b < lo), default=None)
    if other is None:
        return None
    p_lo, p_other = seen[lo].peak_bytes, seen[other].peak_bytes
    slope = (p_other - p_lo) / (other - lo)
    if slope <= 0:
        return None
    return lo + int((budget - p_lo) // slope)
