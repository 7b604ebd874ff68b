"""history check: real runs with and without a known step, synthetic histories with known answers, the CLI."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, write_scenario
from harness.core import fsio
from harness.tracking import check, history
from test_compare import make_run
from test_history import fake_summary

MODEL = '''
"""{layers} linear layers: counted work proportional to the layer count."""
import torch
from torch import nn

name = "model"   # both files are one config: the step is in the model, not in the key
batch_size = 8


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(128, 128) for _ in range({layers})])


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 128, device=device)
'''

RUN = ("--threads", "1", "--iters", "20", "--warmup", "2", "--active", "1", "--top", "0", "--retry-disturbed", "2")


def checked(logdir: Path, *extra: str):
    proc = run_cli("history", "check", "--logdir", str(logdir), "--format", "json", *extra)
    assert proc.returncode in (0, 1), proc.stderr
    return proc, json.loads(proc.stdout)


def quiet_count(logdir: Path) -> tuple[int, bool]:
    """(quiet runs before the latest, latest quiet) as history.csv recorded them."""
    d = history.read(logdir)["disturbed"].fillna(0).astype(bool).tolist()
    return d[:-1].count(False), not d[-1]


def test_real_runs_with_a_known_step_and_without(tmp_path: Path):
    """Four runs of a 4-layer model, then (history A) a 16-layer model of the same name, or (history B) the
    same model again: each run its own process, as CI runs them. A is a regression whose counted work is the
    exact evidence; B is not."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small = write_scenario(tmp_path / "a", "model", MODEL.format(layers=4))
    big = write_scenario(tmp_path / "b", "model", MODEL.format(layers=16))
    a, b = tmp_path / "A", tmp_path / "B"
    for _ in range(4):
        assert run_cli("run", str(small), "--logdir", str(a), *RUN).returncode == 0
    shutil.copytree(a, b)  # run_dir is relative to LOGDIR: a history moves with its runs
    assert run_cli("run", str(big), "--logdir", str(a), *RUN).returncode == 0
    assert run_cli("run", str(small), "--logdir", str(b), *RUN).returncode == 0

    proc, res = checked(a, "--min-runs", "3")
    (cfg,) = res["configs"]
    assert cfg["config_key"] == "model|bs=8|float32|cpu|threads=1|tag="
    assert cfg["work_change"] == pytest.approx(3.0)  # 16 layers against 4: exact, whatever the machine did
    assert "counted work +300.0 %: the model changed" in cfg["notes"]
    quiet, latest_quiet = quiet_count(a)
    moved = [s for s in cfg["steps"] if s["kind"] == "timing"] and cfg["verdict"] == "not enough history"
    if quiet >= 3 and latest_quiet and not moved:  # moved: a timing step left fewer than 3 runs (see B below)
        assert proc.returncode == 1 and cfg["regression"], proc.stdout
        assert cfg["verdict"] == "slower (counted work +300%)" and cfg["change"] > 1.0
        assert cfg["basis"] == "samples" and 1 <= len(cfg["baseline_runs"]) <= quiet
        # every quiet run is the baseline, unless the machine's level moved among them: then the window starts at
        # that timing step, which is reported (CI once saw runs 3-4 a step away from runs 1-2)
        steps = [s for s in cfg["steps"] if s["kind"] == "timing"]
        assert len(cfg["baseline_runs"]) == quiet or (steps and steps[-1]["run_id"] == cfg["baseline_runs"][0])
        assert cfg["low"] > 0  # the interval lies above no change
    else:  # a busy machine: no timed verdict, said so
        assert proc.returncode == 0 and ("disturbed" in cfg["verdict"] or cfg["verdict"] == "not enough history")
    assert cfg["disturbed_left_out"] == 5 - quiet - latest_quiet

    proc, res = checked(b, "--min-runs", "3")
    (cfg,) = res["configs"]
    assert proc.returncode == 0 and not cfg["regression"] and res["regressed_configs"] == []
    assert not cfg["work_change"] and not any("counted work" in n for n in cfg["notes"])
    quiet, latest_quiet = quiet_count(b)
    timing_steps = [s for s in cfg["steps"] if s["kind"] == "timing"]
    if quiet >= 3 and latest_quiet and not (timing_steps and cfg["verdict"] == "not enough history"):
        assert cfg["verdict"] in ("no significant change", "inconclusive") or "below the" in cfg["verdict"]
        assert cfg["low"] < 0.05 and cfg["noise_sd"] > 0
    # else the machine's level moved among the quiet runs (a fresh-clone CI run once saw it): the window starts at
    # that timing step, with fewer than --min-runs runs left: not enough history, exit 0, as the module doc says

    # the same answers in the other formats
    md = run_cli("history", "check", "--logdir", str(a), "--min-runs", "3", "--format", "markdown")
    assert md.returncode == proc.returncode or md.returncode in (0, 1)
    assert "| config | baseline | latest | change | 98 % interval | verdict |" in md.stdout
    assert "counted work +300.0 %: the model changed" in md.stdout
    text = run_cli("history", "check", "--logdir", str(a), "--min-runs", "3")
    assert "model · bs 8 · float32 · cpu · 1 thr" in text.stdout and text.returncode == md.returncode


