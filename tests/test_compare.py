"""compare: synthetic runs with known answers, between-run noise, bad input, exit codes through the CLI."""
from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_SCENARIO, run_cli, write_scenario
from harness.tracking import compare as cmp
from harness.core import fsio
from harness.tracking import history
from harness.errors import HarnessError
from test_history import fake_summary


def make_run(logdir: Path, i: int, p50: float, *, n: int = 50, spread: float = 0.02, seed: int | None = None,
             record: bool = True, **kw) -> Path:
    """A finished run directory with summary.json and samples.csv (latencies around p50)."""
    own = {k: kw.pop(k) for k in ("scenario", "tag", "commit", "batch_size") if k in kw}
    s = fake_summary(i, p50=p50, logdir=logdir, **own)
    if "contention" in kw:
        s["contention"] = kw.pop("contention")
    rng = np.random.default_rng(i if seed is None else seed)
    samples = p50 * np.exp(rng.normal(0, spread, n))
    samples *= p50 / np.median(samples)  # median exactly p50
    s["latency_s"]["p50"] = float(np.median(samples))
    for k, v in kw.items():
        if k in s:
            s[k] = v
    d = logdir / s["scenario"] / s["run_id"]
    d.mkdir(parents=True)
    fsio.atomic_write_json(d / "summary.json", s)
    fsio.atomic_write_csv(d / "samples.csv", pd.DataFrame({"iteration": range(n), "latency_s": samples}))
    if record:
        history.append(logdir, s)
    return d


def quiet_history(logdir: Path, runs: int = 20, sd: float = 0.01, p50: float = 0.5) -> None:
    rng = np.random.default_rng(99)
    for i in range(runs):
        make_run(logdir, i, p50 * math.exp(rng.normal(0, sd)))


def test_no_history_uses_the_measured_default(tmp_path: Path):
    a = make_run(tmp_path, 1, 0.50)
    b = make_run(tmp_path, 2, 0.55)  # +10 %: within what separate runs on this machine do
    r = cmp.compare_runs(cmp.load_run_dir(a), cmp.load_run_dir(b), logdir=tmp_path)
    # 2 CPU threads: the threaded default (a whole-run slow mode of the shared host, measured)
    assert r.noise_sd == cmp.DEFAULT_BETWEEN_RUN_SD_THREADED == 0.22 and "default" in r.noise_source
    assert cmp.default_sd({"device": "cpu", "threads": 1}) == cmp.DEFAULT_BETWEEN_RUN_SD == 0.10
    assert cmp.default_sd({"device": "cuda", "threads": 8}) == 0.10
    lat = r.metrics[0]
    assert lat.name == "latency" and lat.change == pytest.approx(0.10)
    assert lat.verdict == "inconclusive" and not lat.regression and r.exit_code == 0
    assert lat.low < 0 < lat.high


def test_far_beyond_the_noise_is_a_regression(tmp_path: Path):
    a = make_run(tmp_path, 1, 0.50)
    b = make_run(tmp_path, 2, 1.50)  # 3x: beyond x/÷ exp(2.33 * sqrt(2) * 0.22) = 2.06
    r = cmp.compare_runs(cmp.load_run_dir(a), cmp.load_run_dir(b), logdir=tmp_path)
    assert r.metrics[0].verdict == "slower" and r.exit_code == 1
    assert r.metrics[0].low > 0
    t = next(m for m in r.metrics if m.name == "throughput")
    assert t.verdict == "slower" and t.change == pytest.approx(-2 / 3)
    # 2x with the same work is within what two separate 2-thread runs on this host can do: inconclusive
    c = make_run(tmp_path, 3, 1.00)
    assert cmp.compare_runs(cmp.load_run_dir(a), cmp.load_run_dir(c), logdir=tmp_path).metrics[0].verdict == "inconclusive"


def test_clear_improvement(tmp_path: Path):
    a = make_run(tmp_path, 1, 0.50)
    b = make_run(tmp_path, 2, 0.20)
    r = cmp.compare_runs(cmp.load_run_dir(a), cmp.load_run_dir(b), logdir=tmp_path)
    assert r.metrics[0].verdict == "faster" and r.exit_code == 0


