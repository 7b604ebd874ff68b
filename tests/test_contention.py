"""ContentionProbe: real busy processes against a real 2-thread torch loop; judge/merge by hand."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import hogs_to_halve
from harness.pipeline import contention as ct
from harness.pipeline.contention import ContentionProbe, judge, merge

HOG = "import sys; print('spinning', flush=True)\nwhile True: pass"


def start_hogs(n: int) -> list[subprocess.Popen]:
    """n busy processes, each already spinning when this returns (it waits for their line)."""
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.PIPE, text=True))
        for p in procs:
            assert p.stdout.readline().strip() == "spinning"
    except BaseException:
        stop_hogs(procs)
        raise
    return procs


def stop_hogs(procs: list[subprocess.Popen]) -> None:
    for p in procs:  # by pid, each one we started
        p.kill()
        p.wait()


def probed_loop(iters: int = 5) -> dict:
    """A Linear(512, 512) applied 20 times to a batch of 64, 2 threads, inside a probe (short:
    two threads next to busy neighbours run 10-100x slower, OpenMP's barrier waits for the
    thread kept off the CPU)."""
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        layer, x = torch.nn.Linear(512, 512), torch.randn(64, 512)
        with torch.inference_mode():
            for _ in range(3):
                layer(x)  # warm-up outside the span
            with ContentionProbe(threads=2, iterations=iters) as probe:
                for _ in range(iters):
                    y = x
                    for _ in range(20):
                        y = layer(y)
        return probe.result()
    finally:
        torch.set_num_threads(old)


def test_busy_neighbours_mark_the_span_disturbed_and_a_quiet_span_is_quiet():
    # Hogged: the CPUs this process may run on (its affinity mask, which the hogs inherit),
    # N of them, shared by 2N runnable threads: ours wait for a CPU about half the time,
    # far above the 10% limit: disturbed, every time, on 2 CPUs as on 16.
    cpus = len(os.sched_getaffinity(0))
    hogs = start_hogs(hogs_to_halve(threads=2))
    try:
        hogged = [probed_loop() for _ in range(2)]
    finally:
        stop_hogs(hogs)
    machine_cpus = os.cpu_count() or cpus
    for r in hogged:
        assert r["disturbed"] is True, r
        assert "waited for a CPU" in r["reason"] and "limit 10%" in r["reason"], r["reason"]
        assert r["run_delay_share"] >= ct.RUN_DELAY_SHARE_MAX
        # our hogs had a good part of the CPUs they could use (others_cpu_share is a share of the whole
        # machine's CPUs, of which this process's affinity mask may hold fewer)
        assert r["others_cpu_share"] > 0.25 * cpus / machine_cpus
        assert r["cpu_share"] == pytest.approx(r["cpu_s"] / (r["wall_s"] * 2))
        assert r["involuntary_switches_per_iter"] == pytest.approx(r["involuntary_switches"] / 5)
    # Quiet: the same loop without our hogs. Other engineers' tests share this machine, so a
    # quiet attempt may truly be disturbed; the test retries up to 3 times and asserts that
    # at least one attempt is quiet, or else that every disturbed attempt is explained by
    # others really using the CPUs (our threads can only wait while someone else holds a
    # CPU: with 2 threads on 2 or more CPUs, others_cpu_share >= run_delay_share, halved for clock
    # granularity). A probe that flags an idle machine fails either way; a busy one cannot
    # make this test flake.
    quiet = []
    for _ in range(3):
        quiet.append(probed_loop())
        if not quiet[-1]["disturbed"]:
            break
    if quiet[-1]["disturbed"]:
        for r in quiet:
            assert r["others_cpu_share"] >= r["run_delay_share"] / 2, r
    else:
        assert quiet[-1]["reason"] == ""
        assert quiet[-1]["run_delay_share"] < ct.RUN_DELAY_SHARE_MAX


def figures(**kw) -> dict:
    base = {"device": "cpu", "threads": 2, "cpu_share": 0.95, "run_delay_share": 0.0, "steal_share": 0.0,
            "others_cpu_share": 0.0, "loadavg_1m_before": 0.5, "loadavg_1m_after": 0.5,
            "involuntary_switches_per_iter": 1.0, "gpu_other_processes": None}
    return {**base, **kw}


def test_judge_run_delay_threshold_is_inclusive():
    assert judge(figures(run_delay_share=0.0999)) == (False, "")
    disturbed, reason = judge(figures(run_delay_share=0.10, cpu_share=0.48))
    assert disturbed
    assert reason == "its threads waited for a CPU 10% of the time (limit 10%); the process had 48% of its 2 CPUs"


def test_judge_steal_threshold():
    assert judge(figures(steal_share=0.099)) == (False, "")
    assert judge(figures(steal_share=None)) == (False, "")
    assert judge(figures(steal_share=0.12)) == (
        True, "the hypervisor took 12% of the machine's CPU time (steal, limit 10%)")


def test_judge_cpu_share_only_without_run_delay_and_only_on_cpu():
    # a known run-queue delay of 0 wins over a low CPU share (workers asleep, not kept off the CPU)
    assert judge(figures(cpu_share=0.10, run_delay_share=0.0)) == (False, "")
    assert judge(figures(cpu_share=0.70, run_delay_share=None)) == (False, "")
    assert judge(figures(cpu_share=0.69, run_delay_share=None, threads=1)) == (
        True, "the process had 69% of its 1 CPU (limit 70%; no run-queue delay on this kernel)")
    assert judge(figures(cpu_share=0.10, run_delay_share=None, device="cuda:0")) == (False, "")


def test_judge_warn_only_figures_never_decide():
    assert judge(figures(loadavg_1m_before=40.0, loadavg_1m_after=40.0, others_cpu_share=0.99,
                         involuntary_switches_per_iter=500.0, gpu_other_processes=3)) == (False, "")


def test_judge_names_every_rule_that_fired():
    disturbed, reason = judge(figures(run_delay_share=0.25, cpu_share=0.75, steal_share=0.2))
    assert disturbed
    assert reason.split("; ") == ["its threads waited for a CPU 25% of the time (limit 10%)",
                                  "the process had 75% of its 2 CPUs",
                                  "the hypervisor took 20% of the machine's CPU time (steal, limit 10%)"]


def test_merge_sums_times_and_keeps_the_worst():
    timed = ct.verdict({"device": "cpu", "threads": 2, "iterations": 20, "spans": 1, "wall_s": 2.0, "cpu_s": 3.8,
                        "cpu_share": 0.95, "run_delay_s": 0.2, "run_delay_share": 0.05,
                        "involuntary_switches": 30, "involuntary_switches_per_iter": 1.5, "steal_share": 0.01,
                        "others_cpu_share": 0.05, "loadavg_1m_before": 1.0, "loadavg_1m_after": 1.5,
                        "gpu_other_processes": None})
    profiled = ct.verdict({"device": "cpu", "threads": 2, "iterations": 5, "spans": 1, "wall_s": 1.0, "cpu_s": 1.2,
                           "cpu_share": 0.60, "run_delay_s": 0.8, "run_delay_share": 0.40,
                           "involuntary_switches": 100, "involuntary_switches_per_iter": 20.0, "steal_share": None,
                           "others_cpu_share": 0.45, "loadavg_1m_before": 1.4, "loadavg_1m_after": 1.2,
                           "gpu_other_processes": None})
    assert (timed["disturbed"], profiled["disturbed"]) == (False, True)
    m = merge([timed, profiled])
    assert m["wall_s"] == pytest.approx(3.0)  # 2.0 + 1.0
    assert m["cpu_s"] == pytest.approx(5.0)  # 3.8 + 1.2
    assert m["run_delay_s"] == pytest.approx(1.0)  # 0.2 + 0.8
    assert (m["involuntary_switches"], m["iterations"], m["spans"]) == (130, 25, 2)
    assert m["cpu_share"] == 0.60  # lowest
    assert m["run_delay_share"] == 0.40  # highest, and so on
    assert m["involuntary_switches_per_iter"] == 20.0
    assert m["steal_share"] == 0.01  # None is unknown, not zero
    assert (m["loadavg_1m_before"], m["loadavg_1m_after"]) == (1.4, 1.5)
    assert m["gpu_other_processes"] is None
    assert m["disturbed"] is True and m["reason"] == profiled["reason"]
    assert m["thresholds"] == ct.THRESHOLDS
    assert merge([timed]) == timed
    with pytest.raises(ValueError):
        merge([])


PROC_STAT = """cpu  100 0 50 800 10 0 0 40 0 0
cpu0 50 0 25 400 5 0 0 20 0 0
cpu1 50 0 25 400 5 0 0 20 0 0
intr 12345
"""
PROC_STAT_LATER = """cpu  200 0 70 900 20 0 0 50 5 0
cpu0 100 0 35 450 10 0 0 25 5 0
"""


def test_proc_stat_steal_and_others_share_by_hand():
    before, after = ct.parse_proc_stat(PROC_STAT), ct.parse_proc_stat(PROC_STAT_LATER)
    assert before == {"user": 100, "nice": 0, "system": 50, "idle": 800, "iowait": 10, "irq": 0,
                      "softirq": 0, "steal": 40}  # guest fields are inside user, left out
    # deltas: user 100, system 20, idle 100, iowait 10, steal 10 -> all 240 jiffies
    # busy = 240 - idle 100 - iowait 10 - steal 10 = 120; ours: 0.5 s x 100 ticks/s = 50
    steal, others = ct.stat_shares(before, after, own_cpu_s=0.5, clock_ticks=100)
    assert steal == pytest.approx(10 / 240)
    assert others == pytest.approx(70 / 240)
    # our own time can exceed the busy jiffies by rounding: clamped at 0
    assert ct.stat_shares(before, after, own_cpu_s=5.0, clock_ticks=100)[1] == 0.0


def test_proc_stat_without_steal_field_or_cpu_line():
    old = ct.parse_proc_stat("cpu  1 2 3 4 5 6 7\n")  # a kernel reporting 7 fields
    assert "steal" not in old
    later = ct.parse_proc_stat("cpu  2 2 3 9 5 6 7\n")
    steal, others = ct.stat_shares(old, later, own_cpu_s=0.0, clock_ticks=100)
    assert steal is None and others == pytest.approx(1 / 6)  # user +1, idle +5
    assert ct.parse_proc_stat("intr 1 2 3\n") is None
    assert ct.stat_shares(None, later, 0.0, 100) == (None, None)


def test_run_delays_from_schedstat_files(tmp_path):
    for tid, text in {"101": "5000 2500000000 7\n", "102": "10 500000000 1\n"}.items():
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "schedstat").write_text(text)
    (tmp_path / "103").mkdir()  # a thread whose schedstat vanished: skipped
    before = ct.run_delays_ns(tmp_path)
    assert before == {"101": 2_500_000_000, "102": 500_000_000}
    after = {"101": 3_000_000_000, "102": 500_000_000, "104": 250_000_000}  # 104 born in the span
    assert ct.run_delay_between(before, after) == pytest.approx(0.5 + 0.0 + 0.25)
    assert ct.run_delay_between(None, after) is None
    assert ct.run_delays_ns(tmp_path / "missing") is None


def test_result_before_the_span_ends_is_an_error_and_cpu_has_no_gpu_figure():
    probe = ContentionProbe(threads=1)
    with pytest.raises(RuntimeError):
        probe.result()
    with probe:
        sum(range(10000))
    r = probe.result()
    assert r["gpu_other_processes"] is None and r["iterations"] is None
    assert r["involuntary_switches_per_iter"] is None
    assert set(r) >= {"cpu_share", "cpu_s", "wall_s", "threads", "involuntary_switches",
                      "involuntary_switches_per_iter", "loadavg_1m_before", "loadavg_1m_after", "steal_share",
                      "gpu_other_processes", "disturbed", "reason", "thresholds"}
    assert ct.gpu_other_processes("cpu") is None
