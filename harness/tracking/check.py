"""``history check``: is the latest run of each config a step away from the steady runs before it?

For each config (``config_key``, on the machine of its latest run) the runs of ``history.csv`` are
taken in time order; the latest ``k`` runs (``--last``, default 1) are judged against the
**window**: the ``N`` quiet runs just before them (``--window``, default 10). Disturbed runs
(``disturbed`` in history.csv: the machine was busy) are left out and counted.

The steady window
-----------------
A window may straddle an older step that was already reported: the model changed (its counted
work differs: exact), or its time moved (a new torch, a merged change). Both cut the window, which
then starts at the last such step:

* counted work (``flops``, ``macs``, ``params``) that changes between two runs of the window is a
  different model before it: exact, no statistics;
* a timing step is found by change-point detection on the window's log medians: ``ruptures``' PELT
  with the L2 cost (a shift in the mean), segments of at least :data:`STEP_MIN_RUNS` runs (one slow
  run is an outlier, not a level) and the penalty ``STEP_PENALTY * sd^2 * ln(n)`` (a BIC-like
  penalty for a mean shift in noise of known SD ``sd``, the between-run noise below); a step is kept
  when the medians on its two sides differ by more than the threshold.

With fewer than ``--min-runs`` (default :data:`MIN_BASELINE_RUNS`, 5) quiet runs left the answer is
``not enough history`` (exit 0): asv likewise waits for a new level to settle before it calls it.

The verdict
-----------
The latest runs' samples (``samples.csv``, the kept attempt; ``phase_samples.csv`` for a phase) are
pooled against the window's pooled samples: the ratio of the medians, with the within-run bootstrap
interval of :func:`harness.tracking.stats.median_ratio_within`. Separate runs carry between-run noise
their samples do not show, so the interval is widened (:func:`harness.tracking.stats.widen`) by the
log-SD ``sqrt(sd^2 (c_k/k + c_N/N) + e_c^2/k + e_b^2/N)``: ``sd`` is the between-run noise of one run
of this config, :func:`harness.tracking.compare.between_run_noise` (history, the latest runs left out;
its 90 % upper bound; the measured default with too little history); ``c = pi/2`` for a median of 3
or more runs (a median's variance), else 1; ``e`` a run's extra SD for the time its threads waited
for a CPU (:func:`harness.tracking.compare.disturbance_sd`, mean of squares over the runs). The run
medians' spread already holds their within-run noise, so counting it again is on the safe side.
When a run's directory or samples are gone, the history's p50 values are used instead (said so).

* **slower** (a regression, exit 1): the interval's lower bound is above 1 *and* the estimate is
  beyond the threshold (``--threshold``, 5 %); a change the noise cannot explain but smaller than
  the threshold is reported as ``slower ... (below the threshold)``, exit 0;
* **faster** symmetrically; **no significant change** when the whole interval is within the
  threshold; **inconclusive** otherwise;
* counted work that changed is exact evidence: ``counted work +3.1 %: the model changed`` is said
  whenever it differs, and when work and time both moved past the threshold the same way the verdict
  is ``slower (counted work +100%)`` whatever the noise (:func:`harness.tracking.compare.work_verdict`);
* a disturbed latest run gets no timed verdict (``inconclusive (the latest run was disturbed)``).

Counted metrics (``macs``, ``flops``, ``params``, ``peak_memory_bytes``) are exact: the latest run
against the run before the latest ``k``; more than the threshold is a regression.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import compare, history, stats
from ..errors import EXIT_OK, EXIT_REGRESSION, HarnessError

DEFAULT_WINDOW = 10
DEFAULT_LATEST = 1
MIN_BASELINE_RUNS = compare.MIN_HISTORY_RUNS  # below 5 runs the between-run noise is not known from history either
STEP_MIN_RUNS = 2  # a level needs two runs: one slow run is an outlier
STEP_PENALTY = 2.0  # PELT's penalty in units of sd^2 * ln(n)

NOT_ENOUGH = "not enough history"

#: metric -> (history column, higher is better, unit)
TIMED = {"latency_p50": ("latency_p50_s", False, "s"),
         "throughput_samples_per_s": ("throughput_samples_per_s", True, "samples/s"),
         "achieved_flop_per_s": ("achieved_flop_per_s", True, "FLOP/s")}
COUNTED = {"macs": "MAC", "flops": "FLOP", "params": "", "peak_memory_bytes": "B"}
ALIASES = {"latency": "latency_p50", "latency_p50_s": "latency_p50", "throughput": "throughput_samples_per_s"}
WORK_COLUMNS = ("flops", "macs", "params")


@dataclass(frozen=True)
class Metric:
    name: str  # latency_p50, <phase>_p50, achieved_flop_per_s, throughput_samples_per_s, macs, ...
    column: str  # the history column of one run's value
    kind: str  # "latency" (whole iteration), "phase", "rate" (work / latency), "counted"
    higher_is_better: bool
    unit: str
    phase: str | None = None  # kind "phase": the phase named by the column (a run's workload may map it)

    @property
    def noise_column(self) -> str:
        """The history column whose run-to-run spread is this metric's between-run noise."""
        return self.column if self.kind == "phase" else "latency_p50_s"


