"""harness.report.terminal on a real profiled run of a tiny conv model: which rows, which columns, which numbers."""
from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from torch import nn

from harness.core.units import percent, seconds, si
from harness.errors import HarnessError
from harness.report.terminal import SORT_KEYS, render_summary, render_top_ops

# conftest.TINY_SCENARIO's model at batch 2: conv 3->8 3x3 pad 1 on 16x16, relu, maxpool 2, linear 512->10
CONV_FLOPS = 2 * (2 * 8 * 16 * 16 * 3 * 3 * 3)  # 2 x 110,592 MACs
CONV_BIAS_FLOPS = 2 * 8 * 16 * 16               # one bias add per output: other FLOPs
POOL_OTHER_FLOPS = (2 * 8 * 8 * 8) * 2 * 2      # numel(out) x kernel window: 4,096 compares


@pytest.fixture(scope="module")
def run():
    import harness

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, 10))
    return harness.profile(model, torch.randn(2, 3, 16, 16), warmup=1, iters=3, threads=1)


def table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of the first aligned table in ``text``, cut at the columns of its dashed rule."""
    lines = text.splitlines()
    rule_at = next(i for i, line in enumerate(lines) if line.startswith("---"))
    spans, pos = [], 0
    for dashes in lines[rule_at].split("  "):
        spans.append((pos, pos + len(dashes)))
        pos += len(dashes) + 2
    cut = lambda line: [line[a:b].strip() for a, b in spans]  # noqa: E731
    head = cut(lines[rule_at - 1])
    rows = []
    for line in lines[rule_at + 1:]:
        if not line or line.startswith("  "):  # the legend under the table
            break
        rows.append(dict(zip(head, cut(line.ljust(pos)))))
    return head, rows


def test_default_table_is_dispatch_level_with_consistent_columns(run):
    out = render_top_ops(run.ops, run.summary, top=50, sort_by="self_time")
    head, rows = table(out)
    # the run has dispatch_calls (calls at the dispatch level), so "calls" needs no caveat
    assert head == ["operator", "calls", "time", "share", "FLOP", "other FLOP", "moved", "achieved", "of peak",
                    "net alloc"]
    ops = run.ops
    dispatch = ops[ops["kind"] == "op"]
    assert [r["operator"] for r in rows] == list(dispatch.sort_values("self_time_s", ascending=False,
                                                                      kind="stable")["name"])
    assert not {"ProfilerStep*", "model_inference", "aten::mkldnn_convolution"} & {r["operator"] for r in rows}
    assert out.splitlines()[0].startswith(f"Top {len(dispatch)} operators of {len(dispatch)} at dispatch level")
    assert "calls*" not in out
    by = {r["operator"]: r for r in rows}
    conv = by["aten::conv2d"]
    c = dispatch.set_index("name").loc["aten::conv2d"]
    assert conv["FLOP"] == si(CONV_FLOPS, "FLOP") == "221 KFLOP"
    assert conv["other FLOP"] == si(CONV_BIAS_FLOPS, "FLOP") and by["aten::flatten"]["other FLOP"] == "—"
    assert conv["achieved"] == si(c["achieved_flop_per_s"], "FLOP/s") and conv["of peak"] == percent(c["utilization"])
    assert conv["time"] == seconds(c["self_time_s"])


def test_ops_without_multiply_adds_show_their_other_work(run):
    _, rows = table(render_top_ops(run.ops, run.summary, top=50, sort_by="self_time"))
    pool = {r["operator"]: r for r in rows}["aten::max_pool2d"]
    p = run.ops.set_index("name").loc["aten::max_pool2d"]
    assert p["other_flops"] == POOL_OTHER_FLOPS
    assert pool["FLOP"] == "—" and pool["other FLOP"] == si(POOL_OTHER_FLOPS, "FLOP") == "4.10 KFLOP"
    assert pool["moved"] == si(p["bytes"], "B") and pool["achieved"] == si(p["achieved_bytes_per_s"], "B/s")
    # the bandwidth is unknown until calibrated, known after: either way the cell is the B/s share
    assert pool["of peak"] == percent(p["bandwidth_utilization"] if pd.notna(p["bandwidth_utilization"]) else None)
    assert pool["net alloc"] == si(p["cpu_memory_usage_bytes"], "B")


def test_all_rows_adds_labels_nested_rows_and_profiler_columns(run):
    head, rows = table(render_top_ops(run.ops, run.summary, top=500, sort_by="self_time", all_rows=True))
    assert head[:2] == ["operator", "kind"] and "prof self CPU" in head and "prof CPU total" in head
    assert len(rows) == len(run.ops)
    kinds = {r["operator"]: r["kind"] for r in rows}
    assert kinds["ProfilerStep*"] == "label" and kinds["aten::conv2d"] == "op"
    nested = [r for r in rows if r["kind"] == "nested"]
    assert nested and all(r["FLOP"] == "" and r["achieved"] == "" for r in nested)  # their work is in their op's row


def test_sort_by_a_profiler_column_shows_it_and_keeps_dispatch_level(run):
    head, rows = table(render_top_ops(run.ops, run.summary, top=2, sort_by="cpu_time_total"))
    assert head[-1] == "prof CPU total" and len(rows) == 2
    dispatch = run.ops[run.ops["kind"] == "op"].sort_values("cpu_time_total_s", ascending=False, kind="stable")
    assert [r["operator"] for r in rows] == list(dispatch["name"][:2])
    assert [r["prof CPU total"] for r in rows] == [seconds(v) for v in dispatch["cpu_time_total_s"][:2]]
    with pytest.raises(HarnessError, match="not available on cpu runs"):
        render_top_ops(run.ops, run.summary, top=2, sort_by="cuda_time_total")
    assert set(SORT_KEYS) >= {"self_time", "cpu_time_total", "flops", "calls"}


def test_summary_names_its_times(run):
    s = run.summary
    out = render_summary(s)
    assert out.splitlines()[0].endswith(", 1 thread)")
    lat = next(line for line in out.splitlines() if line.strip().startswith("latency"))
    assert f"p50 {seconds(s['latency_s']['p50'])}" in lat and "un-profiled" in lat
    ach = next(line for line in out.splitlines() if line.strip().startswith("achieved"))
    assert f"{si(s['achieved_flop_per_s'], 'FLOP/s')} (FLOPs / p50)" in ach and percent(s["utilization"]) in ach
    prof = next(line for line in out.splitlines() if line.strip().startswith("profiled"))
    root = run.modules[run.modules["depth"] == 0]["time_s"].iloc[0]
    # the op time the tables use is the module tree's root time (time_by_module.png's total)
    assert f"op time {seconds(s['profiled']['op_time_per_forward_s'])} per forward" in prof
    assert seconds(root) == seconds(s["profiled"]["op_time_per_forward_s"])


def _with(s: dict, **over) -> dict:
    out = copy.deepcopy(s)
    out.update(over)
    return out


def test_summary_warnings(run):
    quiet = _with(run.summary, latency_s={**run.summary["latency_s"], "p50": 1.0, "p90": 1.1, "min": 0.95})
    assert "warning:" not in render_summary(quiet) and "NOISY" not in render_summary(quiet)
    noisy = _with(run.summary, iters=5, latency_s={"p50": 1.31, "p90": 2.52, "p99": 2.62, "min": 0.36, "max": 2.64,
                                                   "std": 1.0, "mean": 1.4, "n": 5})
    out = render_summary(noisy)
    assert "NOISY (see warning)" in out
    assert ("warning: timing noisy: p90/p50 = 1.92 and p50/min = 3.64 (above 1.25) — the p50 is not a stable figure; "
            "rerun with more iterations (--iters 50)") in out
    disturbed = _with(quiet, contention={"disturbed": True, "reason": "2 other processes used 1.6 CPUs"})
    assert ("warning: timing disturbed: 2 other processes used 1.6 CPUs — these figures are not comparable"
            in render_summary(disturbed))
    exceeded = _with(quiet, peak_exceeded=[{"what": "run", "name": "model", "achieved_flop_per_s": 2.2e11,
                                            "ceiling_flop_per_s": 1.66e11, "source": "derived"}])
    out = render_summary(exceeded)
    warn = [line for line in out.splitlines() if line.startswith("warning:")]
    assert warn == ["warning: peak exceeded: run model at 220 GFLOP/s > 166 GFLOP/s (derived) — the ceiling is wrong,"
                    " not the result"]
    assert "(above the ceiling: see warning)" in out


def test_phases_get_their_own_tables(run):
    s = _with(run.summary, phases={"prefill": {"macs": 100, "flops": 200, "time_s": {"p50": 0.02}},
                                   "decode": {"macs": 10, "flops": 20, "time_s": {"p50": 0.5}}})
    out = render_summary(s)
    head, rows = table(out[out.index("Phases"):])
    assert [r["Phase"] for r in rows] == ["prefill", "decode"]
    assert [r["Time p50 (s, un-profiled)"] for r in rows] == [seconds(0.02), seconds(0.5)] == ["20 ms", "500 ms"]
    ops = run.ops.assign(phase=["prefill" if n == "aten::conv2d" else "decode" for n in run.ops["name"]])
    text = render_top_ops(ops, s, top=50, sort_by="self_time")
    first, second = text.split("\n\n")
    assert "in phase prefill" in first.splitlines()[0] and "in phase decode" in second.splitlines()[0]
    assert [r["operator"] for r in table(first)[1]] == ["aten::conv2d"]
    assert "aten::conv2d" not in {r["operator"] for r in table(second)[1]}
    # one phase (every run today): the plain table
    assert "in phase" not in render_top_ops(run.ops, run.summary, top=5, sort_by="self_time")
