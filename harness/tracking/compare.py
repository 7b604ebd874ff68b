"""Compare two finished runs, honestly: separate runs carry between-run noise.

Two processes timing the same model a minute apart on a shared machine differ by up to
~30 % (measured: see :data:`DEFAULT_BETWEEN_RUN_SD`), and nothing in either run's own
samples shows it. So the interval of a ratio of two runs' medians is the within-run
bootstrap interval widened by the between-run noise of *one run* (``sd``, a log-scale SD)
twice over (two independent runs: ``sqrt(2) * sd``):

* ``sd`` comes from ``history.csv``: runs of the same config on the same machine
  (``config_key`` and ``device_name``), the root-mean-square of consecutive differences of
  ``log p50`` divided by ``sqrt(2)`` (a real change in that history inflates it: the safe
  direction), raised to its one-sided 90 % upper confidence bound (chi-square with one
  degree of freedom per difference), so a short, lucky history cannot make the noise look
  small (5 runs: x1.9; 11 runs: x1.4; 51 runs: x1.15); runs flagged ``disturbed`` are left out;
* with fewer than :data:`MIN_HISTORY_RUNS` (5) runs, the measured default.

**A disturbed machine.** A run records how much of its cores it got (``summary["contention"]``:
``cpu_share``, ``disturbed``). Each run adds its own uncertainty on top: a run that had its
cores a share ``s`` of the time may have every iteration stretched by up to ``1/s``, so its
median carries an extra log-SD of ``ln(1/s)`` (about ``1 - s`` near 1; 0 for ``s >= 1`` or when
not measured): the interval's log-SD is ``sqrt(2 sd^2 + e_b^2 + e_c^2)``. When either run is
flagged ``disturbed`` the timed verdicts are not given at all: ``inconclusive (disturbed: ...)``,
exit 0 (``strict``: exit 2); counted work and memory are still compared exactly.

Verdicts use :func:`harness.tracking.stats.verdict`; when the interval includes no change but the
estimate is large, the verdict is ``inconclusive`` and the hint points to ``harness ab``,
which cancels the between-run noise by interleaving.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import stats
from ..core.fsio import TMP_PREFIX
from ..core.text import short_exc
from ..core.units import si
from ..errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_REGRESSION, HarnessError

#: Between-run noise of one run's median latency on this class of machine (log-scale SD),
#: used when history has fewer than MIN_HISTORY_RUNS runs of the config. Measured on the
#: shared 2-vCPU CPU host on 2026-11-25 with back-to-back processes timing the same model
#: (100 iterations each; ``python benchmarks/regression_power.py --between-runs 30``):
#: 12 processes, default 2 threads: RMS of consecutive log differences / sqrt(2) = 0.104,
#: consecutive ratios 0.74x-1.33x; 30 processes, 1 thread: 0.079, 0.71x-1.36x (medians spread
#: over 54 % of their middle value); 30 processes, 2 threads: robust (MAD) SD 0.18, and one
#: process 130x slow (a neighbour on one core stalls the 2-thread OpenMP barrier). 0.10 covers
#: the ordinary cases: a two-run ratio's 98 % interval is about x/÷ exp(2.33 * sqrt(2) * 0.10) = 1.39.
DEFAULT_BETWEEN_RUN_SD = 0.10
#: The same for CPU runs on more than one thread. Measured again on 2026-12-02 (12 back-to-back
#: ``run`` processes of benchmarks/scenarios/linear512_40.py, 2 threads, every one judged quiet by
#: its contention probe): RMS of consecutive log differences / sqrt(2) = 0.21, because two of the
#: twelve ran whole-run 1.6-1.9x slower (p50 15.7-15.9 ms against 8.5-11.0 ms, their *minimum* as
#: slow as their median) with no run-queue delay, steal or switches to show for it: a slow mode of
#: the shared host that no probe inside the guest sees. In the verdict benchmark
#: (``benchmarks/contention.py --verdicts``) it made one quiet identical pair read 1.96x and be
#: called a regression with sd 0.10. With 0.22 a two-run ratio is only called outside about x/÷2.06.
DEFAULT_BETWEEN_RUN_SD_THREADED = 0.22


def default_sd(summary: dict) -> float:
    """The measured default between-run noise for a run's kind: :data:`DEFAULT_BETWEEN_RUN_SD`
    for one CPU thread or a GPU, :data:`DEFAULT_BETWEEN_RUN_SD_THREADED` for several CPU threads."""
    threads = summary.get("threads")
    threaded = summary.get("device", "cpu") == "cpu" and isinstance(threads, int) and threads > 1
    return DEFAULT_BETWEEN_RUN_SD_THREADED if threaded else DEFAULT_BETWEEN_RUN_SD
MIN_HISTORY_RUNS = 5  # 4 differences: below that the 90 % upper bound is > 1.8x the estimate itself
NOISE_CONFIDENCE = 0.90  # the noise used is the one-sided 90 % upper confidence bound of the estimate
MIN_SD = 0.002  # timer and scheduler granularity: no run-to-run noise is taken as smaller than 0.2 %

FAIL_ON_CHOICES = ("latency", "throughput", "memory")

REQUIRED_KEYS = ("scenario", "run_id", "latency_s")
TIMED_METRICS = ("latency", "throughput", "flop_rate")


def contention_of(summary: dict) -> tuple[float | None, bool]:
    """``(cpu_share, disturbed)`` from ``summary["contention"]`` (``(None, False)`` when not measured)."""
    c = summary.get("contention") or {}
    share = c.get("cpu_share")
    return (float(share) if _num(share) else None), bool(c.get("disturbed"))


def waiting_share(summary: dict) -> float | None:
    """The share of its CPU time a run's threads were kept waiting for a CPU: ``contention.run_delay_share``
    (run-queue delay, the probe's measure of contention), else ``1 - cpu_share`` where the kernel gives no
    schedstat; None when not measured. A low CPU share alone is not contention: OpenMP workers of a
    small model sleep (README, "Disturbed runs")."""
    c = summary.get("contention") or {}
    if _num(c.get("run_delay_share")):
        return float(c["run_delay_share"])
    return 1.0 - float(c["cpu_share"]) if _num(c.get("cpu_share")) else None


def disturbance_sd(waiting: float | None) -> float:
    """Extra log-SD of one run's median for a run whose threads waited for a CPU a share ``w`` of the
    time: ``ln(1/(1-w))`` (its iterations may be stretched by up to ``1/(1-w)``); 0 when unknown."""
    if waiting is None or waiting <= 0:
        return 0.0
    return -math.log(max(1.0 - waiting, 1e-3))


@dataclass
class LoadedRun:
    path: Path
    summary: dict
    samples: list[float] | None

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id"))


@dataclass
class MetricResult:
    name: str
    label: str
    baseline: float | None
    candidate: float | None
    change: float | None
    low: float | None
    high: float | None
    verdict: str
    regression: bool
    higher_is_better: bool

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "label", "baseline", "candidate", "change", "low", "high",
                                               "verdict", "regression", "higher_is_better")}


@dataclass
class Comparison:
    baseline: LoadedRun
    candidate: LoadedRun
    threshold: float
    level: float
    noise_sd: float
    noise_source: str
    noise_runs: int
    metrics: list[MetricResult]
    work_diff: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    mismatch: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    fail_on: tuple[str, ...] = ("latency",)
    disturbed: str | None = None  # "disturbed: baseline 97 % / candidate 41 % CPU share" when the verdict is refused
    strict: bool = False

    @property
    def regressed(self) -> list[str]:
        return [m.name for m in self.metrics if m.regression and m.name in self.fail_on]

    @property
    def exit_code(self) -> int:
        if self.disturbed and self.strict:
            return EXIT_BAD_INPUT
        return EXIT_REGRESSION if self.regressed else EXIT_OK

    def as_dict(self) -> dict:
        def side(r: LoadedRun) -> dict:
            s = r.summary
            share, disturbed = contention_of(s)
            return {k: s.get(k) for k in ("run_id", "scenario", "started_at", "config_key", "env_key", "git_commit",
                                          "batch_size", "dtype", "device", "threads", "tag", "params", "flops")} | {
                "path": str(r.path), "samples": len(r.samples) if r.samples else 0, "cpu_share": share,
                "disturbed": disturbed}

        return {
            "baseline": side(self.baseline),
            "candidate": side(self.candidate),
            "threshold": self.threshold,
            "level": self.level,
            "between_run_noise": {"sd_log": self.noise_sd, "source": self.noise_source, "runs": self.noise_runs},
            "work_differs": bool(self.work_diff),
            "work": {k: {"baseline": a, "candidate": b} for k, (a, b) in self.work_diff.items()},
            "config_differs": {k: {"baseline": a, "candidate": b} for k, (a, b) in self.mismatch.items()},
            "metrics": [m.as_dict() for m in self.metrics],
            "disturbed": self.disturbed,
            "strict": self.strict,
            "fail_on": list(self.fail_on),
            "regression": bool(self.regressed),
            "regressed_metrics": self.regressed,
            "exit_code": self.exit_code,
        }


# --------------------------------------------------------------------------- loading

def load_run_dir(path: str | os.PathLike) -> LoadedRun:
    """Load a finished run directory; one-line HarnessError (exit 2) for anything else."""
    p = Path(path)
    if p.is_file() and p.name == "summary.json":
        p = p.parent
    if not p.exists():
        raise HarnessError(f"run directory {p} does not exist")
    if not p.is_dir():
        raise HarnessError(f"{p} is a file, not a run directory")
    if p.name.startswith(TMP_PREFIX):
        raise HarnessError(f"{p} is a half-written run (a hidden {TMP_PREFIX} directory: the run did not finish); "
                           "compare finished runs only")
    sj = p / "summary.json"
    if not sj.exists() and (p / "ab.json").exists():
        raise HarnessError(f"{p} is a `harness ab` session, not a run: its verdict is in {p / 'ab.json'}")
    if not sj.exists():
        raise HarnessError(f"{p} has no summary.json: not a finished harness run (killed mid-way, or a foreign directory)")
    try:
        summary = json.loads(sj.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"{sj} is not readable JSON ({short_exc(exc, 100)})") from None
    if not isinstance(summary, dict) or any(k not in summary for k in REQUIRED_KEYS) \
            or not isinstance(summary.get("latency_s"), dict) or not _num(summary["latency_s"].get("p50")):
        raise HarnessError(f"{sj} is not a harness run summary (it lacks {', '.join(REQUIRED_KEYS)} or latency_s.p50)")
    from ..core.record import migrate

    summary = dict(migrate(summary, str(sj)))  # an older schema is read in today's
    samples = None
    sp = p / "samples.csv"
    if sp.exists():
        import pandas as pd

        try:
            df = kept_attempt(pd.read_csv(sp))
            vals = pd.to_numeric(df["latency_s"], errors="coerce").dropna()
            samples = [float(v) for v in vals if v > 0]
        except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
            raise HarnessError(f"{sp} is unreadable ({short_exc(exc, 100)})") from None
    return LoadedRun(path=p, summary=summary, samples=samples or None)


def kept_attempt(df):
    """The rows of samples.csv that the headline p50 uses: the ``kept`` attempt (``--retry-disturbed``
    re-times a disturbed loop and keeps every attempt in the file); a file without the column, all rows."""
    if "kept" not in df.columns:
        return df
    kept = df["kept"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    return df[kept]


def resolve(ref: str, logdir: str | os.PathLike) -> LoadedRun:
    """A run directory path, or a run id looked up in ``LOGDIR/history.csv`` and ``LOGDIR/*/<id>``."""
    logdir = Path(logdir)
    p = Path(ref)
    if p.exists() or "/" in ref or os.sep in ref:
        return load_run_dir(p)
    # a run id
    if ref.startswith(TMP_PREFIX):
        raise HarnessError(f"{ref} is a half-written run (hidden {TMP_PREFIX} name); compare finished runs only")
    from . import history

    hp = history.history_path(logdir)
    if hp.exists():
        df = history.read(logdir)
        rows = df[df["run_id"] == ref]
        if len(rows):
            rd = rows.iloc[-1]["run_dir"]
            if isinstance(rd, str) and rd:
                path = Path(rd) if os.path.isabs(rd) else logdir / rd
                if not path.exists():
                    raise HarnessError(f"run {ref} is in {hp} but its directory {path} is gone")
                return load_run_dir(path)
    hits = [d for d in logdir.glob(f"*/{ref}") if d.is_dir()] if logdir.is_dir() else []
    if len(hits) == 1:
        return load_run_dir(hits[0])
    if len(hits) > 1:
        raise HarnessError(f"run id {ref} is ambiguous in {logdir}: {', '.join(str(h) for h in hits)}")
    half = [d for d in logdir.glob(f"*/{TMP_PREFIX}{ref}")] if logdir.is_dir() else []
    if half:
        raise HarnessError(f"run {ref} never finished (only the half-written {half[0]} exists)")
    raise HarnessError(f"unknown run '{ref}': not a directory, and no run with that id in --logdir {logdir}")


def latest_pair(scenario: str, logdir: str | os.PathLike) -> tuple[str, str]:
    """Run ids of (previous, latest) runs of ``scenario`` with the latest run's config."""
    from . import history

    logdir = Path(logdir)
    hp = history.history_path(logdir)
    if not hp.exists():
        raise HarnessError(f"no history at {hp}: run `python -m harness run {scenario} --logdir {logdir}` first")
    df = history.read(logdir)
    name = Path(scenario).stem if scenario.endswith(".py") else scenario
    rows = df[df["scenario"] == name]
    if rows.empty:
        known = sorted(set(df["scenario"].dropna()))
        raise HarnessError(f"no runs of '{name}' in {hp}" + (f" (it has: {', '.join(known)})" if known else ""))
    rows = _time_sorted(rows)
    latest = rows.iloc[-1]
    same = rows[rows["config_key"] == latest["config_key"]]
    if len(same) < 2:
        raise HarnessError(f"only one run of {latest['config_key']} in {hp}; run it again, or compare two runs by id")
    return str(same.iloc[-2]["run_id"]), str(latest["run_id"])


def _time_sorted(df):
    import pandas as pd

    t = pd.to_datetime(df["started_at"], utc=True, errors="coerce", format="ISO8601")
    return df.assign(_t=t).sort_values(["_t", "run_id"], kind="stable", na_position="first").drop(columns="_t")


# --------------------------------------------------------------------------- noise

def between_run_noise(logdir: str | os.PathLike | None, summary: dict, exclude: set[str] = frozenset(),
                      default: float | None = None, column: str = "latency_p50_s") -> tuple[float, str, int]:
    """``(sd, source, runs)``: the between-run log SD of one run's median for this config on this machine
    (``column``: the history column of that median; a phase's ``<phase>_p50_s`` for a phase's noise)."""
    rows = None
    if logdir is not None:
        from . import history

        try:
            if history.history_path(logdir).exists():
                df = history.read(logdir)
                ck, dev = summary.get("config_key"), summary.get("device_name")
                rows = df[(df["config_key"] == ck) & ((df["device_name"] == dev) if dev else True)]
                rows = rows if column in rows.columns else rows.iloc[:0]
                rows = rows[~rows["run_id"].isin(list(exclude))]
                rows = rows[~rows["disturbed"].fillna(0).astype(bool)]  # a busy machine's runs say nothing of noise
        except HarnessError:
            rows = None
    n = 0 if rows is None else int(rows[column].notna().sum())
    if n < MIN_HISTORY_RUNS:
        return default if default is not None else default_sd(summary), (f"default for this machine (history has {n} other undisturbed run(s) of this config; "
                            f"{MIN_HISTORY_RUNS} needed)"), n
    p50 = _time_sorted(rows)[column].dropna().to_numpy(dtype=float)
    import numpy as np

    d = np.diff(np.log(p50[p50 > 0]))
    k = len(d)
    rms = math.sqrt(float(np.mean(d ** 2)) / 2.0)  # one run's SD from differences of consecutive runs
    sd = stats.sd_upper_bound(max(rms, MIN_SD), k, NOISE_CONFIDENCE)
    return sd, (f"history: {n} undisturbed run(s) of this config on this machine, run-to-run SD {rms * 100:.1f}% "
                f"(upper {NOISE_CONFIDENCE * 100:.0f}% bound used)"), n


# --------------------------------------------------------------------------- comparing

CONFIG_FIELDS = ("scenario", "batch_size", "dtype", "device", "threads", "tag")


def _check_pair(baseline: LoadedRun, candidate: LoadedRun, force: bool, same_work: bool) -> dict:
    """The config fields that differ; HarnessError (exit 2) for pairs that must not be compared."""
    b, c = baseline.summary, candidate.summary
    mismatch = {k: (b.get(k), c.get(k)) for k in CONFIG_FIELDS if b.get(k) != c.get(k)}
    if mismatch and not force:
        what = ", ".join(f"{k} {a!r} vs {z!r}" for k, (a, z) in mismatch.items())
        raise HarnessError(f"the runs differ in {what}; compare like with like, or pass --force")
    if baseline.run_id == candidate.run_id and baseline.path.resolve() == candidate.path.resolve():
        raise HarnessError(f"baseline and candidate are the same run ({baseline.run_id})")
    if same_work and not force:
        diff = [(k, b.get(k), c.get(k)) for k in ("params", "macs")
                if b.get(k) is not None and c.get(k) is not None and b.get(k) != c.get(k)]
        if diff:
            what = ", ".join(f"{k} {si(x)} vs {si(y)}" for k, x, y in diff)
            raise HarnessError(f"the two latest runs of '{b.get('scenario')}' are different networks ({what}); "
                               "compare two run ids of the same model, or pass --force")
    return mismatch


def disturbed_reason(b: dict, c: dict) -> str | None:
    """``disturbed: baseline 97 % / candidate 41 % CPU share`` when either run was disturbed, else None."""
    (bs, bd), (cs, cd) = contention_of(b), contention_of(c)
    if not (bd or cd):
        return None
    share = lambda x: "n/a" if x is None else f"{x * 100:.0f} %"  # noqa: E731
    return f"disturbed: baseline {share(bs)} / candidate {share(cs)} CPU share"


def _latency_estimate(baseline: LoadedRun, candidate: LoadedRun, sd: float, level: float, seed: int) -> stats.Estimate:
    """Within-run bootstrap of the p50 ratio, widened by the log-SD ``sqrt(2 sd^2 + e_b^2 + e_c^2)``
    (``e``: each run's :func:`disturbance_sd`)."""
    b, c = baseline.summary, candidate.summary
    bp50, cp50 = float(b["latency_s"]["p50"]), float(c["latency_s"]["p50"])
    r = cp50 / bp50
    if baseline.samples and candidate.samples:
        within = stats.median_ratio_within(baseline.samples, candidate.samples, level=level, seed=seed)
        within = stats.Estimate(r, within.low * r / within.ratio, within.high * r / within.ratio, level,
                                within.method, within.n)
    else:
        within = stats.Estimate(r, r, r, level, "summary", 1)
    eb, ec = disturbance_sd(waiting_share(b)), disturbance_sd(waiting_share(c))
    extra = math.sqrt(2 * sd ** 2 + eb ** 2 + ec ** 2)
    return stats.widen(within, extra, "within-run bootstrap + between-run noise")


def _timed_metrics(b: dict, c: dict, lat: stats.Estimate, threshold: float, level: float) -> list[MetricResult]:
    """Latency, and throughput and FLOP rate: the latency ratio seen through batch size and work."""
    bp50, cp50 = float(b["latency_s"]["p50"]), float(c["latency_s"]["p50"])
    out = [_metric("latency", "latency p50 (s)", bp50, cp50, lat, threshold, higher_is_better=False)]
    for name, label, bv, cv in (("throughput", "throughput (samples/s)", _tput(b), _tput(c)),
                                ("flop_rate", "achieved FLOP/s", b.get("achieved_flop_per_s"),
                                 c.get("achieved_flop_per_s"))):
        if _num(bv) and _num(cv) and bv and cv:
            k = (cv / bv) * lat.ratio  # 1 when batch sizes (or work) are equal
            inv = stats.Estimate(lat.ratio / k, lat.low / k, lat.high / k, level, lat.method, lat.n)
            out.append(_metric(name, label, float(bv), float(cv), inv, threshold, higher_is_better=True))
    return out


def compare_runs(baseline: LoadedRun, candidate: LoadedRun, *, logdir: str | os.PathLike | None = None,
                 threshold: float = stats.DEFAULT_THRESHOLD, level: float = stats.DEFAULT_LEVEL, force: bool = False,
                 noise_sd: float | None = None, fail_on: tuple[str, ...] = ("latency",), seed: int = 0,
                 same_work: bool = False, strict: bool = False) -> Comparison:
    """Compare two loaded runs. Different scenario/config raises HarnessError (exit 2) unless ``force``;
    so do different params or MACs when ``same_work`` (pairs picked by ``--scenario``).
    A disturbed run makes the timed verdicts ``inconclusive`` (``strict``: exit 2)."""
    b, c = baseline.summary, candidate.summary
    mismatch = _check_pair(baseline, candidate, force, same_work)
    work_diff = {k: (b.get(k), c.get(k)) for k in ("flops", "macs", "params")
                 if b.get(k) is not None and c.get(k) is not None and b.get(k) != c.get(k)}
    if noise_sd is None:
        sd, source, runs = between_run_noise(logdir, b, exclude={candidate.run_id})
    else:
        sd, source, runs = noise_sd, "given with --noise", 0
    lat = _latency_estimate(baseline, candidate, sd, level, seed)
    metrics = _timed_metrics(b, c, lat, threshold, level)
    _work_evidence(metrics, work_change(b, c), threshold)
    reason = disturbed_reason(b, c)
    if reason:
        for m in metrics:
            m.verdict, m.regression = f"inconclusive ({reason})", False
    bm, cm = b.get("peak_memory_bytes"), c.get("peak_memory_bytes")
    if _num(bm) and _num(cm) and bm > 0:
        r = cm / bm  # deterministic: counted, not timed
        metrics.append(_metric("memory", "peak memory (B)", bm, cm, stats.Estimate(r, r, r, level, "exact", 1),
                               threshold, higher_is_better=False))
    return Comparison(baseline, candidate, threshold, level, sd, source, runs, metrics, work_diff, mismatch,
                      tuple(fail_on), disturbed=reason, strict=strict)


def work_change(b: dict, c: dict) -> float | None:
    """The candidate's counted work against the baseline's: (flops + other_flops) ratio - 1, or None."""
    def work(s: dict) -> float | None:
        f, o = s.get("flops"), s.get("other_flops")
        total = (f if _num(f) else 0) + (o if _num(o) else 0)
        return float(total) if total > 0 else None

    bw, cw = work(b), work(c)
    return cw / bw - 1 if bw and cw else None


def _work_evidence(metrics: list[MetricResult], change: float | None, threshold: float) -> None:
    """Counted work is exact: when it grew by more than ``threshold`` and the measured latency grew
    by more than ``threshold`` too, the candidate is slower whatever the between-run noise (the
    noise could only have hidden the direction the exact count already gives); likewise faster.
    Latency and throughput verdicts say ``(counted work +X%)``; FLOP/s is left to the noise test."""
    if change is None or abs(change) <= threshold:
        return
    for m in metrics:
        if m.name not in ("latency", "throughput"):
            continue
        word = work_verdict(change, m.change, threshold, m.higher_is_better)
        if word is not None:
            m.verdict, m.regression = word, change > 0


def work_verdict(work: float | None, change: float | None, threshold: float, higher_is_better: bool) -> str | None:
    """``slower (counted work +X%)`` (or ``faster``) when counted work and a timed metric's ``change`` both
    moved past ``threshold`` the same way (:func:`_work_evidence`'s rule); None otherwise."""
    if work is None or change is None or abs(work) <= threshold:
        return None
    worse = change < -threshold if higher_is_better else change > threshold
    better = change > threshold if higher_is_better else change < -threshold
    if (work > 0 and worse) or (work < 0 and better):
        return f"{'slower' if work > 0 else 'faster'} (counted work {work:+.0%})"
    return None


def _metric(name, label, bval, cval, badness: stats.Estimate, threshold, *, higher_is_better: bool) -> MetricResult:
    """``badness`` is the ratio where > 1 is worse (latency ratio; inverse of a throughput ratio)."""
    v = stats.verdict(badness, threshold)
    regression = v == stats.SLOWER
    if higher_is_better:
        low, high = 1 / badness.high if badness.high > 0 else 0.0, 1 / badness.low if badness.low > 0 else math.inf
    else:
        low, high = badness.low, badness.high
    words = {stats.SLOWER: "worse", stats.FASTER: "better"}
    if name in ("latency", "throughput", "flop_rate"):
        words = {stats.SLOWER: "slower", stats.FASTER: "faster"}
    if name == "memory":
        words = {stats.SLOWER: "more memory", stats.FASTER: "less memory"}
    return MetricResult(name=name, label=label, baseline=bval, candidate=cval, change=cval / bval - 1 if bval else None,
                        low=low - 1, high=high - 1, verdict=words.get(v, v), regression=regression,
                        higher_is_better=higher_is_better)


def _tput(s: dict) -> float | None:
    t = s.get("throughput_samples_per_s")
    if _num(t):
        return float(t)
    p50, bs = s["latency_s"].get("p50"), s.get("batch_size")
    return bs / p50 if _num(p50) and _num(bs) and p50 > 0 else None


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_threshold(text: str | float) -> float:
    """``5%``, ``5`` (percent) or ``0.05``."""
    s = str(text).strip()
    try:
        if s.endswith("%"):
            v = float(s[:-1]) / 100
        else:
            v = float(s)
            if v >= 1:
                v = v / 100
    except ValueError:
        raise HarnessError(f"--threshold {text!r}: give a percentage like 5% or a fraction like 0.05") from None
    if not 0 < v < 1:
        raise HarnessError(f"--threshold {text!r}: must be between 0% and 100%")
    return v


def parse_fail_on(text: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in str(text).split(",") if t.strip())
    bad = [t for t in items if t not in FAIL_ON_CHOICES]
    if bad or not items:
        raise HarnessError(f"--fail-on {text!r}: choose from {', '.join(FAIL_ON_CHOICES)} (comma-separated)")
    return items


__all__ = ["DEFAULT_BETWEEN_RUN_SD", "Comparison", "LoadedRun", "MetricResult", "between_run_noise", "compare_runs",
           "latest_pair", "load_run_dir", "parse_fail_on", "parse_threshold", "resolve", "EXIT_BAD_INPUT"]