# --------------------------------------------------------------------------- synthetic histories

def steady(logdir: Path, runs: int, p50: float = 0.01, sd: float = 0.01, start: int = 0, seed: int = 3, **kw) -> None:
    rng = np.random.default_rng(seed)
    for i in range(start, start + runs):
        make_run(logdir, i, p50 * math.exp(rng.normal(0, sd)), n=30, **kw)


def one(logdir: Path, **kw) -> check.ConfigCheck:
    (cfg,) = check.check(logdir, **kw).configs
    return cfg


def test_a_timing_step_with_the_same_work_is_found_by_the_samples(tmp_path: Path):
    steady(tmp_path, 10)
    make_run(tmp_path, 10, 0.013)  # +30 %, nothing counted changed
    cfg = one(tmp_path)
    assert cfg.verdict == "slower" and cfg.regression and cfg.work_change == 0.0
    assert cfg.basis == "samples" and len(cfg.baseline_runs) == 10 and 0.25 < cfg.change < 0.35
    assert cfg.low > 0.05  # beyond the noise and the threshold


def test_a_step_inside_the_window_starts_the_window_after_it(tmp_path: Path):
    """An older step (already reported) must not be judged again: ruptures finds it and the window starts there."""
    steady(tmp_path, 8, p50=0.010)
    steady(tmp_path, 6, p50=0.013, start=8, seed=4)
    make_run(tmp_path, 14, 0.013)
    cfg = one(tmp_path, window=14)
    assert [s["kind"] for s in cfg.steps] == ["timing"] and cfg.steps[0]["run_id"] == fake_summary(8)["run_id"]
    assert 0.25 < cfg.steps[0]["change"] < 0.35 and len(cfg.baseline_runs) == 6
    assert not cfg.regression and abs(cfg.change) < 0.05
    # the same history without the step detection would have called the latest run slower
    assert check.timing_steps(np.log([0.01] * 8 + [0.013] * 6), 0.02, 0.05) == [8]
    assert check.timing_steps(np.log([0.01] * 14), 0.02, 0.05) == []


def test_counted_work_that_changed_inside_the_window_cuts_it_exactly(tmp_path: Path):
    steady(tmp_path, 6)
    steady(tmp_path, 3, start=6, flops=61881057280, macs=30940528640)  # twice the work, the same time
    make_run(tmp_path, 9, 0.01, flops=61881057280, macs=30940528640)
    cfg = one(tmp_path)
    assert cfg.steps[0]["kind"] == "counted work" and cfg.steps[0]["change"] == pytest.approx(1.0)
    assert cfg.verdict == check.NOT_ENOUGH and not cfg.regression
    assert cfg.notes[0] == f"3 quiet run(s) in the window since the step at run {fake_summary(6)['run_id']}; 5 needed"


def test_disturbed_runs_are_left_out_and_counted(tmp_path: Path):
    busy = {"disturbed": True, "cpu_share": 0.4, "run_delay_share": 0.5}
    steady(tmp_path, 6)
    make_run(tmp_path, 6, 0.05, contention=busy)  # 5x slow: would be a step if it counted
    make_run(tmp_path, 7, 0.0101)
    cfg = one(tmp_path)
    assert cfg.disturbed_left_out == 1 and "1 disturbed run(s) left out" in cfg.notes
    assert fake_summary(6)["run_id"] not in cfg.baseline_runs and len(cfg.baseline_runs) == 6
    assert not cfg.regression
    make_run(tmp_path, 8, 0.05, contention=busy)  # the latest itself: no timed verdict
    cfg = one(tmp_path)
    assert cfg.verdict == "inconclusive (the latest run was disturbed)" and not cfg.regression
    assert cfg.disturbed_left_out == 2


