"""A/B in one session: the verdict to trust on a noisy machine.

Two separate runs on a shared machine differ by up to ~30 % because the clock and the
neighbours move between processes. Timing the two sides in *alternating blocks* inside
one session cancels that drift: each block of the baseline is paired with the adjacent
block of the candidate, and the verdict comes from the pair ratios.

Design
------
* **Blocks.** After a warm-up (at least 3 iterations and 0.2 s per side) the iteration
  time sets the block length ``k`` (about ``block_s`` = 15 ms of work; at least one
  iteration). When an iteration is short (< 10 ms) each block first runs one untimed
  iteration, so the other side's cache footprint does not land in the samples. The plan
  is redone every 16 pairs from the latest block medians, as a neighbour's load comes and
  goes. Short blocks cancel more of a neighbour's bursts (they hit both halves of a pair);
  measured on the shared 2-vCPU host with a 1 ms model, 5 s of pairs gave a 98 % interval
  of ±0.4–0.6 % for blocks of 2–16 iterations, ±0.9 % for 32, and ±1.2 % for single
  iterations without the untimed one (cold caches make those noisy).
* **Pairs.** Pair ``i`` runs AB when ``i`` is even, BA when odd (ABBA...), so a linear drift
  and any "who ran second" effect cancel. The pair's value is
  ``log(q25(candidate block) / q25(baseline block))``, ``q25`` the block's lower quartile
  (:func:`block_value`: interference only adds time, so a low quantile ignores the
  interrupted iterations; measured on the shared host, pair log ratios had a robust SD of
  0.9–2.3 % with the lower quartile against 1.5–3.9 % with the block median).
* **Budget.** Blocks continue until ``budget_s`` of timing is spent (and at least
  ``min_pairs`` pairs exist), so a slow model gets fewer, longer verdicts.
* **Interval and verdict.** :mod:`harness.tracking.stats` (Hodges–Lehmann with the signed-rank
  interval by default; 98 %); the decision rule is :func:`harness.tracking.stats.verdict`.
* **Isolation** (``isolate=True``): each side runs in its own worker process (its own
  Python if given), the parent alternating blocks between the two exactly as above via
  a line protocol on the workers' stdin/stdout (the idle one sleeps in ``read``).
  Workers are replaced every ``generation_s`` seconds (forked from a per-side zygote that
  imported torch once, see :class:`Worker`), so process-level effects (memory layout,
  which core) are re-drawn; with explicit thread counts both workers of a generation are
  pinned to the same randomly drawn cores (two processes left alone tend to sit on two
  different cores for a whole generation, and cores of a shared host differ); since pairs inside one generation share them, the interval is
  computed across *generations* (one Hodges–Lehmann estimate each), which needs at least
  7 of them for a 98 % interval.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..errors import EXIT_OK, EXIT_REGRESSION, HarnessError

DEFAULT_BUDGET_S = 20.0
DEFAULT_ISOLATE_BUDGET_S = 40.0
DEFAULT_BLOCK_S = 0.015
DEFAULT_MIN_PAIRS = 8
DEFAULT_GENERATION_S = 2.0
MIN_GENERATIONS = 7
REPLAN_PAIRS = 16
BLOCK_QUANTILE = 0.25
DISCARD_BELOW_S = 0.01
WARMUP_MIN_ITERS = 3
WARMUP_MIN_S = 0.2
SIDE_KEYS = {"batch_size": "batch_size", "bs": "batch_size", "dtype": "dtype", "device": "device",
             "threads": "threads", "channels_last": "channels_last", "label": "label", "python": "python"}
ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- sides

@dataclass
class SideSpec:
    """One side of an A/B: a scenario and its options (``None`` = the scenario's default)."""

    scenario: str
    batch_size: int | None = None
    dtype: str | None = None
    device: str | None = None
    threads: int | None = None
    channels_last: bool = False
    label: str | None = None
    python: str | None = None

    def options(self) -> dict:
        return {k: getattr(self, k) for k in ("batch_size", "dtype", "device", "threads", "channels_last")}

    def to_json(self) -> dict:
        return {"scenario": self.scenario, **self.options(), "label": self.label, "python": self.python}


def parse_side(text: str, **defaults: Any) -> SideSpec:
    """``SCENARIO[:key=value,...]`` with keys batch_size (bs), dtype, device, threads, channels_last,
    label; ``defaults`` (the shared command-line options) apply where the spec says nothing."""
    text = str(text)
    scen, opts = text, ""
    if ":" in text and not Path(text).exists():
        scen, opts = text.split(":", 1)
    if not scen:
        raise HarnessError(f"side {text!r}: give a scenario name or file before the options")
    vals: dict[str, Any] = {k: v for k, v in defaults.items() if v is not None}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in SIDE_KEYS:
            raise HarnessError(f"side {text!r}: unknown option {key!r}; use batch_size (bs), dtype, device, threads, "
                               f"channels_last, label")
        key = SIDE_KEYS[key]
        if key == "channels_last":
            vals[key] = value.strip().lower() not in ("0", "false", "no", "off") if value else True
        elif key in ("batch_size", "threads"):
            try:
                vals[key] = int(value)
            except ValueError:
                raise HarnessError(f"side {text!r}: {key} must be a whole number, got {value!r}") from None
            if vals[key] < 1:
                raise HarnessError(f"side {text!r}: {key} must be at least 1")
        else:
            if not value:
                raise HarnessError(f"side {text!r}: {key} needs a value ({key}=...)")
            vals[key] = value.strip()
    return SideSpec(scenario=scen, **vals)


def _channels_last(model, inputs):
    import torch

    model = model.to(memory_format=torch.channels_last)

    def conv(x):
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    if isinstance(inputs, dict):
        inputs = {k: conv(v) for k, v in inputs.items()}
    elif isinstance(inputs, (tuple, list)):
        inputs = type(inputs)(conv(v) for v in inputs)
    else:
        inputs = conv(inputs)
    return model, inputs


class Prepared:
    """A side built in this process: model, inputs, the timing of one block."""

    def __init__(self, spec: SideSpec, with_counts: bool = True):
        import torch

        from ..pipeline import prepare, scenario

        self.spec = spec
        sc = scenario.load(spec.scenario)
        self.scenario = sc.name
        p = prepare.prepare_scenario(sc, batch_size=spec.batch_size, device=spec.device, dtype=spec.dtype,
                                     threads=spec.threads)
        self.model, self.inputs = p.model, p.inputs
        if spec.channels_last:
            self.model, self.inputs = _channels_last(self.model, self.inputs)
        self.device, self.batch_size, self.threads = p.device, p.batch_size, p.threads
        self.dtype = prepare.dtype_name(p.dtype)
        self.counts = count_side(self.model, self.inputs) if with_counts else {}
        self.torch_version = torch.__version__
        from ..pipeline.measure import synchronizer

        self._sync = synchronizer(self.device)

    def describe(self) -> dict:
        return {"scenario": self.scenario, "spec": self.spec.to_json(), "batch_size": self.batch_size,
                "dtype": self.dtype, "device": str(self.device), "threads": self.threads,
                "channels_last": self.spec.channels_last, "counts": self.counts,
                "python": sys.executable, "python_version": sys.version.split()[0], "torch_version": self.torch_version}

    def block(self, k: int, discard: int = 0) -> list[float]:
        """``discard`` untimed iterations, then ``k`` timed ones (seconds each)."""
        import torch

        from ..pipeline.measure import call_model

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        sync, clock, model, inputs = self._sync, time.perf_counter_ns, self.model, self.inputs
        out = []
        try:
            with torch.inference_mode():
                for _ in range(discard):
                    call_model(model, inputs)
                sync()
                for _ in range(k):
                    t0 = clock()
                    call_model(model, inputs)
                    sync()
                    out.append((clock() - t0) * 1e-9)
        except (HarnessError, KeyboardInterrupt):
            raise
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise HarnessError(f"scenario '{self.scenario}' raised in forward: {type(exc).__name__}: {msg[:200]}") from exc
        return out

    def warmup(self, min_iters: int = WARMUP_MIN_ITERS, min_s: float = WARMUP_MIN_S) -> float:
        """Warm up; return the typical iteration time (median of the second half)."""
        times: list[float] = []
        t0 = time.perf_counter()
        while len(times) < min_iters or time.perf_counter() - t0 < min_s:
            times += self.block(1)
            if len(times) > 10_000:
                break
        tail = sorted(times[len(times) // 2:])
        return tail[len(tail) // 2]


def count_side(model, inputs) -> dict:
    """Params / MACs / FLOPs via harness.count when it is available; {} otherwise."""
    try:
        from ..count import count
    except Exception:  # noqa: BLE001 - counting is optional here
        return {}
    try:
        c = count(model, inputs)
        return {"params": int(c.params), "macs": int(c.macs), "flops": int(c.flops)}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {str(exc)[:120]}"}


# --------------------------------------------------------------------------- isolated workers

class Worker:
    """One side's process tree for ``--isolate``.

    A *zygote* (``python -m harness.tracking.ab --worker SPEC`` in the side's own Python) imports torch,
    harness and the scenario file once, then forks a fresh *child* per generation; the child
    builds the model (after a random-size allocation, so memory layout differs between
    generations), warms up and serves blocks; both speak one JSON line per command on the
    zygote's stdin/stdout (the zygote waits for its child meanwhile, the idle side sleeps in
    ``read``). Forking instead of starting a process per generation costs milliseconds
    instead of seconds (importing torch), so generations can be short and many.
    """

    def __init__(self, spec: SideSpec):
        py = spec.python or sys.executable
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        payload = json.dumps({"spec": spec.to_json()})
        import tempfile

        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: chatty workers never block
        try:
            self.proc = subprocess.Popen([py, "-m", "harness.tracking.ab", "--worker", payload], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env,
                                         bufsize=1)
        except OSError as exc:
            raise HarnessError(f"cannot start {py} for {spec.scenario}: {exc.strerror or exc}") from None
        self.spec = spec
        self.info: dict = {}

    def _send(self, obj: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._read()  # reports why the worker is gone
            raise

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.stderr.seek(0)
            err = self.stderr.read()
            last = [ln for ln in err.strip().splitlines() if ln.strip()]
            raise HarnessError(f"the worker for {self.spec.scenario} ({self.spec.python or sys.executable}) exited: "
                               f"{last[-1][:300] if last else 'no message'}")
        msg = json.loads(line)
        if "error" in msg:
            raise HarnessError(msg["error"])
        return msg

    def loaded(self) -> dict:
        """Wait until the zygote has imported everything."""
        return self._read()

    def spawn(self, with_counts: bool, seed: int, cpus: list[int] | None = None) -> None:
        self._send({"fork": True, "counts": with_counts, "seed": seed, "cpus": cpus})

    def ready(self) -> dict:
        self.info = self._read()
        return self.info

    def block(self, k: int, discard: int) -> list[float]:
        self._send({"block": k, "discard": discard})
        return self._read()["samples"]

    def end_child(self) -> None:
        self._send({"exit": True})
        self._read()  # the zygote's {"child_exit": status}

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                f.close()
            except OSError:
                pass


def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _child(spec: SideSpec, with_counts: bool, seed: int, cpus: list[int] | None = None) -> int:
    """A forked generation: build, warm up, serve blocks until told to exit."""
    import random

    import torch

    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, set(cpus))  # the same cores as the other side's child
        except OSError:
            pass

    rng = random.Random(seed * 7919 + os.getpid())
    pad = torch.empty(rng.randrange(1, 16384), dtype=torch.uint8)  # shifts the layout of what follows  # noqa: F841
    side = Prepared(spec, with_counts=with_counts)
    iter_s = side.warmup()
    _reply({"ready": True, "iter_s": iter_s, "pid": os.getpid(), **side.describe()})
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0
        cmd = json.loads(line)
        if cmd.get("exit") or cmd.get("quit"):
            return 0
        _reply({"samples": side.block(int(cmd["block"]), int(cmd.get("discard", 0)))})


def worker_main(payload: str) -> int:
    """The zygote of an isolated side (see :class:`Worker`)."""
    try:
        req = json.loads(payload)
        spec = SideSpec(**req["spec"])
        import torch  # noqa: F401 - imported once, before forking

        from ..pipeline import prepare, scenario  # noqa: F401

        scenario.load(spec.scenario)  # fail early (and import the file once) in the zygote
        if not hasattr(os, "fork"):
            raise HarnessError("--isolate needs os.fork (Linux or macOS)")
        _reply({"loaded": True, "python": sys.executable})
        while True:
            line = sys.stdin.readline()
            if not line:
                return 0
            cmd = json.loads(line)
            if cmd.get("quit"):
                return 0
            if not cmd.get("fork"):
                continue
            pid = os.fork()
            if pid == 0:  # the child
                code = 2
                try:
                    code = _child(spec, bool(cmd.get("counts")), int(cmd.get("seed", 0)), cmd.get("cpus"))
                except HarnessError as exc:
                    _reply({"error": exc.message})
                except BaseException as exc:  # noqa: BLE001 - reported as one line
                    _reply({"error": f"worker failed: {type(exc).__name__}: {str(exc)[:200]}"})
                finally:
                    sys.stdout.flush()
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                return 2  # the child reported its error; the parent reads it
            _reply({"child_exit": code})
    except HarnessError as exc:
        _reply({"error": exc.message})
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        _reply({"error": f"worker failed: {type(exc).__name__}: {str(exc)[:200]}"})
        return 2


# --------------------------------------------------------------------------- the session

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
    pair_rows: list = field(default_factory=list)  # (generation, pair, order, base_median, cand_median)
    fail_on: tuple = ("latency",)
    path: Path | None = None

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
        e = self.estimate
        return {
            "schema_version": 1,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "isolate": self.isolate,
            "block_iterations": self.block_iterations,
            "block_statistic": f"quantile {BLOCK_QUANTILE} of each block (ab_pairs.csv)",
            "discarded_per_block": self.discard,
            "pairs": self.pairs,
            "generations": self.generations,
            "budget_s": self.budget_s,
            "elapsed_s": self.elapsed_s,
            "setup_s": self.setup_s,
            "method": self.method,
            "level": self.level,
            "threshold": self.threshold,
            "ratio": e.ratio,
            "low": e.low,
            "high": e.high,
            "change": e.ratio - 1,
            "verdict": self.verdict,
            "throughput": self.throughput,
            "work_differs": bool(self.work_differs),
            "work": self.work_differs,
            "pairs_needed_for_threshold": self.pairs_needed,
            "fail_on": list(self.fail_on),
            "regression": bool(self.regressed),
            "regressed_metrics": self.regressed,
            "exit_code": self.exit_code,
            "path": str(self.path) if self.path else None,
        }


def block_value(v: list[float], q: float = None) -> float:
    """A block's value: its lower quartile (linear interpolation; the value itself for one sample).

    Interference on a shared machine only ever adds time (a neighbour takes the core for a
    few ms), so a low quantile tracks the undisturbed time of the block and ignores the
    iterations that were interrupted, where the median moves as soon as half are hit.
    """
    q = BLOCK_QUANTILE if q is None else q
    s = sorted(v)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _median(v: list[float]) -> float:
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def run_ab(
    baseline: SideSpec,
    candidate: SideSpec,
    *,
    budget_s: float | None = None,
    threshold: float = 0.05,
    method: str = "hl",
    level: float = 0.98,
    min_pairs: int = DEFAULT_MIN_PAIRS,
    block_s: float = DEFAULT_BLOCK_S,
    isolate: bool = False,
    generation_s: float = DEFAULT_GENERATION_S,
    logdir: str | os.PathLike | None = "logs",
    fail_on: tuple = ("latency",),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    count: bool = True,
) -> AbResult:
    """Time ``baseline`` and ``candidate`` in alternating blocks and return the verdict.

    Writes ``LOGDIR/ab/<run_id>/`` (``ab_samples.csv``, ``ab_pairs.csv``, ``ab.json``) when
    ``logdir`` is given.
    """
    from . import stats
    from ..core.fsio import new_run_id

    if method not in stats.METHODS:
        raise HarnessError(f"--method {method!r}: use one of {', '.join(stats.METHODS)}")
    if budget_s is None:
        budget_s = DEFAULT_ISOLATE_BUDGET_S if isolate else DEFAULT_BUDGET_S
    if budget_s <= 0:
        raise HarnessError(f"--budget-s must be positive, got {budget_s}")
    if min_pairs < 1:
        raise HarnessError(f"--min-pairs must be at least 1, got {min_pairs}")
    if logdir is not None:
        from ..pipeline.run import check_logdir

        check_logdir(Path(logdir))
    started = datetime.now(timezone.utc)
    run_id = new_run_id(started)
    t_setup = time.perf_counter()
    samples: list[tuple] = []
    pair_rows: list[tuple] = []
    if isolate:
        info, gens = _session_isolated(baseline, candidate, budget_s, min_pairs, block_s, generation_s, samples,
                                       pair_rows, progress, count)
        setup_s = info.pop("_setup_s")
        elapsed = info.pop("_elapsed_s")
        k, discard = info.pop("_k"), info.pop("_discard")
        bdesc, cdesc = info["baseline"], info["candidate"]
    else:
        gens = 1
        if baseline.python or candidate.python:
            raise HarnessError("--baseline-python/--candidate-python need --isolate (each side in its own Python)")
        A = Prepared(baseline, with_counts=count)
        B = Prepared(candidate, with_counts=count)
        tA, tB = A.warmup(), B.warmup()
        tA, tB = A.warmup(min_s=0.05), B.warmup(min_s=0.05)  # again, now that both are resident
        setup_s = time.perf_counter() - t_setup
        k, discard = _block_plan(tA, tB, block_s)
        elapsed = _alternate(A.block, B.block, k, discard, budget_s, min_pairs, 0, samples, pair_rows, progress,
                             method, level, threshold, block_s=block_s)
        bdesc, cdesc = A.describe(), B.describe()
    result = analyze(bdesc, cdesc, samples, pair_rows, isolate=isolate, generations=gens, method=method,
                     level=level, threshold=threshold, seed=seed, fail_on=fail_on, run_id=run_id,
                     started_at=started.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                     block_iterations=k, discard=discard, budget_s=budget_s, elapsed_s=elapsed, setup_s=setup_s)
    if logdir is not None:
        result.path = write_result(result, Path(logdir))
    return result


def analyze(bdesc: dict, cdesc: dict, samples: list, pair_rows: list, *, isolate: bool = False,
            generations: int = 1, method: str = "hl", level: float = 0.98, threshold: float = 0.05, seed: int = 0,
            fail_on: tuple = ("latency",), run_id: str = "", started_at: str = "", block_iterations: int = 1,
            discard: int = 0, budget_s: float = 0.0, elapsed_s: float = 0.0, setup_s: float = 0.0) -> AbResult:
    """The verdict from timed blocks: ``pair_rows`` are ``(generation, pair, order, baseline_block_s,
    candidate_block_s)`` (each block's :func:`block_value`); ``samples`` ``(side, generation, pair, block, iteration, latency_s)``;
    ``bdesc``/``cdesc`` describe the sides (``batch_size``, optional ``counts``)."""
    import numpy as np

    from . import stats

    ok = [(g, b, c) for (g, _, _, b, c) in pair_rows if b > 0 and c > 0]
    logs = np.array([math.log(c / b) for (_, b, c) in ok])
    if isolate:
        gen_ids = np.array([g for (g, _, _) in ok])
        per_gen = [stats.hodges_lehmann(logs[gen_ids == g], level)[0] for g in sorted(set(gen_ids.tolist()))]
        est = stats.estimate_from_logs(per_gen, method=method, level=level, seed=seed)
    else:
        est = stats.estimate_from_logs(logs, method=method, level=level, seed=seed)
    verdict = stats.verdict(est, threshold)
    need = stats.pairs_needed(logs, threshold, level) if not isolate else None
    per_block: dict = {}
    for x in samples:
        if x[0] == "baseline":
            per_block[(x[1], x[2])] = per_block.get((x[1], x[2]), 0) + 1
    if per_block:
        block_iterations = int(_median(list(per_block.values())))  # the typical block (re-planned as load changes)
    bdesc, cdesc = dict(bdesc), dict(cdesc)
    for d, side in ((bdesc, "baseline"), (cdesc, "candidate")):
        vals = [x[5] for x in samples if x[0] == side]
        d["median_s"] = _median(vals) if vals else None
        d["samples"] = len(vals)
        d["throughput_samples_per_s"] = d["batch_size"] / d["median_s"] if d["median_s"] else None
    # throughput: samples per second, from the same pairs (batch sizes may differ)
    k_bs = cdesc["batch_size"] / bdesc["batch_size"]
    t_est = stats.Estimate(est.ratio / k_bs, est.low / k_bs, est.high / k_bs, level, est.method, est.n)
    t_verdict = stats.verdict(t_est, threshold)
    throughput = {"ratio": 1 / t_est.ratio if t_est.ratio else None,
                  "low": 1 / t_est.high if t_est.high else None,
                  "high": 1 / t_est.low if t_est.low else math.inf,
                  "verdict": t_verdict}
    work = {}
    bc, cc = bdesc.get("counts") or {}, cdesc.get("counts") or {}
    for key in ("flops", "macs", "params"):
        if key in bc and key in cc and bc[key] != cc[key]:
            work[key] = {"baseline": bc[key], "candidate": cc[key]}
    return AbResult(
        run_id=run_id, started_at=started_at, baseline=bdesc, candidate=cdesc, block_iterations=block_iterations,
        discard=discard, pairs=len(pair_rows), generations=generations, isolate=isolate, budget_s=budget_s,
        elapsed_s=elapsed_s, setup_s=setup_s, method=method, level=level, threshold=threshold, estimate=est,
        verdict=verdict, throughput=throughput, work_differs=work, pairs_needed=need, samples=samples,
        pair_rows=pair_rows, fail_on=tuple(fail_on))


def _block_plan(tA: float, tB: float, block_s: float) -> tuple[int, int]:
    t = max(tA, tB, 1e-7)
    k = int(min(max(round(block_s / t), 1), 1000))
    discard = 1 if t < DISCARD_BELOW_S else 0
    return k, discard


def _alternate(block_a, block_b, k, discard, budget_s, min_pairs, generation, samples, pair_rows, progress,
               method, level, threshold, pair0: int = 0, stop_at: float | None = None, block_s: float = DEFAULT_BLOCK_S) -> float:
    """ABBA-alternate blocks until the budget (or ``stop_at``, a perf_counter deadline) is reached.

    Every REPLAN_PAIRS pairs the block length is planned again from the latest block medians
    (both sides always get the same length within a pair, so ratios stay comparable)."""
    t0 = time.perf_counter()
    deadline = stop_at if stop_at is not None else t0 + budget_s
    pair = pair0
    last_report = t0
    recent: list[float] = []
    while True:
        if len(recent) >= 2 * REPLAN_PAIRS:  # re-plan the block length as the machine's load changes
            k, discard = _block_plan(_median(recent[0::2]), _median(recent[1::2]), block_s)
            recent.clear()
        first_a = pair % 2 == 0
        res = {}
        for side in (("baseline", "candidate") if first_a else ("candidate", "baseline")):
            res[side] = (block_a if side == "baseline" else block_b)(k, discard)
        for side in ("baseline", "candidate"):
            for i, v in enumerate(res[side]):
                samples.append((side, generation, pair, 2 * pair + (0 if (side == "baseline") == first_a else 1), i, v))
        pair_rows.append((generation, pair, "AB" if first_a else "BA", block_value(res["baseline"]),
                          block_value(res["candidate"])))
        recent += [pair_rows[-1][3], pair_rows[-1][4]]
        pair += 1
        now = time.perf_counter()
        if progress and now - last_report > 0.5:
            last_report = now
            progress(_progress_text(pair_rows, now - t0 if stop_at is None else None, budget_s, method, level))
        if now >= deadline and (stop_at is not None or pair - pair0 >= min_pairs):
            break
    return time.perf_counter() - t0


def _progress_text(pair_rows, elapsed, budget_s, method, level) -> str:
    from . import stats

    logs = [math.log(c / b) for (_, _, _, b, c) in pair_rows if b > 0 and c > 0]
    txt = f"{len(pair_rows)} pairs"
    if elapsed is not None:
        txt += f", {elapsed:.1f} of {budget_s:.0f} s"
    if len(logs) >= 8:
        e = stats.estimate_from_logs(logs[-3000:], method="hl", level=level)
        txt += f", candidate/baseline {e.ratio:.3f} [{e.low:.3f}, {e.high:.3f}]"
    return txt


def _generation_cpus(a: SideSpec, b: SideSpec, rng) -> list[int] | None:
    """The cores both workers of a generation are pinned to: the same set for both sides (so a
    slower core or a busy sibling hyperthread hits both halves of every pair), drawn anew each
    generation. Sides without an explicit thread count keep every core."""
    if not hasattr(os, "sched_getaffinity") or a.threads is None or b.threads is None:
        return None
    avail = sorted(os.sched_getaffinity(0))
    n = max(a.threads, b.threads)
    if n >= len(avail):
        return None
    return sorted(rng.sample(avail, n))


def _session_isolated(baseline, candidate, budget_s, min_pairs, block_s, generation_s, samples, pair_rows,
                      progress, count) -> tuple[dict, int]:
    t_start = time.perf_counter()
    info: dict = {}
    gen = pair = 0
    setup = 0.0
    k = discard = None
    A, B = Worker(baseline), Worker(candidate)
    try:
        A.loaded()
        B.loaded()
        setup += time.perf_counter() - t_start
        t_loop = time.perf_counter()
        import random

        rng = random.Random(os.getpid())
        while True:
            t_gen = time.perf_counter()
            cpus = _generation_cpus(baseline, candidate, rng)
            A.spawn(count and gen == 0, gen, cpus)
            B.spawn(count and gen == 0, gen, cpus)
            ia, ib = A.ready(), B.ready()  # both build and warm up at once: not timed
            if gen == 0:
                info["baseline"], info["candidate"] = dict(ia), dict(ib)
                for d in (info["baseline"], info["candidate"]):
                    for key in ("ready", "iter_s", "pid"):
                        d.pop(key, None)
                # the two warmed up at the same time; time them one after the other for the block plan
                for _ in range(2):
                    ta, tb = _median(A.block(3, 1)), _median(B.block(3, 1))
                k, discard = _block_plan(ta, tb, block_s)
            setup += time.perf_counter() - t_gen
            if progress:
                progress(f"generation {gen + 1}, {pair} pairs, {time.perf_counter() - t_loop:.0f} of {budget_s:.0f} s")
            n_before = len(pair_rows)
            _alternate(A.block, B.block, k, discard, budget_s, min_pairs, gen, samples, pair_rows, None,
                       "hl", 0.98, 0.05, pair0=pair, stop_at=time.perf_counter() + generation_s, block_s=block_s)
            pair += len(pair_rows) - n_before
            A.end_child()
            B.end_child()
            gen += 1
            spent = time.perf_counter() - t_loop
            if gen >= MIN_GENERATIONS and spent + spent / gen > budget_s and pair >= min_pairs:
                break
    finally:
        A.close()
        B.close()
    info["_setup_s"] = setup
    info["_elapsed_s"] = time.perf_counter() - t_start
    info["_k"], info["_discard"] = k, discard
    return info, gen


# --------------------------------------------------------------------------- output

def write_result(r: AbResult, logdir: Path) -> Path:
    import pandas as pd

    from ..core.fsio import RunDir, atomic_write_csv, atomic_write_json

    rd = RunDir(logdir / "ab", r.run_id)
    try:
        atomic_write_csv(rd.path / "ab_samples.csv", pd.DataFrame(
            r.samples, columns=["side", "generation", "pair", "block", "iteration", "latency_s"]))
        pr = pd.DataFrame(r.pair_rows, columns=["generation", "pair", "order", "baseline_block_s", "candidate_block_s"])
        pr["ratio"] = pr["candidate_block_s"] / pr["baseline_block_s"]
        atomic_write_csv(rd.path / "ab_pairs.csv", pr)
        d = r.as_dict()
        d["path"] = str(rd.final)
        atomic_write_json(rd.path / "ab.json", d)
        return rd.commit()
    except BaseException:
        rd.abort()
        raise


def main_worker(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--worker":
        return worker_main(argv[1])
    print("usage: python -m harness.tracking.ab --worker JSON (internal: a side of `harness ab --isolate`)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main_worker(sys.argv[1:]))
