"""Eager vs compiled in one run: the compiled model timed against itself run eagerly, interleaved.

``run X --compile`` answers "did compiling pay off?" on the spot. The model is compiled in place
(:mod:`.compiled`), so the eager side is the very same module with its compiled call switched off
(:func:`.compiled.eager`): same weights, same inputs, same workload, same process. The two sides
are timed in alternating blocks, ABBA, by the A/B loop (:mod:`harness.tracking.ab.alternate`) for
``budget_s`` seconds after a warm-up of each side, and judged as ``ab`` judges: the ratio
compiled/eager of the workload's judged phase (a generation's decode step) or else the whole
iteration, its Hodges-Lehmann interval at 98 %, a verdict against a 5 % threshold, and no
verdict when too many block pairs were disturbed. The record is summary.json
``compile.vs_eager`` (README "Compiled models").
"""
from __future__ import annotations

from typing import Any, Callable

from .spec import DEFAULT_VS_EAGER_S

def _side(workload: Any, prep: Any, name: str) -> dict:
    """A side as the A/B analysis reads it."""
    return {"workload": workload.name, "phases": list(workload.phases), "verdict_phase": workload.verdict_phase,
            "words": {"iteration": workload.word, **{p: workload.phase_word(p) for p in workload.phases}},
            "batch_size": prep.batch_size, "side": name, "counts": {}}


def compare(workload: Any, prep: Any, budget_s: float = DEFAULT_VS_EAGER_S,
            progress: Callable[[str], None] | None = None) -> dict:
    """Time the compiled model (candidate) against itself run eagerly (baseline); ``compile.vs_eager``."""
    from ..tracking.ab.alternate import alternate, block_plan
    from ..tracking.ab.analysis import analyze
    from ..tracking.ab.blocks import timed_block, warm_up
    from ..tracking.ab.state import AbConfig, Blocks
    from .compiled import eager
    from .measure import synchronizer

    sync, phased = synchronizer(prep.device), len(workload.phases) > 1

    def compiled_block(k: int, discard: int):
        return timed_block(workload, prep, sync, k, discard, phased=phased)

    def eager_block(k: int, discard: int):
        with eager(prep.model, workload):
            return timed_block(workload, prep, sync, k, discard, phased=phased)

    cfg = AbConfig(budget_s=budget_s, count=False)
    blocks = Blocks(phases=tuple(workload.phases), verdict_phase=workload.verdict_phase)
    blocks.k, blocks.discard = block_plan(warm_up(eager_block), warm_up(compiled_block), cfg.block_s)
    blocks.elapsed_s = alternate(eager_block, compiled_block, blocks, cfg, progress=progress)
    return record(analyze(_side(workload, prep, "eager"), _side(workload, prep, "compiled"), blocks, cfg))


def record(r: Any) -> dict:
    """``compile.vs_eager`` from the A/B result: ``ratio`` = compiled / eager time of the judged
    phase with its interval, ``speedup`` = eager / compiled (its interval the inverse), the verdict
    for the compiled model (``faster`` = compiling paid off), each side's median, pairs and budget."""
    e = r.estimate
    inv = (lambda x: 1 / x if x else None)  # noqa: E731
    return {"judged": r.judged, "iteration_word": (r.baseline.get("words") or {}).get("iteration"), "ratio": e.ratio, "low": e.low, "high": e.high, "level": r.level,
            "speedup": inv(e.ratio), "speedup_low": inv(e.high), "speedup_high": inv(e.low),
            "verdict": r.verdict, "threshold": r.threshold, "inconclusive_reason": r.inconclusive_reason,
            "eager_median_s": r.baseline.get("median_s"), "compiled_median_s": r.candidate.get("median_s"),
            "phases": {name: {"ratio": p["ratio"], "low": p["low"], "high": p["high"]}
                       for name, p in r.phases.items()},
            "pairs": r.pairs, "block_iterations": r.block_iterations, "budget_s": r.budget_s,
            "elapsed_s": r.elapsed_s, "disturbed": bool(r.contention.get("disturbed"))}