def test_not_enough_history_is_exit_0(tmp_path: Path):
    steady(tmp_path, 3)
    cfg = one(tmp_path)
    assert cfg.verdict == check.NOT_ENOUGH and cfg.notes[0] == "2 quiet run(s) in the window; 5 needed"
    proc = run_cli("history", "check", "--logdir", str(tmp_path))
    assert proc.returncode == 0 and "not enough history" in proc.stdout, proc.stderr
    assert one(tmp_path, min_runs=2).verdict != check.NOT_ENOUGH


def test_missing_samples_fall_back_to_the_recorded_p50(tmp_path: Path):
    steady(tmp_path, 6)
    d = make_run(tmp_path, 6, 0.02)
    shutil.rmtree(d)
    cfg = one(tmp_path)
    assert cfg.basis == "p50" and "samples missing for 1 run(s): their recorded p50 used" in cfg.notes
    assert cfg.verdict == "slower" and cfg.change == pytest.approx(1.0, rel=0.05)


def test_rates_phases_and_counted_metrics(tmp_path: Path):
    steady(tmp_path, 6)
    make_run(tmp_path, 6, 0.02, flops=2 * 30940528640, macs=2 * 15470264320)  # twice the work in twice the time
    assert one(tmp_path).verdict == "slower (counted work +100%)"
    rate = one(tmp_path, metric="achieved_flop_per_s")
    assert not rate.regression and abs(rate.change) < 0.05 and rate.unit == "FLOP/s"
    tput = one(tmp_path, metric="throughput")
    assert tput.regression and tput.change == pytest.approx(-0.5, abs=0.03)
    macs = one(tmp_path, metric="macs")
    assert macs.verdict == "more work (exact)" and macs.regression and macs.change == pytest.approx(1.0)
    assert macs.notes[0] == "counted macs +100.0 %: the model changed"
    assert one(tmp_path, metric="params").verdict == "unchanged (exact)"


def generate_run(logdir: Path, i: int, decode_s: float, n: int = 40) -> None:
    """A generate run's directory: its decode steps in phase_samples.csv, their p50 in history."""
    s = fake_summary(i, scenario="llm", logdir=logdir)
    s.update(workload="generate", config_key="llm|bs=1|float32|cpu|threads=2|tag=|workload=generate")
    rng = np.random.default_rng(i)
    steps = decode_s * np.exp(rng.normal(0, 0.02, n))
    s["phases"] = {"prefill": {"time_s": {"p50": 0.1}}, "decode": {"time_s": {"p50": float(np.median(steps))},
                                                                    "flops": 1000, "other_flops": 0}}
    d = logdir / "llm" / s["run_id"]
    d.mkdir(parents=True)
    fsio.atomic_write_json(d / "summary.json", s)
    fsio.atomic_write_csv(d / "samples.csv", pd.DataFrame({"iteration": range(4), "latency_s": [0.5] * 4}))
    fsio.atomic_write_csv(d / "phase_samples.csv", pd.DataFrame(
        {"iteration": 0, "phase": "decode", "index": range(n), "latency_s": steps}))
    history.append(logdir, s)


def test_a_phase_metric_uses_that_phases_samples(tmp_path: Path):
    for i in range(6):
        generate_run(tmp_path, i, 0.010)
    generate_run(tmp_path, 6, 0.015)  # the decode step is 50 % slower; the whole iteration is not
    steady(tmp_path, 6, start=10)  # another config without the phase: not checked for it
    res = check.check(tmp_path, metric="decode_step_p50")
    (cfg,) = res.configs
    assert cfg.metric == "decode_step_p50" and cfg.basis == "samples" and cfg.regression
    assert cfg.verdict == "slower" and cfg.change == pytest.approx(0.5, abs=0.05)
    latency = {c.config_key: c for c in check.check(tmp_path).configs}
    assert not latency["llm|bs=1|float32|cpu|threads=2|tag=|workload=generate"].regression


