"""Findings (harness.findings): each family's arithmetic on hand-built models, written out here.

The events are the counter's own (harness.count on a tiny model); the times, ceilings and the per-op
overhead are set by hand so the prediction can be computed on paper. One end-to-end test runs
``run --verify-findings 1`` on a small model.
"""
from __future__ import annotations

import dataclasses
import json
import time

import pandas as pd
import pytest
import torch

import harness
from harness.findings import Finding, from_dict, ranked
from harness.findings import attention, channels, compiled, dtype, elementwise, fragments, layout, underfilled
from harness.findings.analyze import ab_base, find
from harness.findings.context import Context, tensor_shapes
from harness.findings.overhead import dispatch_overhead_s
from harness.findings.verify import batch_factor, changes, error_of
from harness.hardware.ceilings import Peak
from harness.pipeline.spec import RunSpec

from conftest import F32, Fn, run_cli, write_scenario


def peak(flop: float, bw: float, dt: str = "float32") -> Peak:
    return Peak(name="test device", dtype=dt, flop_per_s=flop, bytes_per_s=bw, source="table", note="test",
                op_ceilings={"matmul": (flop, dt), "conv": (flop, dt), "other": (flop, dt)})


def context(model, x, *, per_call_s: float, latency_s: float, profiled_s: float, pk: Peak,
            overhead_s: float = 1e-6) -> Context:
    """The counter's real events for ``model(x)``; every call takes ``per_call_s`` profiled."""
    counts = harness.count(model, x)
    ev = counts.events
    by_shape = ev.groupby(["phase", "op", ev.input_shapes.astype(str)], sort=False).size().reset_index(name="calls")
    by_shape = by_shape.rename(columns={"op": "name"}).assign(kind="op", dispatch_calls=by_shape["calls"],
                                                               self_time_s=by_shape["calls"] * per_call_s)
    summary = {"latency_s": {"p50": latency_s}, "profiled": {"time_per_iteration_s": profiled_s},
               "dtype": "float32", "workload": "forward"}
    return Context(summary=summary, ops=by_shape.drop(columns="input_shapes"), ops_by_shape=by_shape,
                   modules=counts.module_totals(), events=ev, peak=pk, overhead_s=overhead_s,
                   ab_base="python -m harness ab m.py m.py:{side}")


def test_elementwise_chain_removes_twice_its_intermediates():
    x = torch.randn(8, 1024)  # 8192 elements = 32,768 bytes per float32 tensor
    model = Fn(lambda t: torch.sigmoid(torch.relu(t) * 2.0 + 1.0))
    ctx = context(model, x, per_call_s=20e-6, latency_s=100e-6, profiled_s=200e-6, pk=peak(1e12, 1e9))
    found = [f for f in find(ctx) if f.family == "elementwise"]
    assert len(found) == 1
    f = found[0]
    (row,) = f.evidence
    tensor = 8192 * F32
    assert row["ops"] == "relu → mul → add → sigmoid" and row["calls"] == 4
    assert row["bytes"] == 4 * 2 * tensor  # each op reads one tensor and writes one: 262,144 B
    assert row["intermediate_bytes"] == 3 * tensor  # relu, mul and add outputs: 98,304 B
    assert row["removed_bytes"] == 2 * 3 * tensor  # each written once and read once: 196,608 B
    # the chain's measured rate: 80 us x 196,608 / 262,144 = 60 us saved of the profiled 200 us
    assert row["time_s"] == pytest.approx(80e-6)
    assert row["saved_s"] == pytest.approx(60e-6)
    assert f.saved_share == pytest.approx(0.30)
    assert f.saved_s == pytest.approx(0.30 * 100e-6)  # that share of the latency p50
    assert f.predicted_ratio == pytest.approx(0.70)
    assert f.ab_side == "compile" and f.ab == "python -m harness ab m.py m.py:compile" and f.verifiable


def test_chain_too_small_for_its_dispatch_is_a_fragment_not_a_chain():
    x = torch.ones(4)
    model = Fn(lambda t: torch.relu(t) * 2.0 + 1.0)
    # 3 ops x 32 B at 1 GB/s = 96 ns of bytes, under 3 x 1 us of dispatch: not memory-bound
    ctx = context(model, x, per_call_s=5e-6, latency_s=100e-6, profiled_s=100e-6, pk=peak(1e12, 1e9))
    assert elementwise.find(ctx) == []


def test_1x1_conv_unequal_widths_memory_access_cost():
    conv = torch.nn.Conv2d(16, 64, 1)
    ctx = context(conv, torch.randn(1, 16, 8, 8), per_call_s=60e-6, latency_s=100e-6, profiled_s=100e-6,
                  pk=peak(1e12, 1e9))
    (f,) = [f for f in channels.find(ctx) if f.id == "channels:G1"]
    (row,) = f.evidence
    # h·w·(c1+c2) + c1·c2 = 8·8·(16+64) + 16·64 = 5,120 + 1,024 = 6,144 elements
    assert row["mac_elements"] == 8 * 8 * (16 + 64) + 16 * 64 == 6144
    # equal width c = sqrt(16·64) = 32: 2·h·w·c + c² = 2·64·32 + 1,024 = 5,120
    assert row["mac_equal_elements"] == pytest.approx(2 * 64 * 32 + 32 * 32) == 5120
    assert row["excess_bytes"] == pytest.approx((6144 - 5120) * F32)  # 4,096 B
    # memory-bound (131,072 FLOP at 1 TFLOP/s = 0.13 us < 24,576 B at 1 GB/s = 24.6 us):
    # 60 us x (24.576 - 20.48) / 24.576 = 10 us
    assert row["saved_s"] == pytest.approx(60e-6 * (6144 - 5120) / 6144)
    assert f.saved_share == pytest.approx(0.10)
    assert f.needs_code_change and not f.verifiable and f.ab is None