def test_quiet_history_narrows_the_noise(tmp_path: Path):
    quiet_history(tmp_path)
    same = make_run(tmp_path, 40, 0.50, record=False)
    slow = make_run(tmp_path, 41, 0.56, record=False)  # +12 %
    base = cmp.resolve(fake_summary(19)["run_id"], tmp_path)
    r = cmp.compare_runs(base, cmp.load_run_dir(slow), logdir=tmp_path)
    assert "history: 20 undisturbed run(s)" in r.noise_source and r.noise_sd < 0.03
    assert r.metrics[0].verdict == "slower" and r.exit_code == 1
    r = cmp.compare_runs(base, cmp.load_run_dir(same), logdir=tmp_path)
    assert r.metrics[0].verdict == "no significant change" and r.exit_code == 0


def test_noisy_history_keeps_it_inconclusive(tmp_path: Path):
    quiet_history(tmp_path, runs=12, sd=0.12)
    slow = make_run(tmp_path, 41, 0.60, record=False)  # +20 %, but runs here swing by ~15 %
    base = cmp.resolve(fake_summary(11)["run_id"], tmp_path)
    r = cmp.compare_runs(base, cmp.load_run_dir(slow), logdir=tmp_path)
    assert r.noise_sd > 0.1 and r.metrics[0].verdict == "inconclusive" and r.exit_code == 0