def test_cli_formats_and_config_selection(tmp_path: Path):
    steady(tmp_path, 6)
    make_run(tmp_path, 6, 0.02)
    steady(tmp_path, 6, start=20, scenario="other")
    proc = run_cli("history", "check", "--logdir", str(tmp_path), "--format", "markdown")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "### Performance history check: regression"
    rows = [ln for ln in lines if ln.startswith("| vgg16") or ln.startswith("| other")]
    assert len(rows) == 2 and all(ln.count(" | ") == 5 for ln in rows)  # six cells: no stray pipe
    assert "**slower**" in rows[0] and "`0a1b2c3`" in rows[0]
    assert lines[-1] == "**REGRESSION in 1 of 2 config(s): exit 1**"
    proc = run_cli("history", "check", "--logdir", str(tmp_path), "--config", "other", "--format", "json")
    res = json.loads(proc.stdout)
    assert proc.returncode == 0 and [c["config_key"] for c in res["configs"]] == ["other|bs=1|float32|cpu|threads=2|tag="]
    proc = run_cli("history", "check", "--logdir", str(tmp_path), "--config", "vgg16|bs=1|float32|cpu|threads=2|tag=")
    assert proc.returncode == 1 and "REGRESSION in 1 of 1 config(s): exit 1" in proc.stdout


def test_bad_input_is_one_line_exit_2(tmp_path: Path):
    steady(tmp_path / "h", 3)
    cases = [((), tmp_path / "none", "no history at"),
             (("--metric", "speed"), tmp_path / "h", "--metric 'speed': choose from latency_p50"),
             (("--config", "nosuch"), tmp_path / "h", "no such config key or scenario"),
             (("--window", "3"), tmp_path / "h", "smaller than --min-runs"),
             (("--last", "0"), tmp_path / "h", "--last must be at least 1"),
             (("--threshold", "fast"), tmp_path / "h", "--threshold 'fast'"),
             (("--format", "html"), tmp_path / "h", "invalid choice"),
             (("--metric", "decode_step_p50"), tmp_path / "h", "no config in")]
    for extra, logdir, words in cases:
        proc = run_cli("history", "check", "--logdir", str(logdir), *extra)
        assert proc.returncode == 2, (extra, proc.stdout, proc.stderr)
        assert words in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_history_of_a_scenario_named_check_stays_reachable(tmp_path: Path):
    for i in range(2):
        history.append(tmp_path, fake_summary(i, scenario="check", logdir=tmp_path))
    history.append(tmp_path, fake_summary(5, scenario="vgg16", logdir=tmp_path))
    proc = run_cli("history", "check.py", "--logdir", str(tmp_path))
    assert proc.returncode == 0 and proc.stdout.count("check · bs 1") == 2 and "vgg16" not in proc.stdout
    proc = run_cli("history", "vgg16", "--logdir", str(tmp_path))  # history SCENARIO as before
    assert proc.returncode == 0 and "vgg16 · bs 1" in proc.stdout and "check · bs" not in proc.stdout
    proc = run_cli("history", "check", "--logdir", str(tmp_path))  # the check itself
    assert proc.returncode == 0 and proc.stdout.startswith("history check:")


def test_the_last_k_runs_are_judged_together(tmp_path: Path):
    """Three runs 30 % slower after eight steady ones: --last 3 judges them together against the eight; judged
    one at a time the latest sits on a new level that has only two runs behind it (the step starts the window)."""
    steady(tmp_path, 8)
    steady(tmp_path, 3, p50=0.013, start=8, seed=5)
    cfg = one(tmp_path, latest=3)
    assert cfg.regression and cfg.verdict == "slower" and len(cfg.latest_runs) == 3 and len(cfg.baseline_runs) == 8
    assert 0.25 < cfg.change < 0.35
    cfg = one(tmp_path)
    assert cfg.steps and cfg.steps[-1]["run_id"] == fake_summary(8)["run_id"] and cfg.verdict == check.NOT_ENOUGH
    proc = run_cli("history", "check", "--logdir", str(tmp_path), "--last", "3", "--format", "json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["latest"] == 3, proc.stderr


def test_changed_work_is_judged_with_a_short_window(tmp_path: Path):
    """A timing step leaves 2 runs in the window (fewer than --min-runs 3), but the latest run's counted work
    grew 4x: exact evidence, judged anyway (CI once saw a noisy +24 % 'step' inside 4 quiet runs hide it; +60 % here)."""
    work = fake_summary(0)["flops"]
    for i, p50 in enumerate((0.010, 0.010, 0.016, 0.016)):
        make_run(tmp_path, i, p50, n=30)
    make_run(tmp_path, 4, 0.05, n=30, flops=4 * work)
    cfg = one(tmp_path, min_runs=3)
    assert cfg.work_change == pytest.approx(3.0) and len(cfg.baseline_runs) == 2
    assert cfg.regression and cfg.verdict == "slower (counted work +300%)"
    assert "judged on 2 quiet run(s), fewer than 3, because the counted work changed" in cfg.notes
