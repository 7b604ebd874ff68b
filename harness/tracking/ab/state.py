"""The state of one A/B run, passed between the loop and the analysis.

:class:`AbConfig` is what the user asked for; :class:`Blocks` is what the loop measured
(every timed iteration, one value per block pair, each block's CPU share); :class:`AbRun`
holds both sides and, at the end, the :class:`~harness.tracking.ab.analysis.AbResult`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .sides import SideSpec

DEFAULT_BUDGET_S = 20.0
DEFAULT_ISOLATE_BUDGET_S = 40.0
DEFAULT_BLOCK_S = 0.015
DEFAULT_MIN_PAIRS = 8
DEFAULT_GENERATION_S = 2.0


@dataclass
class AbConfig:
    """The options of an A/B run (``budget_s`` None: 20 s, 40 s with ``isolate``)."""

    budget_s: float | None = None
    threshold: float = 0.05
    method: str = "hl"
    level: float = 0.98
    min_pairs: int = DEFAULT_MIN_PAIRS
    block_s: float = DEFAULT_BLOCK_S
    isolate: bool = False
    generation_s: float = DEFAULT_GENERATION_S
    fail_on: tuple = ("latency",)
    seed: int = 0
    count: bool = True

    @property
    def budget(self) -> float:
        if self.budget_s is not None:
            return self.budget_s
        return DEFAULT_ISOLATE_BUDGET_S if self.isolate else DEFAULT_BUDGET_S


@dataclass
class Blocks:
    """What the alternating loop measured.

    ``samples``: ``(side, generation, pair, block, iteration, latency_s)`` per timed iteration;
    ``pairs``: ``(generation, pair, order, baseline_block_s, candidate_block_s)`` per block pair
    (each block's value, :func:`~harness.tracking.ab.analysis.block_value`);
    ``shares``: ``(baseline_cpu_share, candidate_cpu_share)`` per block pair (None: not measured);
    ``k``/``discard``: the first block plan (timed / untimed iterations per block);
    ``phases``: the workload's phases (both sides'); ``verdict_phase``: the phase whose values ``pairs``
    hold (None: the whole iteration); ``phase_pairs``: per block pair, ``{name: (baseline, candidate)}``
    block values of the whole iteration (``"iteration"``) and of each phase;
    ``phase_samples``: ``(side, generation, pair, block, iteration, phase, index, latency_s)`` per timed
    phase occurrence (workloads of several phases only).
    """

    samples: list[tuple] = field(default_factory=list)
    pairs: list[tuple] = field(default_factory=list)
    shares: list[tuple] = field(default_factory=list)
    phases: tuple = ()
    verdict_phase: str | None = None
    phase_pairs: list[dict] = field(default_factory=list)
    phase_samples: list[tuple] = field(default_factory=list)
    k: int = 1
    discard: int = 0
    generations: int = 1
    setup_s: float = 0.0
    elapsed_s: float = 0.0


@dataclass
class AbRun:
    """One A/B run from request to result: ``sides`` holds each side's description once built."""

    baseline: SideSpec
    candidate: SideSpec
    config: AbConfig
    blocks: Blocks = field(default_factory=Blocks)
    sides: dict[str, dict] = field(default_factory=dict)
    run_id: str = ""
    started_at: str = ""
    result: Any = None