def metric_names(df: pd.DataFrame) -> list[str]:
    """Every metric a check of this history can take: timed, each phase column's, counted."""
    phases = [c[:-2] for c in df.columns if c.endswith("_p50_s") and c != "latency_p50_s"]
    return [*TIMED, *phases, *COUNTED]


def resolve_metric(name: str, df: pd.DataFrame) -> Metric:
    """The metric ``--metric NAME`` means in this history (a trailing ``_s`` is accepted); exit 2 otherwise."""
    n = ALIASES.get(name.strip(), name.strip())
    if n in TIMED:
        col, hib, unit = TIMED[n]
        return Metric(n, col, "latency" if col == "latency_p50_s" else "rate", hib, unit)
    if n in COUNTED:
        return Metric(n, n, "counted", False, COUNTED[n])
    for col in (n, f"{n}_s", f"{n}_p50_s"):  # decode_step_p50_s, decode_step_p50, decode_step
        if col.endswith("_p50_s") and col in df.columns and col != "latency_p50_s":
            return Metric(col[:-2], col, "phase", False, "s", phase=col[:-len("_p50_s")])
    raise HarnessError(f"--metric {name!r}: choose from {', '.join(metric_names(df))}")


@dataclass
class ConfigCheck:
    """The answer for one config."""

    config_key: str
    label: str
    device_name: str | None
    metric: str
    unit: str
    verdict: str
    regression: bool = False
    latest_runs: list[str] = field(default_factory=list)
    harness_commit: str | None = None  # the harness commit that made the latest run (env_key), not the model code's
    baseline_runs: list[str] = field(default_factory=list)
    baseline_value: float | None = None
    latest_value: float | None = None
    change: float | None = None  # latest / baseline - 1 of the metric
    low: float | None = None  # the interval of that change
    high: float | None = None
    level: float = stats.DEFAULT_LEVEL
    basis: str | None = None  # "samples" or "p50" (what the estimate was made of)
    noise_sd: float | None = None
    noise_source: str | None = None
    work_change: float | None = None
    disturbed_left_out: int = 0
    other_machines: int = 0
    steps: list[dict] = field(default_factory=list)  # the steps that cut the window: run_id, kind, change
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CheckResult:
    logdir: str
    metric: str
    threshold: float
    level: float
    window: int
    latest: int
    min_runs: int
    configs: list[ConfigCheck]

    @property
    def regressions(self) -> list[ConfigCheck]:
        return [c for c in self.configs if c.regression]

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.regressions else EXIT_OK

    def as_dict(self) -> dict:
        return {"logdir": self.logdir, "metric": self.metric, "threshold": self.threshold, "level": self.level,
                "window": self.window, "latest": self.latest, "min_runs": self.min_runs,
                "configs": [c.as_dict() for c in self.configs], "regression": bool(self.regressions),
                "regressed_configs": [c.config_key for c in self.regressions], "exit_code": self.exit_code}


# --------------------------------------------------------------------------- entry point