def test_depthwise_conv_is_G2():
    conv = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16)
    ctx = context(conv, torch.randn(1, 16, 8, 8), per_call_s=60e-6, latency_s=100e-6, profiled_s=100e-6,
                  pk=peak(1e12, 1e9))
    (f,) = channels.find(ctx)
    assert f.id == "channels:G2"
    (row,) = f.evidence
    # N·h1·w1·c1 + N·h2·w2·c2 + c1·c2·k²/g = 64·16 + 64·16 + 16·16·9/16 = 2,192
    assert row["mac_elements"] == 64 * 16 + 64 * 16 + 16 * 16 * 9 / 16 == 2192
    # c = sqrt(16·16/16) = 4: N·(h1·w1 + h2·w2)·c + c²·k² = 128·4 + 16·9 = 656
    assert row["mac_equal_elements"] == pytest.approx(656)
    assert row["groups"] == 16 and row["kernel"] == 9


def test_many_tiny_ops_cost_calls_times_measured_overhead():
    def fifty_adds(t):
        for _ in range(50):
            t = t + 1.0
        return t

    ctx = context(Fn(fifty_adds), torch.ones(4), per_call_s=8e-6, latency_s=400e-6, profiled_s=500e-6,
                  pk=peak(1e12, 1e9), overhead_s=2e-6)
    (f,) = fragments.find(ctx)
    (row,) = f.evidence
    assert row["op"] == "aten::add" and row["calls"] == 50
    assert row["roofline_s_per_call"] < 2e-6  # 32 B at 1 GB/s = 32 ns: under one dispatch
    # 50 calls x 2 us = 100 us of the latency p50 400 us
    assert f.saved_s == pytest.approx(100e-6)
    assert f.saved_share == pytest.approx(0.25)
    assert f.time_s == pytest.approx(50 * 8e-6)  # their profiled time, evidence only
    assert elementwise.find(ctx) == []  # 1.6 us of bytes under 100 us of dispatch: no G4 chain


def _matmul_ctx(nbytes: float, bf16_flop: float) -> Context:
    ops = pd.DataFrame([{"name": "aten::linear", "phase": "forward", "kind": "op", "dispatch_calls": 1,
                         "self_time_s": 1e-3, "flops": 2e8, "bytes": nbytes}])
    summary = {"latency_s": {"p50": 2e-3}, "profiled": {"time_per_iteration_s": 2e-3}, "dtype": "float32"}
    return Context(summary=summary, ops=ops, ops_by_shape=ops, modules=pd.DataFrame(), peak=peak(1e11, 1e10),
                   alternates={"bfloat16": peak(bf16_flop, 1e10, "bfloat16")}, ab_base="ab m m:{side}")


def test_fp32_matmul_with_a_higher_bf16_ceiling():
    # ceilings 100 GFLOP/s fp32, 400 GFLOP/s bf16, 10 GB/s; the op takes 1 ms and moves 4 MB:
    # t_bf16 = max(1 ms x 1e11 / 4e11, (4e6 B / 2) / 1e10 B/s) = max(250 us, 200 us) = 250 us -> saves 750 us
    (f,) = dtype.find(_matmul_ctx(4e6, 4e11))
    (row,) = f.evidence
    assert row["predicted_s"] == pytest.approx(250e-6)
    assert f.saved_s == pytest.approx(750e-6) and f.saved_share == pytest.approx(0.375)
    assert f.ab_side == "dtype=bfloat16" and f.ab == "ab m m:dtype=bfloat16"
    # memory-bound in bf16: (8e6 / 2) / 1e10 = 400 us > 250 us -> saves 600 us
    (f,) = dtype.find(_matmul_ctx(8e6, 4e11))
    assert f.saved_s == pytest.approx(600e-6)
    assert dtype.find(_matmul_ctx(4e6, 1e11)) == []  # no higher ceiling: nothing to gain
    derived = _matmul_ctx(4e6, 4e11)
    derived.alternates = {"bfloat16": dataclasses.replace(derived.alternates["bfloat16"], source="derived")}
    assert dtype.find(derived) == []  # a CPU's derived bf16 figure is not a rate eager code reaches


def test_overhead_is_measured_fast_and_cached():
    t0 = time.perf_counter()
    first = dispatch_overhead_s("cpu", grad=True)
    took = time.perf_counter() - t0
    assert 1e-8 < first < 1e-3 and took < 0.05
    assert dispatch_overhead_s("cpu", grad=True) == first  # once per process


