"""A/B in one session: the verdict to trust on a noisy machine.

Two separate runs on a shared machine differ by up to ~30 % because the clock and the
neighbours move between processes. Timing the two sides in *alternating blocks* inside
one session cancels that drift: each block of the baseline is paired with the adjacent
block of the candidate, and the verdict comes from the pair ratios.

The package, by job:

* :mod:`.sides` — ``SCENARIO[:key=value,...]`` into a :class:`SideSpec` (a RunSpec plus label and python),
  and the check that both sides run the same workload;
* :mod:`.inprocess` — a side built in this process as ``run`` builds it (:class:`Prepared`), a block's
  timing (whole iterations and phases) and CPU share;
* :mod:`.worker` — the ``--isolate`` worker protocol (``python -m harness.tracking.ab --worker``);
* :mod:`.loop` — the ABBA loop over blocks, in one process or two workers;
* :mod:`.analysis` — the verdict (the workload's judged phase, else the whole iteration), every phase's
  ratio beside it, the refusal when too many block pairs were disturbed, the files;
* :mod:`.state` — :class:`AbConfig`, :class:`Blocks`, :class:`AbRun` passed between them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ...core.text import utc_iso
from ...errors import HarnessError
from .analysis import (BLOCK_QUANTILE, DISTURBED_BELOW_CPU_SHARE, MAX_DISTURBED_PAIR_SHARE, AbResult, analyze,
                       block_value, block_values, write_result)
from .inprocess import Prepared
from .loop import MIN_GENERATIONS, run_in_process, run_isolated
from .sides import SideSpec, check_sides, defaults_of, parse_side
from .state import (DEFAULT_BLOCK_S, DEFAULT_BUDGET_S, DEFAULT_GENERATION_S, DEFAULT_ISOLATE_BUDGET_S,
                    DEFAULT_MIN_PAIRS, AbConfig, AbRun, Blocks)


def _check(cfg: AbConfig, baseline: SideSpec, candidate: SideSpec) -> None:
    from .. import stats

    if cfg.method not in stats.METHODS:
        raise HarnessError(f"--method {cfg.method!r}: use one of {', '.join(stats.METHODS)}")
    if cfg.budget <= 0:
        raise HarnessError(f"--budget-s must be positive, got {cfg.budget}")
    if cfg.min_pairs < 1:
        raise HarnessError(f"--min-pairs must be at least 1, got {cfg.min_pairs}")
    if not cfg.isolate and (baseline.python or candidate.python):
        raise HarnessError("--baseline-python/--candidate-python need --isolate (each side in its own Python)")
    check_sides(baseline, candidate)


def run_ab(baseline: SideSpec, candidate: SideSpec, *, logdir: str | os.PathLike | None = "logs",
           progress: Callable[[str], None] | None = None, **options) -> AbResult:
    """Time ``baseline`` and ``candidate`` in alternating blocks and return the verdict.

    Both sides must run the same workload (exit 2 otherwise); what is judged is the workload's
    ``verdict_phase`` (a generation's decode step) or else the whole iteration, and every phase's
    ratio is reported beside it.

    ``options`` are :class:`AbConfig`'s fields (``budget_s``, ``threshold``, ``method``, ``level``,
    ``min_pairs``, ``block_s``, ``isolate``, ``generation_s``, ``fail_on``, ``seed``, ``count``).
    Writes ``LOGDIR/ab/<run_id>/`` (``ab_samples.csv``, ``ab_pairs.csv``, ``ab.json``) when
    ``logdir`` is given.
    """
    from datetime import datetime, timezone

    from ...core.fsio import new_run_id

    cfg = AbConfig(**options)
    cfg.budget_s = cfg.budget
    _check(cfg, baseline, candidate)
    if logdir is not None:
        from ...pipeline.run import check_logdir

        check_logdir(Path(logdir))
    started = datetime.now(timezone.utc)
    run = AbRun(baseline, candidate, cfg, run_id=new_run_id(started), started_at=utc_iso(started))
    (run_isolated if cfg.isolate else run_in_process)(run, progress)
    run.result = analyze(run.sides["baseline"], run.sides["candidate"], run.blocks, cfg, run_id=run.run_id,
                         started_at=run.started_at)
    if logdir is not None:
        run.result.path = write_result(run.result, Path(logdir))
    return run.result


__all__ = ["AbConfig", "AbResult", "AbRun", "Blocks", "Prepared", "SideSpec", "analyze", "block_value", "block_values",
           "check_sides", "defaults_of", "parse_side",
           "run_ab", "write_result", "BLOCK_QUANTILE", "DEFAULT_BLOCK_S", "DEFAULT_BUDGET_S", "DEFAULT_GENERATION_S",
           "DEFAULT_ISOLATE_BUDGET_S", "DEFAULT_MIN_PAIRS", "DISTURBED_BELOW_CPU_SHARE", "MAX_DISTURBED_PAIR_SHARE",
           "MIN_GENERATIONS"]