def check(logdir: str | os.PathLike, *, config: str | None = None, metric: str = "latency_p50",
          window: int = DEFAULT_WINDOW, latest: int = DEFAULT_LATEST, threshold: float = stats.DEFAULT_THRESHOLD,
          level: float = stats.DEFAULT_LEVEL, min_runs: int = MIN_BASELINE_RUNS) -> CheckResult:
    """Check every config of ``LOGDIR/history.csv`` (or ``config``: a config key, or a scenario name for
    all its configs). HarnessError (exit 2) for a missing or empty history, an unknown config or metric,
    or a window, latest count or minimum out of range."""
    logdir = Path(logdir)
    if latest < 1:
        raise HarnessError(f"--last must be at least 1, got {latest}")
    if min_runs < 2:
        raise HarnessError(f"--min-runs must be at least 2, got {min_runs}")
    if window < min_runs:
        raise HarnessError(f"--window {window} is smaller than --min-runs {min_runs}: a window can never hold "
                           "enough runs")
    if not 0.5 < level < 1:
        raise HarnessError(f"--level must be between 0.5 and 1, got {level}")
    path = history.history_path(logdir)
    if not path.exists():
        raise HarnessError(f"no history at {path}: no run has finished in --logdir {logdir} yet "
                           f"(run `python -m harness run SCENARIO --logdir {logdir}`)")
    df = history.read(logdir)
    if df.empty:
        raise HarnessError(f"{path} has no runs yet")
    m = resolve_metric(metric, df)
    keys = _configs(df, config, path)
    rows = compare._time_sorted(df)
    out = []
    for key in keys:
        sel = rows[rows["config_key"] == key]
        if not sel[m.column].notna().any():
            if config is not None and config == key:
                raise HarnessError(f"config {key} has no {m.column} values (its workload has no such phase?)")
            continue  # a phase of another workload
        out.append(check_config(logdir, sel, m, window=window, latest=latest, threshold=threshold, level=level,
                                min_runs=min_runs))
    if not out:
        raise HarnessError(f"no config in {path} has {m.column} values")
    return CheckResult(str(logdir), m.name, threshold, level, window, latest, min_runs, out)


def _configs(df: pd.DataFrame, config: str | None, path: Path) -> list[str]:
    """The config keys to check, in the order of their latest runs (oldest first)."""
    order = compare._time_sorted(df).drop_duplicates("config_key", keep="last")["config_key"].dropna().tolist()
    if config is None:
        return order
    if config in order:
        return [config]
    by_scenario = [k for k in order if history.parse_config_key(k).get("scenario") == config]
    if by_scenario:
        return by_scenario
    known = ", ".join(order[-5:])
    raise HarnessError(f"--config {config!r}: no such config key or scenario in {path} (recent keys: {known})")


# --------------------------------------------------------------------------- one config

def _flag(rows: pd.DataFrame) -> pd.Series:
    return rows["disturbed"].fillna(0).astype(bool)


def check_config(logdir: Path, rows: pd.DataFrame, m: Metric, *, window: int, latest: int, threshold: float,
                 level: float, min_runs: int) -> ConfigCheck:
    """The verdict for one config's time-sorted rows (module doc)."""
    res, rows = _start(rows, m, level)
    cand, before = rows.tail(latest), rows.iloc[:-latest] if len(rows) > latest else rows.iloc[:0]
    res.latest_runs = [str(x) for x in cand["run_id"]]
    res.harness_commit = _text(cand.iloc[-1]["git_commit"])
    if m.kind == "counted":
        return _counted(res, cand, before, m, threshold)
    quiet_c = cand[~_flag(cand)]
    sd = _noise(logdir, res, rows.iloc[-1], m)
    base = _steady(res, _window(res, before, cand, window), m, sd, threshold)
    res.baseline_runs = [str(x) for x in base["run_id"]]
    loaded_c = [_load(logdir, r, m) for _, r in quiet_c.iterrows()]
    loaded_b = [_load(logdir, r, m) for _, r in base.iterrows()]
    if len(base):
        _work_note(res, loaded_b[-1], _load(logdir, cand.iloc[-1], m), base.iloc[-1], cand.iloc[-1], m)
    if quiet_c.empty:
        res.verdict = ("inconclusive (the latest run was disturbed)" if latest == 1 else
                       f"inconclusive (all {latest} latest runs were disturbed)")
    elif len(base) < min_runs and not (res.work_change and len(base)):
        since = f" since the step at run {res.steps[-1]['run_id']}" if res.steps else ""
        res.notes.insert(0, f"{len(base)} quiet run(s) in the window{since}; {min_runs} needed")
    else:
        if len(base) < min_runs:  # counted work is exact evidence: it needs no settled level to be judged
            res.notes.append(f"judged on {len(base)} quiet run(s), fewer than {min_runs}, because the counted "
                             "work changed")
        _estimate(res, quiet_c, base, loaded_c, loaded_b, m, sd, threshold, level)
    return res


