"""The alternating loop itself: blocks of two sides in ABBA order, whatever times a block.

* **Blocks.** After a warm-up (at least 3 iterations and 0.2 s per side) the iteration
  time — a whole iteration, even where one phase is judged (a whole generation, not a decode
  step) — sets the block length ``k`` (about ``block_s`` = 15 ms of work; at least one
  iteration). When an iteration is short (< 10 ms) each block first runs one untimed
  iteration, so the other side's cache footprint does not land in the samples. The plan
  is redone every 16 pairs from the latest block values, as a neighbour's load comes and
  goes. Short blocks cancel more of a neighbour's bursts (they hit both halves of a pair);
  measured on the shared 2-vCPU host with a 1 ms model, 5 s of pairs gave a 98 % interval
  of ±0.4–0.6 % for blocks of 2–16 iterations, ±0.9 % for 32, and ±1.2 % for single
  iterations without the untimed one (cold caches make those noisy).
* **Pairs.** Pair ``i`` runs AB when ``i`` is even, BA when odd (ABBA...), so a linear drift
  and any "who ran second" effect cancel.
* **Budget.** Blocks continue until ``budget_s`` of timing is spent (and at least
  ``min_pairs`` pairs exist), so a slow model gets fewer, longer verdicts.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from ...core.samples import median
from .analysis import ITERATION, block_values
from .blocks import BlockTiming
from .state import AbConfig, Blocks

REPLAN_PAIRS = 16
DISCARD_BELOW_S = 0.01

BlockFn = Callable[[int, int], BlockTiming]


def block_plan(tA: float, tB: float, block_s: float) -> tuple[int, int]:
    """``(k, discard)``: ``k = clamp(round(block_s / max(tA, tB)), 1, 1000)`` timed iterations;
    one untimed iteration first when an iteration is under 10 ms."""
    t = max(tA, tB, 1e-7)
    k = int(min(max(round(block_s / t), 1), 1000))
    return k, 1 if t < DISCARD_BELOW_S else 0



def _one_pair(block_a: BlockFn, block_b: BlockFn, blocks: Blocks, k: int, discard: int, generation: int) -> None:
    """Run pair number ``len(blocks.pairs)`` (AB when even, BA when odd) and record it: every sample,
    the judged values (``pairs``) and every phase's values (``phase_pairs``)."""
    pair = len(blocks.pairs)
    first_a = pair % 2 == 0
    res: dict[str, BlockTiming] = {}
    for side in (("baseline", "candidate") if first_a else ("candidate", "baseline")):
        res[side] = (block_a if side == "baseline" else block_b)(k, discard)
    for side in ("baseline", "candidate"):
        block = 2 * pair + (0 if (side == "baseline") == first_a else 1)
        for i, v in enumerate(res[side].samples):
            blocks.samples.append((side, generation, pair, block, i, v))
        for it, phase, index, v in res[side].phases or ():
            blocks.phase_samples.append((side, generation, pair, block, it, phase, index, v))
    va, vb = (block_values(res[s], blocks.phases, blocks.verdict_phase) for s in ("baseline", "candidate"))
    judged = blocks.verdict_phase or ITERATION
    blocks.pairs.append((generation, pair, "AB" if first_a else "BA", va.get(judged), vb.get(judged)))
    blocks.phase_pairs.append({name: (va[name], vb[name]) for name in va if name in vb})
    blocks.shares.append((res["baseline"].cpu_share, res["candidate"].cpu_share))


def alternate(block_a: BlockFn, block_b: BlockFn, blocks: Blocks, cfg: AbConfig, *, generation: int = 0,
              stop_at: float | None = None, progress: Callable[[str], None] | None = None) -> float:
    """ABBA-alternate blocks until the budget (or ``stop_at``, a perf_counter deadline) is reached.

    Every REPLAN_PAIRS pairs the block length is planned again from the latest blocks' whole-iteration
    values (both sides always get the same length within a pair, so ratios stay comparable)."""
    t0 = time.perf_counter()
    deadline = stop_at if stop_at is not None else t0 + cfg.budget
    k, discard, pair0 = blocks.k, blocks.discard, len(blocks.pairs)
    last_report, recent = t0, []
    while True:
        if len(recent) >= 2 * REPLAN_PAIRS:  # re-plan the block length as the machine's load changes
            k, discard = block_plan(median(recent[0::2]), median(recent[1::2]), cfg.block_s)
            recent.clear()
        _one_pair(block_a, block_b, blocks, k, discard, generation)
        recent += blocks.phase_pairs[-1][ITERATION]
        now = time.perf_counter()
        if progress and now - last_report > 0.5:
            last_report = now
            progress(progress_text(blocks.pairs, now - t0 if stop_at is None else None, cfg))
        if now >= deadline and (stop_at is not None or len(blocks.pairs) - pair0 >= cfg.min_pairs):
            break
    return time.perf_counter() - t0


def progress_text(pair_rows: list[tuple], elapsed: float | None, cfg: AbConfig) -> str:
    from .. import stats

    logs = [math.log(c / b) for (_, _, _, b, c) in pair_rows if b and c and b > 0 and c > 0]
    txt = f"{len(pair_rows)} pairs"
    if elapsed is not None:
        txt += f", {elapsed:.1f} of {cfg.budget:.0f} s"
    if len(logs) >= 8:
        e = stats.estimate_from_logs(logs[-3000:], method="hl", level=cfg.level)
        txt += f", candidate/baseline {e.ratio:.3f} [{e.low:.3f}, {e.high:.3f}]"
    return txt