def test_ranking_document_and_changes():
    a = Finding(id="elementwise:forward", family="elementwise", title="a", phase="forward", saved_share=0.2,
                ab_side="compile")
    b = Finding(id="fragments:forward", family="fragments", title="b", phase="forward", saved_share=0.1,
                ab_side="compile")
    c = Finding(id="channels:G1", family="channels", title="c", phase=None, saved_share=0.3, needs_code_change=True)
    d = Finding(id="dtype:bfloat16", family="dtype", title="d", phase=None, saved_share=0.05, ab_side="dtype=bfloat16")
    order = ranked([d, b, a, c])
    assert [f.id for f in order] == ["channels:G1", "elementwise:forward", "fragments:forward", "dtype:bfloat16"]
    doc = json.loads(json.dumps({"findings": [f.to_dict() for f in order]}))
    assert [from_dict(x) for x in doc["findings"]] == order
    # the two compile findings are one change: predicted 1 - (0.2 + 0.1); the code change is never run
    got = changes(doc, 2)
    assert [(g["side"], g["ids"]) for g in got] == [("compile", ["elementwise:forward", "fragments:forward"]),
                                                    ("dtype=bfloat16", ["dtype:bfloat16"])]
    assert got[0]["predicted_ratio"] == pytest.approx(0.7)
    assert error_of({"predicted_ratio": 0.7, "measured_ratio": 0.8}) == pytest.approx(0.5)  # 0.3 vs 0.2


def test_ab_command_carries_the_runs_configuration():
    spec = RunSpec(target="my model.py", workload="train", workload_options={"optimizer": "sgd"})
    s = {"batch_size": 4, "dtype": "float32", "device": "cpu", "threads": 1}
    assert ab_base(spec, s) == ("python -m harness ab 'my model.py' 'my model.py':{side} --batch-size 4 --dtype float32 "
                                "--device cpu --threads 1 --workload train --optimizer sgd")


CHAIN = '''
import torch
from torch import nn
batch_size = 4


class Chain(nn.Module):
    def forward(self, x):
        return torch.sigmoid(torch.relu(x) * 2.0 + 1.0) * x


def build_model():
    return Chain()


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 64, 64, 64, device=device)
'''


def test_run_writes_findings_and_verifies_one(tmp_path):
    scen = write_scenario(tmp_path, "chain", CHAIN)
    r = run_cli("run", str(scen), "--iters", "3", "--warmup", "1", "--threads", "1", "--top", "0",
                "--logdir", str(tmp_path / "logs"), "--verify-findings", "1", "--verify-budget-s", "1", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Findings (top" in r.stdout and "element-wise chain" in r.stdout
    assert "Findings verified" in r.stdout
    line = next(x for x in r.stdout.splitlines() if "(compile): predicted" in x)
    assert "measured" in line and "not measured" not in line
    (rundir,) = (tmp_path / "logs" / "chain").glob("2*")
    doc = json.loads((rundir / "findings.json").read_text())
    assert doc["schema_version"] == 1 and "error" not in doc
    assert doc["context"]["dispatch_overhead_s"] > 0
    f = next(x for x in doc["findings"] if x["id"] == "elementwise:forward")
    assert f["ab"].endswith("--device cpu --threads 1")
    assert 0 < f["saved_share"] < 1 and f["predicted_ratio"] == pytest.approx(1 - f["saved_share"])
    html = (rundir / "report.html").read_text()
    assert '<h2 id="findings">Findings</h2>' in html and 'id="finding-elementwise:forward"' in html
    # the verdicts are saved beside the run, a new file written after the run was committed
    saved = json.loads((rundir / "findings_verified.json").read_text())
    (change,) = saved["changes"]
    assert saved["n"] == 1 and saved["budget_s"] == 1.0 and change["side"] == "compile"
    assert change["measured_ratio"] > 0 and change["low"] <= change["measured_ratio"] <= change["high"]
    assert change["error_of_prediction"] == pytest.approx(error_of(change))


def test_a_training_steps_optimizer_is_fused_only_with_a_compiled_step():
    ctx = Context(summary={"workload": "train"}, ops=pd.DataFrame(), ops_by_shape=pd.DataFrame(),
                  modules=pd.DataFrame(), ab_base="ab t t:{side}")
    assert ctx.compile_side("forward") == "compile"
    assert ctx.compile_side("optimizer") == "compile,optimizer_step=compiled"
    fwd = Finding(id="elementwise:forward", family="elementwise", title="", phase="forward", saved_share=0.1,
                  ab_side="compile")
    opt = Finding(id="elementwise:optimizer", family="elementwise", title="", phase="optimizer", saved_share=0.2,
                  ab_side="compile,optimizer_step=compiled")
    got = changes({"findings": [opt.to_dict(), fwd.to_dict()]}, 2)
    # the compiled step compiles the model too: its prediction includes the forward's finding
    assert got[0]["ids"] == ["elementwise:optimizer", "elementwise:forward"]
    assert got[0]["predicted_ratio"] == pytest.approx(0.7)
    assert got[1]["ids"] == ["elementwise:forward"] and got[1]["predicted_ratio"] == pytest.approx(0.9)


def conv_chain_context(layout_times: dict | None = None) -> Context:
    """Conv2d(4, 4, 1) then relu -> mul -> add on 1x4x128x128 (65,536 elements = 262,144 B a tensor); every
    call 10 us profiled, latency p50 30 us, overhead 1 us, peak 1 TFLOP/s and 1 GB/s."""
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1, bias=False), Fn(lambda t: torch.relu(t) * 2.0 + 1.0))
    ev = harness.count(model, torch.randn(1, 4, 128, 128)).events
    g = ev.assign(shapes=ev.input_shapes.astype(str)).groupby(["phase", "op", "shapes"], sort=False)
    by_shape = g.agg(calls=("op", "size"), bytes=("bytes", "sum")).reset_index()
    by_shape = by_shape.rename(columns={"op": "name", "shapes": "input_shapes"}).assign(
        kind="op", dispatch_calls=by_shape["calls"], self_time_s=by_shape["calls"] * 10e-6)
    summary = {"latency_s": {"p50": 30e-6}, "profiled": {"time_per_iteration_s": 40e-6}, "dtype": "float32",
               "workload": "forward", "device": "cpu"}
    return Context(summary=summary, ops=by_shape, ops_by_shape=by_shape, modules=pd.DataFrame(), events=ev,
                   peak=peak(1e12, 1e9), overhead_s=1e-6, ab_base="ab m m:{side}", layout_times=layout_times or {})