def _start(rows: pd.DataFrame, m: Metric, level: float) -> tuple[ConfigCheck, pd.DataFrame]:
    """The answer so far (``not enough history``) and the rows on the latest run's machine with a value."""
    last = rows.iloc[-1]
    dev = last["device_name"]
    same = rows[rows["device_name"] == dev] if isinstance(dev, str) else rows[rows["device_name"].isna()]
    res = ConfigCheck(config_key=str(last["config_key"]), label=history.row_label(last), device_name=dev,
                      metric=m.name, unit=m.unit, verdict=NOT_ENOUGH, level=level,
                      other_machines=len(rows) - len(same))
    if res.other_machines:
        res.notes.append(f"{res.other_machines} run(s) on other machines left out")
    return res, same[same[m.column].notna()]


def _window(res: ConfigCheck, before: pd.DataFrame, cand: pd.DataFrame, window: int) -> pd.DataFrame:
    """The last ``window`` quiet runs before the latest; the disturbed runs among them and the latest counted."""
    base = before[~_flag(before)].tail(window)
    span = before.iloc[before.index.get_loc(base.index[0]):] if len(base) else before
    res.disturbed_left_out = int(_flag(span).sum() + _flag(cand).sum())
    if res.disturbed_left_out:
        res.notes.append(f"{res.disturbed_left_out} disturbed run(s) left out")
    return base


def _noise(logdir: Path, res: ConfigCheck, last: pd.Series, m: Metric) -> float:
    """One run's between-run noise for this config (history without the latest runs), kept on ``res``."""
    of = {"config_key": res.config_key, "device_name": res.device_name, "device": _text(last["device"]),
          "threads": None if pd.isna(last["threads"]) else int(last["threads"])}
    sd, source, _ = compare.between_run_noise(logdir, of, exclude=set(res.latest_runs), column=m.noise_column)
    res.noise_sd, res.noise_source = sd, source
    return sd


def _work_note(res: ConfigCheck, b: _Run, c: _Run, brow: pd.Series, crow: pd.Series, m: Metric) -> None:
    res.work_change = _work_change(b, c, brow, crow, m)
    if res.work_change:
        res.notes.insert(0, f"counted work {res.work_change * 100:+.1f} %: the model changed")


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _steady(res: ConfigCheck, base: pd.DataFrame, m: Metric, sd: float, threshold: float) -> pd.DataFrame:
    """The window from its last step on: the last change of counted work, then the last timing step."""
    if len(base) > 1:
        work = base[list(WORK_COLUMNS)].astype("Float64").fillna(-1).to_numpy(dtype=float)
        changed = [i for i in range(1, len(work)) if (work[i] != work[i - 1]).any()]
        if changed:
            i = changed[-1]
            prev, now = base.iloc[i - 1], base.iloc[i]
            ch = _ratio(now["flops"], prev["flops"])
            res.steps.append({"run_id": str(now["run_id"]), "kind": "counted work", "change": ch})
            res.notes.append(f"window starts at run {now['run_id']}: counted work "
                             + (f"{ch * 100:+.1f} %" if ch is not None else "changed") + " there")
            base = base.iloc[i:]
    vals = base[m.column].to_numpy(dtype=float)
    if len(vals) and (vals > 0).all():
        cut = timing_steps(np.log(vals), sd, threshold)
        if cut:
            i = cut[-1]
            ch = float(np.median(vals[i:]) / np.median(vals[:i]) - 1)
            run_id = str(base.iloc[i]["run_id"])
            res.steps.append({"run_id": run_id, "kind": "timing", "change": ch})
            res.notes.append(f"window starts at run {run_id}: a step of {ch * 100:+.1f} % in {m.name} there")
            base = base.iloc[i:]
    return base


