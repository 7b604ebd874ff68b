"""The warnings a run's figures come with, worded once for the terminal, report.html and TensorBoard.

Each function reads ``summary.json`` keys only and returns one line, or ``None`` when there is
nothing to say:

* :func:`timing_noise` - the un-profiled latency sample is too spread for its p50 to be a
  clean headline. The rule (README "TensorBoard, online and offline", "Reading the tables")::

      noisy  <=>  p90 / p50 > NOISY_RATIO   or   p50 / min > NOISY_RATIO

  The first catches a long slow tail; the second a sample whose fast mode is well below its
  median (two modes, e.g. 0.36, 0.36, 1.31, 2.33, 2.64 s: p50 / min = 3.6).
* :func:`timing_disturbed` - ``summary["contention"]["disturbed"]``: something else used the
  machine while the run was timed.
* :func:`peak_exceeded` - ``summary["peak_exceeded"]``: a figure above its ceiling means the
  ceiling is wrong, not that the run beat the hardware.
"""
from __future__ import annotations

import math
from typing import Any

from ..core.units import si

NOISY_RATIO = 1.25  # p90/p50 or p50/min above this: the p50 is not a stable headline
SUGGESTED_ITERS = 50


def _pos(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f > 0 and not math.isnan(f) else None


def noise_ratios(latency: dict | None) -> tuple[float | None, float | None]:
    """``(p90 / p50, p50 / min)`` of a latency dict; ``None`` where a figure is missing."""
    lat = latency or {}
    p50, p90, lo = (_pos(lat.get(k)) for k in ("p50", "p90", "min"))
    return (p90 / p50 if p90 and p50 else None), (p50 / lo if p50 and lo else None)


def timing_noise(summary: dict) -> str | None:
    """``"timing noisy: p90/p50 = 1.50 (above 1.25) ..."`` when the latency sample is too spread."""
    tail, low = noise_ratios((summary or {}).get("latency_s"))
    why = []
    if tail is not None and tail > NOISY_RATIO:
        why.append(f"p90/p50 = {tail:.2f}")
    if low is not None and low > NOISY_RATIO:
        why.append(f"p50/min = {low:.2f}")
    if not why:
        return None
    n = ((summary.get("latency_s") or {}).get("n")) or summary.get("iters")
    more = max(SUGGESTED_ITERS, 2 * int(n)) if n else SUGGESTED_ITERS
    return (f"timing noisy: {' and '.join(why)} (above {NOISY_RATIO}) — the p50 is not a stable figure; "
            f"rerun with more iterations (--iters {more}) on a quieter machine")


def timing_disturbed(summary: dict) -> str | None:
    """``"timing disturbed: <reason> — these figures are not comparable"`` when contention was seen."""
    c = (summary or {}).get("contention")
    if not isinstance(c, dict) or not c.get("disturbed"):
        return None
    reason = c.get("reason") or c.get("reasons") or "other work on this machine while timing"
    if isinstance(reason, (list, tuple)):
        reason = "; ".join(str(r) for r in reason)
    return f"timing disturbed: {reason} — these figures are not comparable"


def exceeded_entries(summary: dict) -> list[dict]:
    """``summary["peak_exceeded"]`` as a list (absent on older runs)."""
    got = (summary or {}).get("peak_exceeded") or []
    return [e for e in got if isinstance(e, dict)]


def peak_exceeded(summary: dict, limit: int = 3) -> str | None:
    """One line naming what went above its ceiling (the first ``limit`` entries, then a count)."""
    items = exceeded_entries(summary)
    if not items:
        return None
    parts = []
    for e in items[:limit]:
        name = e.get("name") or e.get("what") or "?"
        parts.append(f"{e.get('what', '?')} {name} at {si(e.get('achieved_flop_per_s'), 'FLOP/s')} > "
                     f"{si(e.get('ceiling_flop_per_s'), 'FLOP/s')} ({e.get('source') or 'unknown'})")
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"peak exceeded: {'; '.join(parts)}{more} — the ceiling is wrong, not the result"


def exceeded_names(summary: dict, what: str) -> set[str]:
    """Names of the ``what`` (``run``, ``op``, ``module``) entries above their ceiling."""
    return {str(e.get("name")) for e in exceeded_entries(summary) if e.get("what") == what}


def warnings(summary: dict) -> list[str]:
    """Every warning line of a run, most serious first."""
    from ..pipeline.compiled import warnings as compiled_warnings

    return ([w for w in (timing_disturbed(summary), peak_exceeded(summary), timing_noise(summary)) if w]
            + compiled_warnings(summary.get("compile")))