def test_compiled_predicts_the_whole_iteration():
    ctx = conv_chain_context()
    assert list(ctx.ops["name"]) == ["aten::conv2d", "aten::relu", "aten::mul", "aten::add"]
    # the profiler's cost per call: (4 calls x 10 us profiled - 30 us un-profiled) / 4 calls = 2.5 us
    assert compiled.profiler_cost(ctx) == pytest.approx(2.5e-6)
    (f,) = compiled.find(ctx)
    ext, gen, disp = f.evidence
    assert ext["ops"] == "conv2d" and ext["compiled_s"] == pytest.approx(7.5e-6)  # 10 us - 2.5 us
    # generated: 3 ops x (read 262,144 + write 262,144 B) = 1,572,864 B at their own rate 1,572,864 B / 30 us;
    # fused, 2 intermediates (relu's, mul's) are neither written nor read: 4 x 262,144 B removed -> 524,288 B left
    assert gen["bytes"] == 3 * 2 * 262_144 - 4 * 262_144
    assert gen["compiled_s"] == pytest.approx(524_288 * 30e-6 / 1_572_864)  # 10 us
    assert disp["calls"] == 2 and disp["compiled_s"] == pytest.approx(2e-6)  # 1 extern call + 1, 1 us each
    # compiled = 7.5 + 10 + 2 = 19.5 us of 30 us: saved 10.5 us = 35 %
    assert f.saved_s == pytest.approx(10.5e-6) and f.saved_share == pytest.approx(0.35)
    assert f.ab_side == "compile" and f.verifiable
    # a compiled run, or a training step, gets no whole-iteration prediction
    ctx.summary["compile"] = {"backend": "inductor"}
    assert compiled.find(ctx) == []


def test_compiled_keeps_fused_kernels_with_multiply_adds_as_library_calls():
    """vit_b_16's ``_native_multi_head_attention`` (6.3 GMAC, 37 % of the iteration) was charged as generated
    element-wise code: predicted 33.5 % saved, measured none. An op with MACs stays a library call."""
    ops = pd.DataFrame({"name": ["aten::_native_multi_head_attention", "aten::gelu"], "kind": "op",
                        "dispatch_calls": [2, 2], "self_time_s": [60e-6, 20e-6], "macs": [1_000_000, 0],
                        "bytes": [400_000, 800_000], "input_shapes": ["", ""], "phase": "forward"})
    summary = {"latency_s": {"p50": 80e-6}, "profiled": {"time_per_iteration_s": 80e-6}, "dtype": "float32",
               "workload": "forward", "device": "cpu"}
    ctx = Context(summary=summary, ops=ops, ops_by_shape=ops, modules=pd.DataFrame(), peak=peak(1e12, 1e9),
                  overhead_s=1e-6, ab_base="ab m m:{side}")
    (ext,) = compiled.extern_rows(ctx, p=0.0)  # p = (80 us profiled - 80 us p50) / 4 calls = 0
    assert ext["ops"] == "_native_multi_head_attention" and ext["compiled_s"] == pytest.approx(60e-6)
    gen = compiled.generated_row(ctx)
    # gelu moves 400,000 B a call (>= 64 KiB): the generated rate is its own, 800,000 B / 20 us
    assert gen["ops"] == "1 other op names" and gen["compiled_s"] == pytest.approx(20e-6)
    # compiled = 60 + 20 + (2 extern calls + 1) x 1 us = 83 us > the 80 us p50: nothing to save, no finding
    assert compiled.find(ctx) == []


def test_channels_last_measured_per_shape_and_used_by_the_compile_model():
    ev = conv_chain_context().events.to_dict("records")[0]
    args = layout.conv_args(ev)
    assert args is not None and (args["stride"], args["padding"], args["groups"]) == (1, 0, 1)
    ctx = conv_chain_context({layout.key_of(ev): (4e-6, 2e-6, args)})
    (f,) = layout.find(ctx)
    (row,) = f.evidence
    # 1 call x (4 us contiguous - 2 us channels_last) = 2 us of the latency p50 30 us
    assert row["calls"] == 1 and row["speedup"] == pytest.approx(2.0)
    assert f.saved_s == pytest.approx(2e-6) and f.saved_share == pytest.approx(2 / 30)
    assert f.ab_side == "channels_last"
    # compiled on CPU, Inductor lays convolutions out channels_last: the eager 7.5 us less the 1 x (4 - 2) us
    # measured = 5.5 us (the saving, not the 2x ratio: a shape the budget left unmeasured stays as eager);
    # compiled = 5.5 + 10 + 2 = 17.5 us of 30 us: 41.7 % saved
    (c,) = compiled.find(ctx)
    assert c.evidence[0]["compiled_s"] == pytest.approx(5.5e-6) and c.saved_share == pytest.approx(12.5 / 30)