def test_different_work_is_flagged_but_the_verdict_stands(tmp_path: Path):
    a = make_run(tmp_path, 1, 0.50)
    b = make_run(tmp_path, 2, 1.00, flops=2 * 30940528640, macs=2 * 15470264320)
    r = cmp.compare_runs(cmp.load_run_dir(a), cmp.load_run_dir(b), logdir=tmp_path)
    assert set(r.work_diff) == {"flops", "macs"}
    # counted work doubled (exact) and latency doubled: slower, though 2x alone is inside the noise
    assert r.metrics[0].verdict == "slower (counted work +100%)" and r.exit_code == 1
    assert cmp.work_change(fake_summary(1), {**fake_summary(2), "flops": 2 * 30940528640}) == pytest.approx(1.0)
    proc = run_cli("compare", str(a), str(b), "--logdir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stdout.startswith("!! WORK DIFFERS: flops 30.9 G -> 61.9 G (+100.0%)")


def test_cli_exit_codes_and_json(tmp_path: Path):
    a = make_run(tmp_path, 1, 0.50)
    b = make_run(tmp_path, 2, 1.50)
    c = make_run(tmp_path, 3, 0.52)
    proc = run_cli("compare", str(a), str(b), "--logdir", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert "REGRESSION in latency" in proc.stdout and "slower" in proc.stdout
    proc = run_cli("compare", fake_summary(1)["run_id"], fake_summary(3)["run_id"], "--logdir", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["regression"] is False and out["exit_code"] == 0
    assert out["metrics"][0]["name"] == "latency" and out["metrics"][0]["verdict"] == "inconclusive"
    assert out["between_run_noise"]["sd_log"] == cmp.DEFAULT_BETWEEN_RUN_SD_THREADED
    proc = run_cli("compare", str(a), str(c), "--logdir", str(tmp_path))
    assert proc.returncode == 0 and "harness ab" in proc.stdout  # points to the trustworthy verdict
    # --scenario: the latest against the one before it with the same config
    proc = run_cli("compare", "--scenario", "vgg16", "--logdir", str(tmp_path), "--json")
    out = json.loads(proc.stdout)
    assert out["baseline"]["run_id"] == fake_summary(2)["run_id"] and out["candidate"]["run_id"] == fake_summary(3)["run_id"]
    assert out["metrics"][0]["verdict"] == "faster" and proc.returncode == 0


def test_fail_on_memory(tmp_path: Path):
    a = make_run(tmp_path, 1, 0.50)
    b = make_run(tmp_path, 2, 0.50, peak_memory_bytes=900_000_000)
    assert run_cli("compare", str(a), str(b), "--logdir", str(tmp_path)).returncode == 0
    proc = run_cli("compare", str(a), str(b), "--logdir", str(tmp_path), "--fail-on", "latency,memory")
    assert proc.returncode == 1 and "REGRESSION in memory" in proc.stdout
    assert run_cli("compare", str(a), str(b), "--fail-on", "speed").returncode == 2


def test_different_configs_need_force(tmp_path: Path):
    a = make_run(tmp_path, 1, 0.50)
    b = make_run(tmp_path, 2, 0.90, batch_size=2)
    proc = run_cli("compare", str(a), str(b), "--logdir", str(tmp_path))
    assert proc.returncode == 2 and "batch_size 1 vs 2" in proc.stderr and "--force" in proc.stderr
    proc = run_cli("compare", str(a), str(b), "--logdir", str(tmp_path), "--force")
    assert proc.returncode in (0, 1) and "CONFIG DIFFERS" in proc.stdout
    d = make_run(tmp_path, 3, 0.50, scenario="resnet50")
    assert run_cli("compare", str(a), str(d), "--logdir", str(tmp_path)).returncode == 2


def _bad_dirs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    good = make_run(tmp_path, 1, 0.5)
    half = tmp_path / "vgg16" / ".tmp-20261124T100002.000000Z-1-abcd"
    half.mkdir()
    (half / "summary.json").write_text("{")
    nosummary = tmp_path / "vgg16" / "20261124T100003.000000Z-1-abcd"
    nosummary.mkdir()
    (nosummary / "ops.csv").write_text("name\n")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "summary.json").write_text(json.dumps({"accuracy": 0.9}))
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "summary.json").write_bytes(b"\x00\xffjunk")
    return {
        "missing": (str(tmp_path / "nope"), "does not exist"),
        "unknown id": ("20991231T000000.000000Z-1-ffff", "unknown run"),
        "half-written": (str(half), "half-written"),
        "half-written id": ("20261124T100002.000000Z-1-abcd", "never finished"),
        "no summary": (str(nosummary), "no summary.json"),
        "foreign": (str(foreign), "not a harness run summary"),
        "garbage": (str(garbage), "not readable JSON"),
        "good": (str(good), ""),
    }


def test_bad_run_directories_exit_2_with_one_line(tmp_path: Path):
    cases = _bad_dirs(tmp_path)
    good = cases.pop("good")[0]
    for name, (ref, words) in cases.items():
        with pytest.raises(HarnessError, match=words) as exc:
            cmp.resolve(ref, tmp_path)
        assert "\n" not in exc.value.message and exc.value.exit_code == 2
        if name not in ("missing", "half-written", "foreign"):
            continue  # the CLI path is the same for all; three are enough to check it
        proc = run_cli("compare", good, ref, "--logdir", str(tmp_path))
        assert proc.returncode == 2, name
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and words in proc.stderr, (name, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_scenario_without_a_previous_run(tmp_path: Path):
    make_run(tmp_path, 1, 0.5)
    proc = run_cli("compare", "--scenario", "vgg16", "--logdir", str(tmp_path))
    assert proc.returncode == 2 and "only one run" in proc.stderr
    proc = run_cli("compare", "--scenario", "nope", "--logdir", str(tmp_path))
    assert proc.returncode == 2 and "no runs of 'nope'" in proc.stderr


def test_threshold_parsing():
    assert cmp.parse_threshold("5%") == pytest.approx(0.05)
    assert cmp.parse_threshold("0.05") == pytest.approx(0.05)
    assert cmp.parse_threshold("10") == pytest.approx(0.10)
    with pytest.raises(HarnessError):
        cmp.parse_threshold("fast")


QUIET = {"cpu_share": 0.97, "disturbed": False}
BUSY = {"cpu_share": 0.41, "disturbed": True}


def test_a_disturbed_run_gets_no_timed_verdict(tmp_path: Path):
    """The measured case: 9.77 ms -> 15.7 ms with a neighbour on the host is not a regression."""
    a = make_run(tmp_path, 1, 0.00977, contention=QUIET)
    b = make_run(tmp_path, 2, 0.0157, contention=BUSY, peak_memory_bytes=900_000_000)
    proc = run_cli("compare", str(a), str(b), "--logdir", str(tmp_path), "--fail-on", "latency,throughput")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "inconclusive (disturbed: baseline 97 % / candidate 41 % CPU share)" in proc.stdout
    assert "cpu 41% DISTURBED" in proc.stdout and "cpu 97%" in proc.stdout and "harness ab" in proc.stdout
    proc = run_cli("compare", str(a), str(b), "--logdir", str(tmp_path), "--strict", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["disturbed"] == "disturbed: baseline 97 % / candidate 41 % CPU share" and out["exit_code"] == 2
    assert out["candidate"]["disturbed"] is True and out["baseline"]["cpu_share"] == 0.97
    m = {x["name"]: x for x in out["metrics"]}
    assert m["latency"]["verdict"].startswith("inconclusive (disturbed") and not m["latency"]["regression"]
    assert m["memory"]["verdict"] == "more memory" and m["memory"]["change"] == pytest.approx(0.5)  # still exact
    # memory is counted, not timed: its regression still fails
    proc = run_cli("compare", str(a), str(b), "--logdir", str(tmp_path), "--fail-on", "memory")
    assert proc.returncode == 1 and "REGRESSION in memory" in proc.stdout


def test_a_quiet_pair_with_doubled_work_is_still_a_regression(tmp_path: Path):
    a = make_run(tmp_path, 1, 0.00977, contention=QUIET)
    b = make_run(tmp_path, 2, 2 * 0.00977, contention={"cpu_share": 0.99, "disturbed": False},
                 flops=2 * 30940528640, macs=2 * 15470264320)
    proc = run_cli("compare", str(a), str(b), "--logdir", str(tmp_path))
    assert proc.returncode == 1 and "REGRESSION in latency" in proc.stdout, proc.stdout + proc.stderr


def test_waiting_for_a_cpu_widens_the_interval(tmp_path: Path):
    assert cmp.disturbance_sd(None) == 0 and cmp.disturbance_sd(0.0) == 0
    assert cmp.disturbance_sd(0.1) == pytest.approx(math.log(1 / 0.9))  # 0.105: as much as a whole run's noise
    # the probe's run-queue delay decides; 1 - cpu_share only where the kernel gives no schedstat
    assert cmp.waiting_share({"contention": {"run_delay_share": 0.02, "cpu_share": 0.3}}) == 0.02
    assert cmp.waiting_share({"contention": {"cpu_share": 0.9}}) == pytest.approx(0.1)
    assert cmp.waiting_share({}) is None
    a = make_run(tmp_path, 1, 0.50, contention={"cpu_share": 1.0, "disturbed": False}, record=False)
    b = make_run(tmp_path, 2, 0.50, contention={"cpu_share": 1.0, "disturbed": False}, record=False)
    c = make_run(tmp_path, 3, 0.50, contention={"cpu_share": 0.9, "disturbed": False}, record=False)
    kw = dict(logdir=None, noise_sd=0.03)
    full = cmp.compare_runs(cmp.load_run_dir(a), cmp.load_run_dir(b), **kw).metrics[0]
    part = cmp.compare_runs(cmp.load_run_dir(a), cmp.load_run_dir(c), **kw).metrics[0]
    # log half-widths add in quadrature: sqrt(w^2 + z^2 * ln(1/0.9)^2) with w the quiet pair's half-width
    z = 2.3263478740408408  # 98 % two-sided
    w_full = math.log(1 + full.high)
    assert math.log(1 + part.high) == pytest.approx(math.sqrt(w_full ** 2 + (z * math.log(1 / 0.9)) ** 2), rel=0.02)


def test_history_noise_leaves_out_disturbed_runs(tmp_path: Path):
    quiet_history(tmp_path)  # 20 quiet runs, 1 % apart
    rng = np.random.default_rng(5)
    for i in range(20, 26):  # six disturbed runs, up to 30x slow
        make_run(tmp_path, i, 0.5 * math.exp(rng.uniform(0, 3.4)), contention=BUSY)
    slow = make_run(tmp_path, 41, 0.56, record=False)  # +12 %
    base = cmp.resolve(fake_summary(19)["run_id"], tmp_path)
    r = cmp.compare_runs(base, cmp.load_run_dir(slow), logdir=tmp_path)
    assert "history: 20 undisturbed run(s)" in r.noise_source and r.noise_sd < 0.03
    assert r.metrics[0].verdict == "slower" and r.exit_code == 1


def test_scenario_pair_of_different_networks_exits_2(tmp_path: Path):
    """Every API run used to be named "model": the latest two runs may be two different networks."""
    make_run(tmp_path, 1, 0.50, scenario="model")
    make_run(tmp_path, 2, 1.50, scenario="model", params=25_557_032, macs=4_089_184_256)
    proc = run_cli("compare", "--scenario", "model", "--logdir", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stdout + proc.stderr
    assert "different networks (params 138 M vs 25.6 M, macs 15.5 G vs 4.09 G)" in proc.stderr
    proc = run_cli("compare", "--scenario", "model", "--logdir", str(tmp_path), "--force")
    assert proc.returncode == 1 and "WORK DIFFERS" in proc.stdout


def test_threshold_and_noise_through_the_cli_on_real_runs(tmp_path: Path):
    """Two real runs of the tiny scenario, batch 2 and batch 3 (--force: their configs differ). --threshold
    decides the memory verdict, which is exact (counted, never disturbed): a change r is "more memory" once
    r >= 1 + threshold/2, "no significant change" while r <= 1 + threshold. --noise widens the latency
    interval on the log scale: each half-width w becomes sqrt(w^2 + 2 (z x noise)^2), z the normal quantile
    of the 98% level (the within-run bootstrap and each run's own disturbance stay as they were)."""
    scen = write_scenario(tmp_path, "tiny", TINY_SCENARIO)
    logdir = tmp_path / "logs"
    runs = []
    for bs in ("2", "3"):
        p = run_cli("run", str(scen), "--batch-size", bs, "--threads", "1", "--iters", "5", "--warmup", "1",
                    "--active", "1", "--top", "0", "--json", "--logdir", str(logdir))
        assert p.returncode == 0, p.stderr
        runs.append(json.loads(p.stdout))

    def compare(*flags: str) -> tuple[int, dict]:
        p = run_cli("compare", runs[0]["path"], runs[1]["path"], "--logdir", str(logdir), "--force",
                    "--fail-on", "memory", "--json", *flags)
        assert p.returncode in (0, 1), p.stdout + p.stderr
        out = json.loads(p.stdout)
        assert out["exit_code"] == p.returncode
        return p.returncode, out

    def metric(out: dict, name: str) -> dict:
        return next(m for m in out["metrics"] if m["name"] == name)

    # CPU peak memory = weights (21,416 B, both runs) + inputs + activations: one more sample adds its input
    # (3 x 16 x 16 x 4 = 3,072 B) and its activations (about 28 KB against 77 KB in all at batch 2: r ~ 1.36)
    r = runs[1]["peak_memory_bytes"] / runs[0]["peak_memory_bytes"]
    assert runs[1]["peak_memory_bytes"] - runs[0]["peak_memory_bytes"] > 3 * 16 * 16 * 4
    assert 1 + 0.05 / 2 <= r < 1 + 0.9 / 2, r  # so 5% and 90% must disagree
    code, strict = compare("--threshold", "5%", "--noise", "1%")
    assert strict["threshold"] == 0.05 and metric(strict, "memory")["verdict"] == "more memory"
    assert code == 1 and strict["regressed_metrics"] == ["memory"]
    code, loose = compare("--threshold", "90%", "--noise", "1%")
    assert loose["threshold"] == 0.9 and metric(loose, "memory")["verdict"] == "no significant change"
    assert code == 0 and loose["regressed_metrics"] == []
    for out in (strict, loose):
        assert metric(out, "memory")["change"] == pytest.approx(r - 1)
        assert out["between_run_noise"] == {"sd_log": 0.01, "source": "given with --noise", "runs": 0}
    # --noise 30%: the same latency ratio, its interval widened by exactly the extra noise
    _, noisy = compare("--threshold", "5%", "--noise", "30%")
    assert noisy["between_run_noise"]["sd_log"] == 0.3
    z = NormalDist().inv_cdf(1 - (1 - strict["level"]) / 2)  # level 0.98: z = 2.326
    narrow, wide = metric(strict, "latency"), metric(noisy, "latency")
    assert wide["change"] == narrow["change"]
    c = math.log(1 + narrow["change"])
    for side, sign in (("low", -1), ("high", 1)):
        w_narrow = sign * (math.log(1 + narrow[side]) - c)
        w_wide = sign * (math.log(1 + wide[side]) - c)
        assert w_wide ** 2 == pytest.approx(w_narrow ** 2 + 2 * (z * 0.3) ** 2 - 2 * (z * 0.01) ** 2)
    assert wide["low"] < narrow["low"] and wide["high"] > narrow["high"]
