"""A multi-rank job's measured memory: each rank's peak and the imbalance (pure: no torch, no I/O).

The job's ``memory`` is the largest rank's (its peak, phase and split: what must fit on the most
loaded device), with ``rank`` (which one), ``peak_bytes_by_rank`` (every rank's ``peak_bytes`` in
rank order) and ``imbalance`` = largest / smallest peak (1.0 when every rank holds the same; None
when a rank measured nothing).
"""
from __future__ import annotations

import copy
from typing import Any


def merge(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The job's ``memory`` from the ranks' summaries; None when no rank measured its memory."""
    peaks = [(s.get("memory") or {}).get("peak_bytes") for s in summaries]
    known = [k for k, p in enumerate(peaks) if p is not None]
    if not known:
        return None
    value = {k: int(peaks[k] or 0) for k in known}
    largest = max(known, key=value.__getitem__)
    smallest = min(known, key=value.__getitem__)
    out = copy.deepcopy(summaries[largest]["memory"])
    complete = len(known) == len(peaks)
    out.update(rank=largest, peak_bytes_by_rank=peaks,
               imbalance=value[largest] / value[smallest] if complete and value[smallest] else None)
    return out