def test_conv_and_pool_arguments_recovered_from_the_counters_events():
    # resnet's stem: 7x7 stride 2 padding 3, then max_pool2d 3 stride 2 padding 1
    stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 7, 2, 3, bias=False), torch.nn.MaxPool2d(3, 2, 1),
                               torch.nn.Conv2d(8, 8, 3, 2, 1, groups=8))
    ev = harness.count(stem, torch.randn(1, 3, 64, 64)).events.to_dict("records")
    conv, pool, dw = (layout.op_args(e) for e in ev)
    assert conv is not None and (conv["stride"], conv["padding"], conv["groups"], conv["bias"]) == (2, 3, 1, False)
    assert pool is not None and (pool["op"], pool["kernel"], pool["stride"], pool["padding"]) == ("max_pool2d", 3, 2, 1)
    assert dw is not None and (dw["stride"], dw["padding"], dw["groups"], dw["bias"]) == (2, 1, 8, True)
    # measured in both layouts, in this process: three shapes, each a positive time per call
    import pandas as pd_

    times = layout.measure(pd_.DataFrame(ev), budget_s=5.0)
    assert len(times) == 3 and all(a > 0 and b > 0 for a, b, _ in times.values())
    # the pooling is timed first, though it has the fewest MACs + bytes (resnet50's max_pool2d, the largest
    # layout gain there, came last and fell outside the budget); a budget of 0 s still times one shape
    (first,) = layout.measure(pd_.DataFrame(ev), budget_s=0.0)
    assert first.startswith("aten::max_pool2d")


def test_the_whole_iteration_prediction_supersedes_its_parts():
    whole = Finding(id="compiled", family="compiled", title="", phase=None, saved_share=0.4, ab_side="compile")
    g4 = Finding(id="elementwise:forward", family="elementwise", title="", phase="forward", saved_share=0.1,
                 ab_side="compile")
    (got,) = changes({"findings": [whole.to_dict(), g4.to_dict()]}, 3)
    assert got["ids"] == ["compiled"] and got["predicted_ratio"] == pytest.approx(0.6)


def test_underfilled_batch_predicts_throughput_from_measured_increments():
    ctx = conv_chain_context()
    ev = ctx.events.to_dict("records")[0]
    ctx.batch_times, ctx.batch_factor = {f"{ev['op']} {tensor_shapes(ev['input_shapes'])}": (2e-6, 10e-6)}, 8
    (f,) = underfilled.find(ctx)
    (row,) = f.evidence
    # the conv: 10 us profiled - 2.5 us profiler's cost = 7.5 us; at batch 8: + 1 call x (10 - 2) us = 15.5 us
    assert row["eager_s"] == pytest.approx(7.5e-6) and row["predicted_s_at_kb"] == pytest.approx(15.5e-6)
    # fixed: 4 calls x 1 us (+ Python: 30 us p50 - 30 us of un-profiled ops = 0); the rest scales by 8:
    # (30 - 7.5 - 4) us x 8 = 148 us; t(8) = 15.5 + 148 + 4 = 167.5 us for 8 samples vs 30 us for 1
    assert f.predicted_ratio == pytest.approx(167.5 / (8 * 30))
    assert f.ab_side == "batch_size=8" and f.id == "underfilled:batch_size=8"
    # verified per sample: an A/B's iteration ratio divided by the batch factor
    assert batch_factor("batch_size=8", 1) == 8 and batch_factor("compile", 1) == 1
    assert batch_factor("bs=16", 4) == 4
    # the memory forecast's largest batch: said in the text; a batch 8 beyond it gets no finding
    fit = {"batch_size": 2195, "budget_bytes": 24_300_000_000, "budget_source": "available RAM", "capped": False}
    ctx.batch_fit = fit
    (f,) = underfilled.find(ctx)
    assert "the largest batch that fits 24.3 GB of available RAM is 2195" in f.arithmetic and "2195" in f.change
    ctx.batch_fit = {**ctx.batch_fit, "batch_size": 4}
    assert underfilled.find(ctx) == []
    # the search runs once, when a finding needs it: not for a run whose larger batch would not pay (the conv at
    # batch 8 taking 100 us: t(8) = 7.5 + 98 + 148 + 4 = 257.5 us > 8 x 30 us, no finding)
    searched = []
    ctx.batch_fit, ctx.fit_search = {}, lambda: searched.append(1) or {**fit, "batch_size": 2195}
    slow = {key: (2e-6, 100e-6) for key in ctx.batch_times}
    assert underfilled.find(dataclasses.replace(ctx, batch_times=slow)) == [] and searched == []
    (f,) = underfilled.find(ctx)
    assert searched == [1] and ctx.fit_search is None and ctx.batch_fit["batch_size"] == 2195


