"""The typed result of a memory forecast (:class:`MemoryForecast`) and how it is built from a tracker.

``timeline`` (a DataFrame, built on first use) has one row per event and category that ever holds
bytes: ``t_index`` (event order: each allocation, free or resize of a storage is one event; the
storages alive before the iteration are the first events, phase ``setup``), ``phase`` (the
workload phase the event happened in), ``category`` (:mod:`harness.memory.categories`) and
``bytes`` (live bytes of that category after the event).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import categories as C

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .tracker import StorageTracker

TOP_MODULES = 10
TIMELINE_COLUMNS = ["t_index", "phase", "category", "bytes"]


@dataclass
class MemoryForecast:
    """One iteration's memory, forecast on the meta device.

    ``peak_bytes`` (the most bytes alive at once), ``at_phase`` (the phase of that instant),
    ``peak_t_index`` (its event), ``by_category_at_peak`` (every category of
    :data:`harness.memory.categories.CATEGORIES`, bytes alive at the peak), ``by_module_at_peak``
    (the 10 owners holding the most bytes then: ``{"module", "bytes"}``; owners are the module whose
    forward allocated the storage, a parameter's module for weights, gradients and optimizer
    state, or ``(phase)`` outside any module), ``kv_cache_bytes`` (a generation's cache after its last
    step; None for other workloads), ``start_bytes`` (alive before the iteration: weights, inputs,
    optimizer state, last step's gradients), and what was forecast: scenario, workload, batch size,
    dtype, ``device`` (the device the forecast stands for: ``cpu`` or ``cuda``, which rounds
    allocations to 512 bytes) and ``options`` (the workload's: optimizer, prompt_len, new_tokens).
    """

    scenario: str
    workload: str
    batch_size: int
    dtype: str
    device: str
    options: dict[str, Any]
    peak_bytes: int
    at_phase: str
    peak_t_index: int
    by_category_at_peak: dict[str, int]
    by_module_at_peak: list[dict[str, Any]]
    start_bytes: int
    kv_cache_bytes: int | None = None
    _phases: list[str] = field(default_factory=list, repr=False)
    _events: Any = field(default=None, repr=False)  # (phase index, category index, delta) arrays
    _timeline: Any = field(default=None, repr=False)

    @property
    def timeline(self) -> pd.DataFrame:
        """Live bytes by category after every event (module docstring)."""
        if self._timeline is None:
            self._timeline = _timeline_frame(self._phases, *self._events)
        return self._timeline

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``count --memory --json``, ``plan --json``); no timeline."""
        return {"scenario": self.scenario, "workload": self.workload, "batch_size": self.batch_size,
                "dtype": self.dtype, "device": self.device, "options": dict(self.options),
                "peak_bytes": self.peak_bytes, "at_phase": self.at_phase,
                "by_category_at_peak": dict(self.by_category_at_peak),
                "by_module_at_peak": [dict(m) for m in self.by_module_at_peak],
                "start_bytes": self.start_bytes, "kv_cache_bytes": self.kv_cache_bytes}

    def split_text(self) -> str:
        """``parameters 1.2 GB · gradients ...``: the non-zero categories at the peak."""
        from ..core.units import si

        return "   ".join(f"{k.replace('_', ' ')} {si(v, 'B')}" for k, v in self.by_category_at_peak.items() if v)


def _category_deltas(tracker: StorageTracker) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import numpy as np

    index = {c: i for i, c in enumerate(C.CATEGORIES)}
    cat_of = np.array([index[s.category] for s in tracker.storages], dtype=np.int64)
    ev = tracker.events
    storage = np.asarray(ev.storage, dtype=np.int64)
    return (np.asarray(ev.phase, dtype=np.int64), cat_of[storage] if len(storage) else storage,
            np.asarray(ev.delta, dtype=np.int64))


def _live(cats: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Live bytes by category after each event: (events, categories)."""
    import numpy as np

    m = np.zeros((len(delta), len(C.CATEGORIES)), dtype=np.int64)
    m[np.arange(len(delta)), cats] = delta
    return np.cumsum(m, axis=0)


def _timeline_frame(phases: list[str], phase: np.ndarray, cats: np.ndarray, delta: np.ndarray) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    live = _live(cats, delta)
    used = [i for i in range(len(C.CATEGORIES)) if live[:, i].any()]
    n = len(delta)
    return pd.DataFrame({
        "t_index": np.repeat(np.arange(n), len(used)),
        "phase": np.repeat(np.asarray(phases, dtype=object)[phase] if n else np.array([], dtype=object), len(used)),
        "category": np.tile(np.asarray([C.CATEGORIES[i] for i in used], dtype=object), n),
        "bytes": live[:, used].reshape(-1),
    }, columns=TIMELINE_COLUMNS)


def from_tracker(tracker: StorageTracker, *, kv_mark: str | None = None, **about: Any) -> MemoryForecast:
    """The forecast of a finished tracker: peak, split, owners, KV cache at its last mark."""
    import numpy as np

    phase, cats, delta = _category_deltas(tracker)
    live = _live(cats, delta)
    total = live.sum(axis=1)
    peak = int(np.argmax(total)) if len(total) else 0
    at_peak = live[peak] if len(total) else np.zeros(len(C.CATEGORIES), dtype=np.int64)
    setup = tracker.phases.index("setup")
    n_setup = int(np.argmax(phase != setup)) if (phase != setup).any() else len(phase)
    kv = None
    marks = [n for label, n in tracker.marks if label == kv_mark]
    if kv_mark is not None and marks:
        kv = int(live[marks[-1] - 1, C.CATEGORIES.index(C.KV_CACHE)]) if marks[-1] else 0
    return MemoryForecast(
        **about, peak_bytes=int(total[peak]) if len(total) else 0,
        at_phase=tracker.phases[int(phase[peak])] if len(total) else "setup", peak_t_index=peak,
        by_category_at_peak={c: int(v) for c, v in zip(C.CATEGORIES, at_peak)},
        by_module_at_peak=_owners_at(tracker, peak), start_bytes=int(total[n_setup - 1]) if n_setup else 0,
        kv_cache_bytes=kv, _phases=list(tracker.phases), _events=(phase, cats, delta))


def _owners_at(tracker: StorageTracker, t: int) -> list[dict[str, Any]]:
    """The owners holding the most bytes alive after event ``t`` (top :data:`TOP_MODULES`)."""
    sums: dict[str, int] = {}
    for s in tracker.storages:
        if s.born <= t and (s.freed is None or s.freed > t):
            sums[s.owner or "(model)"] = sums.get(s.owner or "(model)", 0) + s.nbytes
    top = sorted(sums.items(), key=lambda kv: -kv[1])[:TOP_MODULES]
    return [{"module": m, "bytes": b} for m, b in top]
