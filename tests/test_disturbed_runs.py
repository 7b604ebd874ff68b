"""A run measures its own disturbance, and compare never calls noise a regression.

Real processes only: the hog is busy Python processes (two per CPU, less our two threads), started here and killed
by pid; the runs are real `python -m harness run` processes; compare reads their files.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, hogs_to_halve, run_cli

SCEN = ROOT / "benchmarks" / "scenarios"


class Hog:
    """Busy processes enough to keep a 2-thread run off the CPU half the time (conftest.hogs_to_halve:
    2 on 2 CPUs, 30 on 16) while the block runs; killed by pid on the way out."""

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs_to_halve(2))]
        time.sleep(0.3)  # let them take the CPUs
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        assert all(p.poll() is not None for p in self.procs)  # none left behind


def _run(tmp_path: Path, scenario: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = run_cli("run", str(SCEN / f"{scenario}.py"), "--threads", "2", "--iters", "10", "--warmup", "2",
                   "--top", "0", "--logdir", str(tmp_path / "logs"), *extra, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = next(line.split(None, 1)[1].strip().rstrip("/") for line in proc.stdout.splitlines()
                   if line.strip().startswith("files"))
    return proc, json.loads((Path(run_dir) / "summary.json").read_text())


def test_a_hogged_run_says_so_and_compare_refuses_a_verdict(tmp_path):
    with Hog():
        proc, hogged = _run(tmp_path, "linear512_40")
    c = hogged["contention"]
    assert c["disturbed"] is True and c["reason"], c
    assert "timing disturbed" in proc.stdout  # the terminal warning line
    # the kept attempt's figures are the ones in the summary; samples.csv holds every attempt
    assert c["attempts"] == 1 and c["kept_attempt"] == 0
    _, quiet = _run(tmp_path, "linear512_40", "--retry-disturbed", "2")
    cmp = run_cli("compare", quiet["path"], hogged["path"], cwd=tmp_path)
    # whatever the quiet run measured, a disturbed side never yields a regression verdict
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    assert "disturbed" in cmp.stdout
    strict = run_cli("compare", quiet["path"], hogged["path"], "--strict", cwd=tmp_path)
    assert strict.returncode == 2, strict.stdout + strict.stderr


def test_a_quiet_pair_with_twice_the_work_is_still_a_regression(tmp_path):
    _, base = _run(tmp_path, "linear512_40", "--retry-disturbed", "3")
    _, slow = _run(tmp_path, "linear512_80", "--retry-disturbed", "3")
    if base["contention"]["disturbed"] or slow["contention"]["disturbed"]:
        pytest.skip("this machine stayed busy through 4 attempts; a verdict needs two quiet runs "
                    f"({base['contention']['reason']} / {slow['contention']['reason']})")
    # 80 vs 40 applications of the same 512x512 layer on 64 rows: exactly 2x the MACs
    assert slow["macs"] == 2 * base["macs"] == 2 * 40 * 64 * 512 * 512
    cmp = run_cli("compare", base["path"], slow["path"], "--force", cwd=tmp_path)  # two files: names differ
    assert cmp.returncode == 1, cmp.stdout + cmp.stderr
    assert "REGRESSION" in cmp.stdout


def test_retry_disturbed_times_again_and_keeps_one_attempt(tmp_path):
    """--retry-disturbed 2 next to busy neighbours for the whole run: the first attempt is disturbed, so
    the loop is timed again (2 or 3 attempts: a retry may find the CPUs free); samples.csv holds every
    attempt's iterations and marks exactly one attempt kept, the one the summary's figures come from."""
    import pandas as pd

    iters = 4
    with Hog():
        proc = run_cli("run", str(SCEN / "linear512_40.py"), "--threads", "2", "--iters", str(iters), "--warmup", "1",
                       "--active", "1", "--top", "0", "--retry-disturbed", "2", "--json",
                       "--logdir", str(tmp_path / "logs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    c = s["contention"]
    samples = pd.read_csv(Path(s["path"]) / "samples.csv")
    assert c["attempts"] in (2, 3), c
    assert sorted(samples.attempt.unique()) == list(range(c["attempts"]))
    assert samples.groupby("attempt").size().tolist() == [iters] * c["attempts"]
    kept = samples[samples.kept]
    assert set(kept.attempt) == {c["kept_attempt"]} and len(kept) == iters
    # the headline is the kept attempt's: its median (4 samples: the mean of the middle two)
    middle = sorted(kept.latency_s)[1:3]
    assert s["latency_s"]["p50"] == pytest.approx(sum(middle) / 2)
    assert s["latency_s"]["n"] == iters
    # retried only while disturbed: the kept attempt is a quiet one if any was, else the least delayed
    if c["attempts"] == 2:  # stopped early: the second attempt was quiet, and that one is kept
        assert (c["kept_attempt"], c["disturbed"]) == (1, False)
    if c["disturbed"]:
        assert c["attempts"] == 3  # every attempt was disturbed: all retries spent