def test_the_largest_batch_that_fits_is_searched_on_meta(tmp_path):
    """Linear(1000, 1000) holds 4,004,000 B of weights; each sample adds its 4,000 B input and output rows,
    so a budget of 8 MB fits a few hundred samples, not a thousand: the search is `harness plan`'s."""
    from harness.findings.underfilled import largest_batch
    from harness.memory.plan import plan_spec
    from harness.pipeline.spec import RunSpec

    scen = write_scenario(tmp_path, "wide", """
import torch

def build_model():
    return torch.nn.Linear(1000, 1000)

def make_inputs(batch_size, device):
    return torch.randn(batch_size, 1000, device=device)
""")
    spec = RunSpec(target=str(scen))
    got = largest_batch(spec, "cpu", budget=(8_000_000, "given"))
    assert got == {"batch_size": plan_spec(spec, 8_000_000).batch_size, "budget_bytes": 8_000_000,
                   "budget_source": "given", "capped": False}
    assert 100 < got["batch_size"] < (8_000_000 - 4_004_000) // 4_000  # outputs and temporaries take their share
    assert largest_batch(RunSpec(target=str(tmp_path / "missing.py")), "cpu", budget=(1, "given")) == {}


def optimizer_context(ops: list[tuple[str, int, float, float]], **summary) -> Context:
    """A train run's optimizer phase by hand: ``(op, calls, bytes, profiled s)`` rows; n = 1,000,000 fp32
    parameters (P = 4,000,000 B) with AdamW's two moments (S = 8,000,000 B); the optimizer phase's
    un-profiled p50 3 ms of a 10 ms step (12 ms profiled); dispatch overhead 1 us."""
    rows = pd.DataFrame([{"name": n, "phase": "optimizer", "kind": "op", "dispatch_calls": c, "calls": c, "bytes": b,
                          "self_time_s": t} for n, c, b, t in ops])
    s = {"workload": "train", "optimizer": "adamw", "optimizer_impl": "default", "optimizer_param_groups": 1,
         "trainable_params": 1_000_000, "dtype": "float32", "latency_s": {"p50": 10e-3},
         "profiled": {"time_per_iteration_s": 12e-3}, "phases": {"optimizer": {"time_s_p50": 3e-3}},
         "memory": {"gradients_bytes": 4_000_000, "optimizer_state_bytes": 8_000_000}, **summary}
    return Context(summary=s, ops=rows, ops_by_shape=rows, modules=pd.DataFrame(), overhead_s=1e-6,
                   ab_base="ab t t:{side}")


# the single-tensor loop, 10 parameters: two large ops a parameter, and the step counters' tiny add_
LOOP = [("aten::lerp_", 10, 12_000_000, 1e-3), ("aten::addcdiv_", 10, 16_000_000, 1e-3), ("aten::add_", 10, 80, 50e-6)]


def test_optimizer_fused_predicts_seven_parameter_bytes_at_the_phases_own_rate():
    from harness.findings import optimizer

    (f,) = optimizer.find(optimizer_context(LOOP))
    assert f.id == "optimizer:fused" and f.family == "optimizer" and f.phase == "optimizer"
    # fused bytes B = 3 x P + 2 x S = 3 x 4e6 + 2 x 8e6 = 28e6 = (4 + 3) x P
    assert optimizer.fused_bytes(optimizer_context(LOOP)) == (28_000_000, 4_000_000, 8_000_000)
    assert 3 * 4_000_000 + 2 * 8_000_000 == 7 * 4_000_000
    # r: the ops of >= 64 KiB a call (lerp_ 1.2 MB, addcdiv_ 1.6 MB; add_ 8 B left out):
    # (12e6 + 16e6) B / (1 ms + 1 ms) = 14 GB/s
    r = (12e6 + 16e6) / 2e-3
    # fused = 28e6 / 14e9 = 2 ms, + 2 calls (the kernel, the step counters' _foreach_add_) x 1 us = 2.002 ms
    fused = 28e6 / r + 2 * 1e-6
    assert fused == pytest.approx(2.002e-3)
    pred = f.evidence[-1]
    assert pred["op"] == "fused (predicted)" and pred["calls"] == 2 and pred["time_s"] == pytest.approx(fused)
    # saved = the phase's un-profiled 3 ms - 2.002 ms = 0.998 ms of the 10 ms step p50
    assert f.saved_s == pytest.approx(3e-3 - fused) and f.saved_share == pytest.approx(0.0998)
    assert f.time_s == pytest.approx(2.05e-3) and f.time_share == pytest.approx(2.05e-3 / 12e-3)
    assert f.ab_side == "optimizer_impl=fused" and f.ab == "ab t t:optimizer_impl=fused" and f.verifiable
    assert "B = 3 x P + 2 x S = 3 x 4.00 MB + 2 x 8.00 MB = 28.0 MB (7.0 x P); at r = 14.0 GB/s" in f.arithmetic
    # SGD with momentum (S = P): B = 3 x 4e6 + 2 x 4e6 = 20e6 = 5 x P, one fused call
    sgd = optimizer_context(LOOP, optimizer="sgd", memory={"gradients_bytes": 4_000_000, "optimizer_state_bytes": 4_000_000})
    (g,) = optimizer.find(sgd)
    assert g.saved_s == pytest.approx(3e-3 - (20e6 / r + 1e-6))
    # fused already, compiled, or an optimizer without a fused kernel: nothing
    assert optimizer.find(optimizer_context(LOOP + [("aten::_fused_adamw_", 1, 28_000_000, 1e-3)])) == []
    assert optimizer.find(optimizer_context(LOOP, optimizer_step="compiled")) == []
    assert optimizer.find(optimizer_context(LOOP, optimizer="rmsprop")) == []
    assert optimizer.find(optimizer_context(LOOP, workload="forward")) == []


