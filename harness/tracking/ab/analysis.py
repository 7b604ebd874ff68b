"""The verdict of an A/B from its blocks, the refusal when the machine was too busy, and the files.

* A block pair's value is ``log(candidate block value / baseline block value)``; what a block's value
  is depends on what is judged, the same rule on both sides (:func:`block_values`): the workload's
  ``verdict_phase`` (a generation: its decode step) or, when it has none, the whole iteration (a
  forward, a training step). The whole iteration and every other phase get their own ratio, with
  the same interval method, reported beside the verdict (:func:`phase_ratios`).
* The interval and the decision rule are :mod:`harness.tracking.stats`'s; with ``isolate`` the
  interval is computed across generations (one Hodges-Lehmann estimate each).
* **Disturbed pairs.** A block is *disturbed* when its CPU share (CPU time of the timed loop /
  (wall x threads), see :mod:`.inprocess`) is below :data:`DISTURBED_BELOW_CPU_SHARE`: the side
  ran less than half of the block's wall time, so a neighbour held its core for most of it
  and the block's lower quartile (which ignores up to 3/4 of the iterations being hit) may
  no longer find undisturbed iterations. A pair is disturbed when either block is. When
  more than :data:`MAX_DISTURBED_PAIR_SHARE` of the pairs are disturbed the verdict is refused
  (``inconclusive``, with the reason): alternation cancels a neighbour that hits both halves of
  a pair alike, but once most pairs are hit, which half a burst lands in decides the ratio.
  Why these lines and not stricter ones: the measured power of ``ab`` (README) was 100/100 and
  0/100 at load averages 1.6-4 on the 2-vCPU host, where a busy loop gets 50-100 % of a core;
  a stricter rule would refuse verdicts that were right.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.samples import median, quantile
from ...errors import EXIT_OK, EXIT_REGRESSION
from .state import AbConfig, Blocks

BLOCK_QUANTILE = 0.25
DISTURBED_BELOW_CPU_SHARE = 0.5
MAX_DISTURBED_PAIR_SHARE = 0.5
ITERATION = "iteration"  # the whole iteration's key among the phases' block values
PAIR_COLUMNS = ["generation", "pair", "order", "baseline_block_s", "candidate_block_s"]
SAMPLE_COLUMNS = ["side", "generation", "pair", "block", "iteration", "latency_s"]
PHASE_SAMPLE_COLUMNS = ["side", "generation", "pair", "block", "iteration", "phase", "index", "latency_s"]


def block_value(v: list[float], q: float | None = None) -> float:
    """A block's value: its lower quartile (linear interpolation; the value itself for one sample).

    Interference on a shared machine only ever adds time (a neighbour takes the core for a
    few ms), so a low quantile tracks the undisturbed time of the block and ignores the
    iterations that were interrupted, where the median moves as soon as half are hit.
    """
    return quantile(sorted(v), BLOCK_QUANTILE if q is None else q)


def block_values(timing: Any, phases: tuple | list, verdict_phase: str | None) -> dict[str, float]:
    """A block's values (:class:`~.inprocess.BlockTiming`): ``"iteration"`` and each phase it ran.

    The whole iteration and every phase but the judged one: the lower quartile (:func:`block_value`)
    of its time per iteration (a phase's occurrences within one iteration summed). The judged phase
    (``verdict_phase``, a generation's ``decode``): the median of all its occurrences in the block —
    a decode step's context grows within a generation, so a low quantile would follow the first,
    shortest steps. A block without phase rows (one phase) has that phase's value = the iteration's.
    """
    out = {ITERATION: block_value(timing.samples)}
    if timing.phases is None:
        if len(phases) == 1:
            out[phases[0]] = out[ITERATION]
        return out
    per_iteration: dict[str, dict] = {}
    occurrences: dict[str, list[float]] = {}
    for it, phase, _, t in timing.phases:
        totals = per_iteration.setdefault(phase, {})
        totals[it] = totals.get(it, 0.0) + t
        occurrences.setdefault(phase, []).append(t)
    for phase, vals in occurrences.items():
        out[phase] = median(vals) if phase == verdict_phase else block_value(list(per_iteration[phase].values()))
    return out


def _median_or_none(v: list[float]) -> float | None:
    return median(v) if v else None


def is_disturbed(share: float | None) -> bool:
    return share is not None and share < DISTURBED_BELOW_CPU_SHARE


def contention(blocks: Blocks) -> dict:
    """How busy the machine was during the blocks: each side's median CPU share, the disturbed pairs."""
    measured = [(b, c) for b, c in blocks.shares if b is not None or c is not None]
    n_bad = sum(is_disturbed(b) or is_disturbed(c) for b, c in measured)
    share = n_bad / len(measured) if measured else None
    return {
        "source": "process CPU time (user + system, as getrusage) of the timed iterations / (wall x threads), per block",
        "baseline_cpu_share": _median_or_none([b for b, _ in measured if b is not None]),
        "candidate_cpu_share": _median_or_none([c for _, c in measured if c is not None]),
        "pairs_measured": len(measured),
        "disturbed_pairs": n_bad,
        "disturbed_blocks": {"baseline": sum(is_disturbed(b) for b, _ in measured),
                             "candidate": sum(is_disturbed(c) for _, c in measured)},
        "disturbed_pair_share": share,
        "block_disturbed_below_cpu_share": DISTURBED_BELOW_CPU_SHARE,
        "max_disturbed_pair_share": MAX_DISTURBED_PAIR_SHARE,
        "disturbed": share is not None and share > MAX_DISTURBED_PAIR_SHARE,
    }


@dataclass
class AbResult:
    run_id: str
    started_at: str
    baseline: dict
    candidate: dict
    block_iterations: int
    discard: int
    pairs: int
    generations: int
    isolate: bool
    budget_s: float
    elapsed_s: float
    setup_s: float
    method: str
    level: float
    threshold: float
    estimate: Any  # stats.Estimate of candidate/baseline latency
    verdict: str
    throughput: dict
    work_differs: dict
    pairs_needed: int | None
    samples: list = field(default_factory=list)  # (side, generation, pair, block, iteration, latency_s)
    pair_rows: list = field(default_factory=list)  # (generation, pair, order, base_value, cand_value)
    fail_on: tuple = ("latency",)
    path: Path | None = None
    contention: dict = field(default_factory=dict)
    inconclusive_reason: str | None = None
    shares: list = field(default_factory=list)  # (baseline_cpu_share, candidate_cpu_share) per pair
    workload: str | None = None  # what both sides ran (forward, generate, train)
    verdict_phase: str | None = None  # the judged phase (None: the whole iteration)
    judged: str = "iteration"  # what one judged value is called ("forward", "training step", "decode step")
    iteration: dict = field(default_factory=dict)  # the whole iteration's ratio (phase_entry)
    phases: dict = field(default_factory=dict)  # phase -> its ratio (phase_entry)
    phase_pairs: list = field(default_factory=list)  # per pair {name: (baseline, candidate)} block values
    phase_samples: list = field(default_factory=list)  # (side, generation, pair, block, iteration, phase, index, s)

    @property
    def regressed(self) -> list[str]:
        out = []
        if "latency" in self.fail_on and self.verdict == "slower":
            out.append("latency")
        if "throughput" in self.fail_on and self.throughput.get("verdict") == "slower":
            out.append("throughput")
        return out

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.regressed else EXIT_OK

    def as_dict(self) -> dict:
        """ab.json (README "A/B: the verdict to trust" documents every key)."""
        e = self.estimate
        return {
            "schema_version": 2, "run_id": self.run_id, "started_at": self.started_at,
            "baseline": self.baseline, "candidate": self.candidate, "isolate": self.isolate,
            "workload": self.workload, "judged_phase": self.verdict_phase, "judged_metric": self.judged,
            "block_iterations": self.block_iterations,
            "block_statistic": (f"quantile {BLOCK_QUANTILE} of each block (ab_pairs.csv)" if self.verdict_phase is None
                                else f"median of each block's {self.verdict_phase} phases (ab_pairs.csv)"),
            "iteration": self.iteration, "phases": self.phases,
            "discarded_per_block": self.discard, "pairs": self.pairs, "generations": self.generations,
            "budget_s": self.budget_s, "elapsed_s": self.elapsed_s, "setup_s": self.setup_s,
            "method": self.method, "level": self.level, "threshold": self.threshold,
            "ratio": e.ratio, "low": e.low, "high": e.high, "change": e.ratio - 1,
            "verdict": self.verdict, "inconclusive_reason": self.inconclusive_reason,
            "throughput": self.throughput, "work_differs": bool(self.work_differs), "work": self.work_differs,
            "contention": self.contention,
            "pairs_needed_for_threshold": self.pairs_needed, "fail_on": list(self.fail_on),
            "regression": bool(self.regressed), "regressed_metrics": self.regressed,
            "exit_code": self.exit_code, "path": str(self.path) if self.path else None,
        }


def _interval(rows: list[tuple], cfg: AbConfig):
    """The ratio candidate/baseline of ``(generation, baseline, candidate)`` block values and its interval
    (with ``isolate``: across generations, one Hodges-Lehmann estimate each); also the log pair ratios."""
    import numpy as np

    from .. import stats

    ok = [(g, b, c) for (g, b, c) in rows if b is not None and c is not None and b > 0 and c > 0]
    logs = np.array([math.log(c / b) for (_, b, c) in ok])
    if cfg.isolate:
        gen_ids = np.array([g for (g, _, _) in ok])
        per_gen = [stats.hodges_lehmann(logs[gen_ids == g], cfg.level)[0] for g in sorted(set(gen_ids.tolist()))]
        return stats.estimate_from_logs(per_gen, method=cfg.method, level=cfg.level, seed=cfg.seed), logs
    return stats.estimate_from_logs(logs, method=cfg.method, level=cfg.level, seed=cfg.seed), logs


def _estimate(blocks: Blocks, cfg: AbConfig):
    """The judged ratio's estimate and the pairs a threshold would need."""
    from .. import stats

    est, logs = _interval([(g, b, c) for (g, _, _, b, c) in blocks.pairs], cfg)
    need = stats.pairs_needed(logs, cfg.threshold, cfg.level) if not cfg.isolate else None
    return est, need


def phase_ratios(blocks: Blocks, cfg: AbConfig) -> dict:
    """``{name: Estimate}`` for the whole iteration and each phase both sides ran in every block pair."""
    out = {}
    for name in (ITERATION, *blocks.phases):
        rows = [(p[0], *v[name]) for p, v in zip(blocks.pairs, blocks.phase_pairs) if name in v]
        if rows and len(rows) == len(blocks.pairs):
            out[name] = _interval(rows, cfg)[0]
    return out


def phase_entry(est, name: str, bdesc: dict, cdesc: dict) -> dict:
    """One phase's (or the whole iteration's) ratio as ab.json holds it."""
    words = bdesc.get("words") or {}
    return {"word": words.get(name, name), "ratio": est.ratio, "low": est.low, "high": est.high, "pairs": est.n,
            "baseline_median_s": (bdesc.get("phase_median_s") or {}).get(name),
            "candidate_median_s": (cdesc.get("phase_median_s") or {}).get(name)}


def _throughput(est, bdesc: dict, cdesc: dict, threshold: float) -> dict:
    """Samples per second from the same pairs (batch sizes may differ)."""
    from .. import stats

    k_bs = cdesc["batch_size"] / bdesc["batch_size"]
    t_est = stats.Estimate(est.ratio / k_bs, est.low / k_bs, est.high / k_bs, est.level, est.method, est.n)
    return {"ratio": 1 / t_est.ratio if t_est.ratio else None,
            "low": 1 / t_est.high if t_est.high else None,
            "high": 1 / t_est.low if t_est.low else math.inf,
            "verdict": stats.verdict(t_est, threshold)}


def _describe_sides(bdesc: dict, cdesc: dict, blocks: Blocks, cont: dict) -> tuple[dict, dict]:
    """Each side's description with its medians (per iteration, per phase occurrence), throughput, CPU share."""
    bdesc, cdesc = dict(bdesc), dict(cdesc)
    for d, side in ((bdesc, "baseline"), (cdesc, "candidate")):
        vals = [x[5] for x in blocks.samples if x[0] == side]
        d["median_s"] = _median_or_none(vals)
        d["samples"] = len(vals)
        d["throughput_samples_per_s"] = d["batch_size"] / d["median_s"] if d["median_s"] else None
        d["cpu_share"] = cont[f"{side}_cpu_share"]
        d["phase_median_s"] = _phase_medians(blocks, side, d["median_s"])
    return bdesc, cdesc


def _phase_medians(blocks: Blocks, side: str, iteration_median: float | None) -> dict:
    """The median of every occurrence of each phase on one side (one phase: the iteration's median)."""
    out: dict = {ITERATION: iteration_median}
    if not blocks.phase_samples:
        out.update({p: iteration_median for p in blocks.phases[:1]} if len(blocks.phases) == 1 else {})
        return out
    by: dict[str, list[float]] = {}
    for x in blocks.phase_samples:
        if x[0] == side:
            by.setdefault(x[5], []).append(x[7])
    out.update({p: median(v) for p, v in by.items()})
    return out


def _work_differs(bdesc: dict, cdesc: dict) -> dict:
    bc, cc = bdesc.get("counts") or {}, cdesc.get("counts") or {}
    return {key: {"baseline": bc[key], "candidate": cc[key]} for key in ("flops", "macs", "params")
            if key in bc and key in cc and bc[key] != cc[key]}


def _typical_block(blocks: Blocks) -> int:
    """Iterations of the typical block (the plan is redone as the load changes)."""
    per_block: dict = {}
    for x in blocks.samples:
        if x[0] == "baseline":
            per_block[(x[1], x[2])] = per_block.get((x[1], x[2]), 0) + 1
    return int(median(per_block.values())) if per_block else blocks.k


def analyze(bdesc: dict, cdesc: dict, blocks: Blocks, config: AbConfig | None = None, *, run_id: str = "",
            started_at: str = "") -> AbResult:
    """The verdict from timed blocks; ``bdesc``/``cdesc`` describe the sides (``batch_size``, optional ``counts``)."""
    from .. import stats

    cfg = config or AbConfig()
    est, need = _estimate(blocks, cfg)
    cont = contention(blocks)
    bdesc, cdesc = _describe_sides(bdesc, cdesc, blocks, cont)
    ratios = {name: phase_entry(e, name, bdesc, cdesc) for name, e in phase_ratios(blocks, cfg).items()}
    verdict, throughput, reason = stats.verdict(est, cfg.threshold), _throughput(est, bdesc, cdesc, cfg.threshold), None
    if cont["disturbed"]:
        reason = (f"disturbed: {cont['disturbed_pairs']} of {cont['pairs_measured']} block pairs "
                  f"({cont['disturbed_pair_share'] * 100:.0f} %) had a side below "
                  f"{DISTURBED_BELOW_CPU_SHARE * 100:.0f} % CPU share (limit {MAX_DISTURBED_PAIR_SHARE * 100:.0f} %)")
        verdict = throughput["verdict"] = stats.INCONCLUSIVE
    return AbResult(
        run_id=run_id, started_at=started_at, baseline=bdesc, candidate=cdesc, block_iterations=_typical_block(blocks),
        discard=blocks.discard, pairs=len(blocks.pairs), generations=blocks.generations, isolate=cfg.isolate,
        budget_s=cfg.budget, elapsed_s=blocks.elapsed_s, setup_s=blocks.setup_s, method=cfg.method, level=cfg.level,
        threshold=cfg.threshold, estimate=est, verdict=verdict, throughput=throughput,
        work_differs=_work_differs(bdesc, cdesc), pairs_needed=need, samples=blocks.samples, pair_rows=blocks.pairs,
        fail_on=tuple(cfg.fail_on), contention=cont, inconclusive_reason=reason, shares=blocks.shares,
        workload=bdesc.get("workload"), verdict_phase=blocks.verdict_phase,
        judged=(bdesc.get("words") or {}).get(blocks.verdict_phase or ITERATION, blocks.verdict_phase or ITERATION),
        iteration=ratios.pop(ITERATION, {}), phases=ratios, phase_pairs=blocks.phase_pairs,
        phase_samples=blocks.phase_samples)


def pairs_frame(r: AbResult):
    """ab_pairs.csv: one row per block pair (the judged values, their ratio, the CPU shares) and, for a
    workload of several phases, ``<name>_baseline_s`` / ``<name>_candidate_s`` for the iteration and each phase."""
    import pandas as pd

    pr = pd.DataFrame(r.pair_rows, columns=PAIR_COLUMNS)
    pr["ratio"] = pr["candidate_block_s"] / pr["baseline_block_s"]
    shares = r.shares if len(r.shares) == len(pr) else [(None, None)] * len(pr)
    pr["baseline_cpu_share"] = [b for b, _ in shares]
    pr["candidate_cpu_share"] = [c for _, c in shares]
    pr["disturbed"] = [int(is_disturbed(b) or is_disturbed(c)) for b, c in shares]
    if r.phase_samples and len(r.phase_pairs) == len(pr):
        for name in (ITERATION, *r.phases):
            for i, side in enumerate(("baseline", "candidate")):
                pr[f"{name}_{side}_s"] = [v[name][i] if name in v else None for v in r.phase_pairs]
    return pr


def write_result(r: AbResult, logdir: Path) -> Path:
    """``LOGDIR/ab/<run_id>/``: ``ab_samples.csv``, ``ab_pairs.csv`` (with each block's CPU share),
    ``ab_phase_samples.csv`` (a workload of several phases) and ``ab.json``."""
    import pandas as pd

    from ...core.fsio import RunDir, atomic_write_csv, atomic_write_json

    rd = RunDir(logdir / "ab", r.run_id)
    try:
        atomic_write_csv(rd.path / "ab_samples.csv", pd.DataFrame(r.samples, columns=SAMPLE_COLUMNS))
        if r.phase_samples:
            atomic_write_csv(rd.path / "ab_phase_samples.csv",
                             pd.DataFrame(r.phase_samples, columns=PHASE_SAMPLE_COLUMNS))
        atomic_write_csv(rd.path / "ab_pairs.csv", pairs_frame(r))
        d = r.as_dict()
        d["path"] = str(rd.final)
        atomic_write_json(rd.path / "ab.json", d)
        return rd.commit()
    except BaseException:
        rd.abort()
        raise