def timing_steps(x: np.ndarray, sd: float, threshold: float) -> list[int]:
    """Positions where a new level of the log values ``x`` starts (ruptures' PELT, L2 cost, segments of at least
    :data:`STEP_MIN_RUNS`, penalty ``STEP_PENALTY * sd^2 * ln(n)``), keeping steps larger than ``threshold``."""
    n = len(x)
    if n < 2 * STEP_MIN_RUNS:
        return []
    import ruptures as rpt

    pen = STEP_PENALTY * max(sd, compare.MIN_SD) ** 2 * math.log(n)
    bkps = rpt.Pelt(model="l2", min_size=STEP_MIN_RUNS, jump=1).fit(np.asarray(x, dtype=float).reshape(-1, 1)) \
        .predict(pen=pen)[:-1]
    edges = [0, *bkps, n]
    return [b for j, b in enumerate(bkps)
            if abs(np.median(x[b:edges[j + 2]]) - np.median(x[edges[j]:b])) > math.log1p(threshold)]


@dataclass
class _Run:
    summary: dict | None
    samples: list[float] | None


def _load(logdir: Path, row: pd.Series, m: Metric) -> _Run:
    """A run's summary and its samples of the metric (kept attempt; a phase's from phase_samples.csv);
    None where the directory or file is gone or unreadable."""
    rd = row["run_dir"]
    if not isinstance(rd, str) or not rd:
        return _Run(None, None)
    path = Path(rd) if os.path.isabs(rd) else logdir / rd
    try:
        run = compare.load_run_dir(path)
    except HarnessError:
        return _Run(None, None)
    if m.kind != "phase":
        return _Run(run.summary, run.samples)
    phase = _phase_of(run.summary, m)
    try:
        ps = pd.read_csv(path / "phase_samples.csv")
        vals = pd.to_numeric(ps.loc[ps["phase"] == phase, "latency_s"], errors="coerce").dropna()
        samples = [float(v) for v in vals if v > 0]
    except (OSError, KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        samples = []
    return _Run(run.summary, samples or None)


def _phase_of(summary: dict, m: Metric) -> str | None:
    """The phase a run's history column holds (generate's ``decode_step_p50_s`` is its phase ``decode``)."""
    from ..pipeline import workloads

    return workloads.history_columns(summary).get(m.column, m.phase)


def _work_change(b: _Run | None, c: _Run, brow: pd.Series, crow: pd.Series, m: Metric) -> float | None:
    """The latest run's counted work against the window's last run: flops + other_flops of the whole
    iteration (of the phase, for a phase metric) from summary.json, else history's flops."""
    def work(run: _Run | None, row: pd.Series) -> dict:
        s = run.summary if run is not None and run.summary else None
        if s is None:
            return {"flops": None if pd.isna(row["flops"]) else float(row["flops"])}
        if m.kind == "phase":
            ph = (s.get("phases") or {}).get(_phase_of(s, m)) or {}
            return {"flops": ph.get("flops"), "other_flops": ph.get("other_flops")}
        return s

    return compare.work_change(work(b, brow), work(c, crow))


def _ratio(a: Any, b: Any) -> float | None:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return None
    return a / b - 1 if b and math.isfinite(a) and math.isfinite(b) else None


def _efficiency(n: int) -> float:
    """Variance of a median of ``n`` runs over the variance of their mean (pi/2 for 3 or more)."""
    return math.pi / 2 if n >= 3 else 1.0


def _estimate(res: ConfigCheck, cand: pd.DataFrame, base: pd.DataFrame, lc: list[_Run], lb: list[_Run], m: Metric,
              sd: float, threshold: float, level: float) -> None:
    """The latest runs' pooled median against the window's, its interval, the verdict (module doc)."""
    k, n = len(cand), len(base)
    if all(r.samples for r in lc + lb):
        cs = [v for r in lc for v in r.samples]  # type: ignore[union-attr]
        bs = [v for r in lb for v in r.samples]  # type: ignore[union-attr]
        within = stats.median_ratio_within(bs, cs, level=level, seed=0)
        lat_b, lat_c = float(np.median(bs)), float(np.median(cs))
        res.basis = "samples"
    else:
        col = "latency_p50_s" if m.kind == "rate" else m.column
        lat_b, lat_c = float(base[col].median()), float(cand[col].median())
        r = lat_c / lat_b
        within = stats.Estimate(r, r, r, level, "p50", 1)
        res.basis = "p50"
        gone = sum(1 for r_ in lc + lb if not r_.samples)
        res.notes.append(f"samples missing for {gone} run(s): their recorded p50 used")
    e_c = [compare.disturbance_sd(compare.waiting_share(r.summary)) ** 2 for r in lc if r.summary]
    e_b = [compare.disturbance_sd(compare.waiting_share(r.summary)) ** 2 for r in lb if r.summary]
    extra = math.sqrt(sd ** 2 * (_efficiency(k) / k + _efficiency(n) / n)
                      + (float(np.mean(e_c)) / k if e_c else 0.0) + (float(np.mean(e_b)) / n if e_b else 0.0))
    lat = stats.widen(within, extra, "pooled samples + between-run noise")
    badness = lat  # > 1 is worse
    if m.kind == "rate":  # work (or batch) per latency: the latency ratio seen through the work ratio
        wb, wc = float(base.iloc[-1][_rate_work(m)]), float(cand.iloc[-1][_rate_work(m)])
        w = wc / wb if wb else 1.0
        badness = stats.Estimate(lat.ratio / w, lat.low / w, lat.high / w, level, lat.method, lat.n)
        res.baseline_value, res.latest_value = wb / lat_b, wc / lat_c
        res.low, res.high = 1 / badness.high - 1, (1 / badness.low - 1 if badness.low > 0 else math.inf)
    else:
        res.baseline_value, res.latest_value = lat_b, lat_c
        res.low, res.high = lat.low - 1, lat.high - 1
    res.change = res.latest_value / res.baseline_value - 1 if res.baseline_value else None
    v = stats.verdict(badness, threshold)
    big = badness.ratio >= 1 + threshold or badness.ratio <= 1 / (1 + threshold)
    if v in (stats.SLOWER, stats.FASTER) and not big:
        res.verdict = f"{v} (below the {threshold * 100:g} % threshold)"
    else:
        res.verdict, res.regression = v, v == stats.SLOWER
    if m.name != "achieved_flop_per_s":  # FLOP/s is work per time: left to the noise, as compare does
        word = compare.work_verdict(res.work_change, res.change, threshold, m.higher_is_better)
        if word is not None:
            res.verdict, res.regression = word, (res.work_change or 0) > 0


def _rate_work(m: Metric) -> str:
    return "flops" if m.name == "achieved_flop_per_s" else "batch_size"


def _counted(res: ConfigCheck, cand: pd.DataFrame, before: pd.DataFrame, m: Metric, threshold: float) -> ConfigCheck:
    """Counted metrics are exact: the latest run against the run before the latest ``k``."""
    if before.empty:
        res.notes.insert(0, "no earlier run of this config")
        return res
    b, c = float(before.iloc[-1][m.column]), float(cand.iloc[-1][m.column])
    res.baseline_runs = [str(before.iloc[-1]["run_id"])]
    res.baseline_value, res.latest_value, res.basis = b, c, "exact"
    res.change = c / b - 1 if b else None
    res.low = res.high = res.change
    what = {"peak_memory_bytes": "memory", "params": "parameters"}.get(m.name, "work")
    if not res.change:
        res.verdict = "unchanged (exact)"
    elif abs(res.change) <= threshold:
        res.verdict = f"{res.change * 100:+.1f} % (exact; below the {threshold * 100:g} % threshold)"
    else:
        res.verdict = f"{'more' if res.change > 0 else 'less'} {what} (exact)"
        res.regression = res.change > 0
    if res.change and m.name in ("macs", "flops", "params"):
        res.work_change = res.change
        res.notes.insert(0, f"counted {m.name} {res.change * 100:+.1f} %: the model changed")
    return res
