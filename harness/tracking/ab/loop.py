"""The A/B loop in one process or two workers: both sides built, warmed up, then alternated
(:mod:`.alternate`: blocks, ABBA pairs, budget).

* **Isolation** (``isolate=True``): each side runs in its own worker (:mod:`.worker`), the
  parent alternating blocks between the two exactly as in one process. Workers are replaced every
  ``generation_s`` seconds, so process-level effects (memory layout, which core) are
  re-drawn; with explicit thread counts both workers of a generation are pinned to the same
  randomly drawn cores (two processes left alone tend to sit on two different cores for a
  whole generation, and cores of a shared host differ). At least :data:`MIN_GENERATIONS`
  generations run (a 98 % interval across generations needs 7).
"""
from __future__ import annotations

import contextlib
import os
import random
import time
from typing import Callable

from ...core.samples import median
from .alternate import alternate, block_plan
from .inprocess import Prepared
from .sides import SideSpec
from .state import AbRun, Blocks
from .worker import Worker

MIN_GENERATIONS = 7


def what_is_judged(blocks: Blocks, a: dict, b: dict) -> None:
    """Both sides' phases (in order, each once) and the judged phase, from the sides' descriptions."""
    blocks.phases = tuple(dict.fromkeys([*a["phases"], *b["phases"]]))
    blocks.verdict_phase = a.get("verdict_phase")


def run_in_process(run: AbRun, progress: Callable[[str], None] | None = None) -> None:
    """Build both sides here, warm them up, alternate blocks; fills ``run.sides`` and ``run.blocks``;
    each side's workload teardown runs at the end, whatever happens."""
    t_setup = time.perf_counter()
    cfg, blocks = run.config, run.blocks
    with contextlib.ExitStack() as stack:
        A = stack.enter_context(Prepared(run.baseline, with_counts=cfg.count))
        B = stack.enter_context(Prepared(run.candidate, with_counts=cfg.count))
        what_is_judged(blocks, A.describe(), B.describe())
        A.warmup(), B.warmup()
        tA, tB = A.warmup(min_s=0.05), B.warmup(min_s=0.05)  # again, now that both are resident
        blocks.setup_s = time.perf_counter() - t_setup
        blocks.k, blocks.discard = block_plan(tA, tB, cfg.block_s)
        blocks.elapsed_s = alternate(A.block, B.block, blocks, cfg, progress=progress)
        run.sides = {"baseline": A.describe(), "candidate": B.describe()}


def generation_cpus(a: SideSpec, b: SideSpec, rng: random.Random) -> list[int] | None:
    """The cores both workers of a generation are pinned to: the same set for both sides (so a
    slower core or a busy sibling hyperthread hits both halves of every pair), drawn anew each
    generation. Sides without an explicit thread count keep every core."""
    ta, tb = a.spec.threads, b.spec.threads
    if not hasattr(os, "sched_getaffinity") or ta is None or tb is None:
        return None
    avail = sorted(os.sched_getaffinity(0))
    n = max(ta, tb)
    if n >= len(avail):
        return None
    return sorted(rng.sample(avail, n))


def _first_generation(run: AbRun, A: Worker, B: Worker, ia: dict, ib: dict) -> None:
    """Keep the sides' descriptions; time them one after the other for the block plan
    (they warmed up at the same time)."""
    for side, info in (("baseline", ia), ("candidate", ib)):
        run.sides[side] = {k: v for k, v in info.items() if k not in ("ready", "iter_s", "pid")}
    what_is_judged(run.blocks, run.sides["baseline"], run.sides["candidate"])
    for _ in range(2):
        ta, tb = median(A.block(3, 1).samples), median(B.block(3, 1).samples)
    run.blocks.k, run.blocks.discard = block_plan(ta, tb, run.config.block_s)


def run_isolated(run: AbRun, progress: Callable[[str], None] | None = None) -> None:
    """Alternate blocks between two worker processes, replaced every ``generation_s``."""
    t_start = time.perf_counter()
    cfg, blocks = run.config, run.blocks
    A, B = Worker(run.baseline), Worker(run.candidate)
    try:
        A.loaded(), B.loaded()
        setup = time.perf_counter() - t_start
        t_loop, gen, rng = time.perf_counter(), 0, random.Random(os.getpid())
        while True:
            t_gen = time.perf_counter()
            cpus = generation_cpus(run.baseline, run.candidate, rng)
            A.spawn(cfg.count and gen == 0, gen, cpus)
            B.spawn(cfg.count and gen == 0, gen, cpus)
            ia, ib = A.ready(), B.ready()  # both build and warm up at once: not timed
            if gen == 0:
                _first_generation(run, A, B, ia, ib)
            setup += time.perf_counter() - t_gen
            if progress:
                progress(f"generation {gen + 1}, {len(blocks.pairs)} pairs, "
                         f"{time.perf_counter() - t_loop:.0f} of {cfg.budget:.0f} s")
            alternate(A.block, B.block, blocks, cfg, generation=gen, stop_at=time.perf_counter() + cfg.generation_s)
            A.end_child(), B.end_child()
            gen += 1
            spent = time.perf_counter() - t_loop
            if gen >= MIN_GENERATIONS and spent + spent / gen > cfg.budget and len(blocks.pairs) >= cfg.min_pairs:
                break
    finally:
        A.close()
        B.close()
    blocks.generations, blocks.setup_s, blocks.elapsed_s = gen, setup, time.perf_counter() - t_start