def test_fused_optimizer_and_compiled_step_are_different_changes():
    opt = Finding(id="optimizer:fused", family="optimizer", title="", phase="optimizer", saved_share=0.3,
                  ab_side="optimizer_impl=fused")
    g4 = Finding(id="elementwise:optimizer", family="elementwise", title="", phase="optimizer", saved_share=0.2,
                 ab_side="compile,optimizer_step=compiled")
    g3 = Finding(id="fragments:optimizer", family="fragments", title="", phase="optimizer", saved_share=0.05,
                 ab_side="compile,optimizer_step=compiled")
    got = changes({"findings": [f.to_dict() for f in ranked([opt, g4, g3])]}, 3)
    assert [(g["side"], g["ids"]) for g in got] == [
        ("optimizer_impl=fused", ["optimizer:fused"]),
        ("compile,optimizer_step=compiled", ["elementwise:optimizer", "fragments:optimizer"])]
    assert got[0]["predicted_ratio"] == pytest.approx(0.7) and got[1]["predicted_ratio"] == pytest.approx(0.75)


CHECKPOINTED = '''
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

batch_size = 64
workload = "train"
D, H = 256, 512


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(D, D)
        self.block = nn.Sequential(nn.Linear(D, H), nn.Tanh(), nn.Linear(H, D), nn.Tanh())

    def forward(self, x):
        return checkpoint(self.block, self.inp(x), use_reentrant=False)


def build_model():
    torch.manual_seed(0)
    return Net()


def make_inputs(batch_size, device):
    return torch.randn(batch_size, D, device=device)
'''


def test_train_run_finds_the_unfused_optimizer_and_the_recomputation(tmp_path):
    scen = write_scenario(tmp_path, "checkpointed", CHECKPOINTED)
    r = harness.run_scenario(str(scen), warmup=1, iters=3, logdir=tmp_path / "logs", threads=1)
    assert r.summary["optimizer"] == "adamw" and r.summary["optimizer_impl"] == "default"
    doc = json.loads((r.path / "findings.json").read_text())
    found = {f["id"]: f for f in doc["findings"]}
    opt = found["optimizer:fused"]
    assert opt["ab_side"] == "optimizer_impl=fused" and opt["verifiable"] and opt["saved_share"] > 0
    assert opt["ab"].endswith("checkpointed.py:optimizer_impl=fused --batch-size 64 --dtype float32 --device cpu --threads 1")
    # the last tanh's output is saved for its own backward, so the whole block re-runs in backward:
    # its two linears, B x D x H and B x H x D multiply-adds
    B, D, H = 64, 256, 512
    rec = found["recompute:backward"]
    assert sum(row["flops"] for row in rec["evidence"]) == 2 * (B * D * H + B * H * D) == 33_554_432
    # other FLOPs: the biases' adds (B x H, B x D) and the two tanh (B x H, B x D), as the block's forward
    ev = r.counts.events
    fwd = ev[(ev.phase == "forward") & ev.module.str.startswith("block.")]
    assert sum(row["other_flops"] for row in rec["evidence"]) == int(fwd.other_flops.sum()) == 2 * (B * H + B * D)
    assert rec["needs_code_change"] and rec["ab_side"] is None and not rec["verifiable"]
    assert rec["change"].startswith("checkpoint fewer blocks") and "harness plan" in rec["change"]
    assert 0 < rec["saved_share"] < 1 and rec["saved_share"] == pytest.approx(rec["time_share"])


def test_no_recomputation_no_finding():
    from harness.findings import recompute

    m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh())
    r = harness.profile(m, torch.randn(8, 64), workload="train", warmup=0, iters=2)
    _, ctx = harness.findings.analyze.for_run(r)
    assert not ctx.events["recomputed"].any() and recompute.find(ctx) == []


def test_evidence_cells_are_written_in_their_columns_units():
    """report.html's evidence tables: the units the column names carry (3543584 -> 3.54 MB), not raw floats."""
    from harness.findings.render import html_section

    f = Finding(id="decode:mbu", family="decode", title="t", phase="decode", evidence_columns=(
        "part", "calls", "step_bytes", "step_s", "step_share", "ceiling_flop_per_s", "flops", "speedup", "how"),
        evidence=[{"part": "floor", "calls": 157, "step_bytes": 3_543_584, "step_s": 164.4e-6, "step_share": 0.2596,
                   "ceiling_flop_per_s": 2.56e11, "flops": 1.2e9, "speedup": 1.4354, "how": None}])
    html = html_section([f])
    cells = "<td>floor</td><td>157</td><td>3.54 MB</td><td>164 us</td><td>26.0%</td><td>256 GFLOP/s</td>" \
            "<td>1.20 GFLOP</td><td>1.435</td><td></td>"
    assert cells in html


class EagerAttention(torch.nn.Module):
    """softmax(q k^T / sqrt(E) + causal mask) v, op by op."""

    def forward(self, q, k, v):
        L = q.shape[-2]
        s = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
        s = s + torch.full((L, L), float("-inf")).triu(1)
        return torch.softmax(s, -1) @ v


class SdpaAttention(torch.nn.Module):
    def forward(self, q, k, v):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


QKV = tuple(torch.randn(1, 2, 16, 8) for _ in range(3))


def test_eager_attention_blocks_found_in_the_counters_events():
    ev = harness.count(EagerAttention(), QKV).events
    (b,) = attention.blocks(ev)
    assert (b["phase"], b["q"], b["k"], b["v"], b["mask"]) == ("forward", [1, 2, 16, 8], [1, 2, 16, 8], [1, 2, 16, 8], True)
    assert b["steps"] == ("mul", "add", "softmax")  # scale, mask add, softmax: the ops reading the [1, 2, 16, 16] scores
    assert [e["op"] for e in b["events"]] == ["aten::matmul", "aten::mul", "aten::add", "aten::softmax", "aten::matmul"]
    assert attention.blocks(harness.count(SdpaAttention(), QKV).events) == []
    times = attention.measure(ev, budget_s=0.1)
    ((eager_s, sdpa_s, block),) = times.values()
    assert list(times) == [attention.key_of(b)] and eager_s > 0 and sdpa_s > 0 and block["q"] == [1, 2, 16, 8]


def test_attention_saved_is_calls_times_measured_eager_less_sdpa():
    ev = harness.count(EagerAttention(), QKV).events
    ev = pd.concat([ev, ev], ignore_index=True)  # two blocks of one shape per iteration
    (key,) = {attention.key_of(b) for b in attention.blocks(ev)}
    summary = {"latency_s": {"p50": 1e-3}, "profiled": {"time_per_iteration_s": 2e-3}, "workload": "forward",
               "scenario": "m"}
    ctx = Context(summary=summary, ops=pd.DataFrame(), ops_by_shape=pd.DataFrame(), modules=pd.DataFrame(), events=ev,
                  attention_times={key: (40e-6, 15e-6, None)}, ab_base="python -m harness ab m m:{side}")
    (f,) = attention.find(ctx)
    # 2 calls x (40 - 15) us = 50 us of the 1 ms p50
    (row,) = f.evidence
    assert (row["calls"], row["q_shape"], row["k_shape"], row["v_shape"]) == (2, "[1, 2, 16, 8]", "[1, 2, 16, 8]", "[1, 2, 16, 8]")
    assert row["ops"] == "matmul → mul → add → softmax → matmul"
    assert row["speedup"] == pytest.approx(40 / 15) and row["saved_s"] == pytest.approx(50e-6)
    assert f.id == "attention:sdpa" and f.saved_share == pytest.approx(0.05) and f.saved_s == pytest.approx(50e-6)
    assert f.needs_code_change and f.ab_side is None and not f.verifiable
    assert f.change == "use torch.nn.functional.scaled_dot_product_attention"
    # an hf: model takes the change as a model option, verified by ab
    hf = dataclasses.replace(ctx, summary=dict(summary, target="hf:llama"))
    (g,) = attention.find(hf)
    assert g.ab_side == "attn_implementation=sdpa" and g.verifiable and g.ab == "python -m harness ab m m:attn_implementation=sdpa"
    assert changes({"findings": [g.to_dict()]}, 1) == [{"side": "attn_implementation=sdpa", "ids": ["attention:sdpa"],
                                                        "saved_share": g.saved_share, "predicted_ratio": 1 - g.saved_share}]
    # under 1 %, a training step, a compiled run: no finding
    assert attention.find(dataclasses.replace(ctx, attention_times={key: (40e-6, 39e-6, None)})) == []
    assert attention.find(dataclasses.replace(ctx, summary=dict(summary, workload="train"))) == []
    assert attention.find(dataclasses.replace(ctx, summary=dict(summary, compile={"mode": "default"}))) == []


HF_TINY = '{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 128}'


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_hf_model_with_eager_attention_gets_the_sdpa_side(tmp_path, impl):
    r = run_cli("run", "hf:llama", "--attn-implementation", impl, "--model-kwargs", HF_TINY, "--iters", "3",
                "--warmup", "1", "--threads", "1", "--top", "0", "--logdir", str(tmp_path / "logs"), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    (rundir,) = (tmp_path / "logs" / "hf-llama").glob("2*")
    doc = json.loads((rundir / "findings.json").read_text())
    found = {f["id"]: f for f in doc["findings"]}
    if impl == "sdpa":
        assert "attention:sdpa" not in found
        return
    f = found["attention:sdpa"]
    assert f["ab_side"] == "attn_implementation=sdpa" and f["verifiable"] and f["saved_share"] > 0
    assert "hf:llama:attn_implementation=sdpa" in f["ab"] and "--attn-implementation eager" in f["ab"]
    (row,) = f["evidence"]  # 2 layers, q/k/v [1, 4 heads, 128 tokens, 16]
    assert (row["calls"], row["q_shape"], row["v_shape"]) == (2, "[1, 4, 128, 16]", "[1, 4, 128, 16]")
