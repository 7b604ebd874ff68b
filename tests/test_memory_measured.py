"""Measured memory by category (harness.memory.measured): real torch.profiler runs, hand arithmetic.

The Linear stack: x (B, F) -> Linear(F, F) -> ReLU -> Linear(F, F) -> ReLU -> Linear(F, F), float32
(4 bytes), B = 8, F = 64.
  parameters  P = 3 x (F*F + F) x 4 = 3 x 4160 x 4 = 49920 B
  gradients   = P (one .grad per parameter, same shapes)
  AdamW state = exp_avg + exp_avg_sq = 2 P = 99840 B, plus one float32 ``step`` tensor per parameter
                (6 parameters x 4 B = 24 B): 99864 B
  inputs      = B x F x 4 = 2048 B
  saved for backward: addmm saves its input (layer 1: x, an input; layers 2, 3: the ReLU outputs) and the
                weight (a parameter); ReLU saves its output (the same tensors) -> activations =
                2 ReLU outputs x B x F x 4 = 2 x 2048 = 4096 B at the end of the forward.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

import harness
from harness.core.units import si
from harness.memory import measured, timeline
from harness.memory.categories import CATEGORIES
from harness.memory.timeline import Alloc, Known, Phases
from harness.pipeline import scenario as scenario_mod
from harness.pipeline import workloads
from harness.pipeline.prepare import prepare_model, prepare_scenario

B, F, F32 = 8, 64, 4
P = 3 * (F * F + F) * F32            # 49920
STEPS = 6 * F32                      # AdamW's step tensors: one float32 scalar per parameter
X = B * F * F32                      # 2048: the input, and any (B, F) activation


def stack() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(F, F), nn.ReLU(), nn.Linear(F, F), nn.ReLU(), nn.Linear(F, F))


def measure(workload: str, **options):
    prep = prepare_model(stack(), torch.randn(B, F), threads=1)
    wl = workloads.get(workload, **options)
    wl.setup(prep)
    try:
        return measured.measure(wl, prep)
    finally:
        wl.teardown(prep)


def phase_ends(m: measured.Measured) -> dict[str, float]:
    return {name: end for name, _, end in m.phases}


def test_train_step_categories_equal_the_formula():
    m = measure("train")
    start = m.live_at(0.0)
    assert start["parameters"] == P == 49920
    assert start["gradients"] == P                   # the previous step's, freed by zero_grad
    assert start["optimizer_state"] == 2 * P + STEPS == 99864
    assert start["inputs"] == X
    ends = phase_ends(m)
    fwd = m.live_at(ends["forward"])
    assert fwd["gradients"] == 0                     # zero_grad(set_to_none=True) freed them
    assert fwd["activations"] == 2 * X == 4096       # the two ReLU outputs
    assert fwd["outputs"] == F32                     # the loss (a 0-d float32); the logits are gone
    bwd = m.live_at(ends["backward"])
    assert bwd["gradients"] == P and bwd["activations"] == 0
    opt = m.live_at(ends["optimizer"])
    assert opt["optimizer_state"] == 2 * P + STEPS and opt["parameters"] == P
    s = m.summary()
    assert s["at_phase"] == "optimizer"              # AdamW's temporaries on top of weights, grads and state
    at = s["by_category_at_peak"]
    assert set(at) == set(CATEGORIES) and sum(at.values()) == s["peak_bytes"]
    assert at["parameters"] == P and at["gradients"] == P and at["optimizer_state"] == 2 * P + STEPS
    # the three Linear layers own their weights, gradients and state: (F*F + F) x 4 x (1 + 1 + 2) + 2 steps x 4
    assert s["by_module_at_peak"]["0"] >= 4160 * 4 * 4 + 2 * F32


def test_forward_only_has_no_gradients_or_optimizer_state():
    m = measure("forward")
    w = timeline.wide(m.table)
    assert w["gradients"].max() == 0 and w["optimizer_state"].max() == 0 and w["activations"].max() == 0
    assert (w["parameters"] == P).all() and (w["inputs"] == X).all()
    # peak: weights + input + two (B, F) tensors at once (a Linear's output and the ReLU's, or the
    # last ReLU's and the model's output) = 49920 + 2048 + 4096
    assert m.peak.bytes == P + X + 2 * X == 56064
    assert m.peak.phase == "forward"
    assert w["outputs"].max() == X                   # the model's output, (B, F)


def test_generate_kv_cache_equals_the_formula():
    """tiny_llama: L=4 layers, G=2 KV heads, hd=16; the cache after context c is 2·L·G·hd·c·batch·4 B."""
    L, G, HD, batch, prompt, new = 4, 2, 16, 2, 8, 3
    prep = prepare_scenario(scenario_mod.load("tiny_llama"), batch_size=batch, threads=1)
    wl = workloads.get("generate", prompt_len=prompt, new_tokens=new)
    wl.setup(prep)
    m = measured.measure(wl, prep)
    ends = [end for name, _, end in m.phases]
    assert [n for n, _, _ in m.phases] == ["prefill"] + ["decode"] * new
    for i, end in enumerate(ends):
        c = prompt + i
        assert m.live_at(end)["kv_cache"] == 2 * L * G * HD * c * batch * F32   # 16384, 18432, 20480, 22528
    w = timeline.wide(m.table)
    assert w["gradients"].max() == 0 and w["optimizer_state"].max() == 0
    assert w["outputs"].max() == batch * prompt * 512 * F32   # the prefill's logits (vocab 512)
    assert m.boundaries() == [(m.phases[0][1], "prefill"), (m.phases[1][1], "decode")]


def test_run_writes_memory_csv_png_and_summary(tmp_path):
    run = harness.profile(stack(), torch.randn(B, F), workload="train", warmup=1, iters=2, logdir=tmp_path,
                          name="stack")
    d = run.path
    s = json.loads((d / "summary.json").read_text())
    mem = s["memory"]
    csv = pd.read_csv(d / "memory.csv")
    assert list(csv.columns) == ["t_s", "phase", "category", "bytes"]
    assert set(csv.category) <= set(CATEGORIES) and (csv.t_s >= 0).all()
    total = timeline.wide(csv).sum(axis=1)
    assert total.max() == mem["peak_bytes"] == sum(mem["by_category_at_peak"].values())
    assert mem["by_category_at_peak"]["optimizer_state"] == 2 * P + STEPS
    assert mem["gradients_bytes"] == P and mem["optimizer_state_bytes"] == 2 * P + STEPS   # the train split stays
    png = (d / "memory_timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert 'alt="memory timeline"' in (d / "report.html").read_text()
    from harness.report.terminal import render_summary

    line = next(x for x in render_summary(s).splitlines() if x.strip().startswith("peak memory"))
    assert f"{si(mem['peak_bytes'], 'B')} at {mem['at_phase']}" in line and " measured (memory.csv)" in line


# ----------------------------------------------------------------- event-shaped data (the CUDA path)

def test_timeline_from_hand_made_events():
    """A caching allocator's blocks (512 B granules); t in ns from t0 = 100.
    baseline: a parameter block at 0xA (1024 B) and an input at 0xB (512 B);
    forward [105, 120): an activation at 0xC (2048 B, saved: noted at 111), a temporary at 0xD (512 B, freed at 115);
    backward [125, 160) on the engine's thread: a gradient at 0xE (1024 B, noted at 150), 0xC freed at 140,
    a block allocated before the events began freed at 155 (-512 B at 0xF: a baseline temporary);
    0xC reused at 158 (1536 B): a new temporary, not the activation."""
    t0 = 100
    events = [Alloc(110, 0xC, 2048, "fc1"), Alloc(112, 0xD, 512, "fc1"), Alloc(115, 0xD, -512),
              Alloc(130, 0xE, 1024, "fc1"), Alloc(140, 0xC, -2048), Alloc(155, 0xF, -512), Alloc(158, 0xC, 1536)]
    baseline = [Known(t0, 0xA, "parameters", 1024, "fc1"), Known(t0, 0xB, "inputs", 512)]
    known = [Known(111, 0xC, "activations"), Known(150, 0xE, "gradients", 0, "fc1"),
             Known(150, 0xA, "parameters")]
    m = measured.build(events, baseline, known, t0, Phases([("forward", 105, 120), ("backward", 125, 160)]),
                       device="cuda", cuda=measured.cuda_figures({"max_allocated_bytes": 6656,
                                                                   "max_reserved_bytes": 20971520}))
    at = m.live_at
    assert at(0) == {**dict.fromkeys(CATEGORIES, 0), "parameters": 1024, "inputs": 512, "temporaries": 512}
    assert at(12.5e-9)["activations"] == 2048 and at(12.5e-9)["temporaries"] == 1024      # + 0xD
    # peak: 1024 + 512 + 512 (0xF) + 2048 + 1024 = 5120 at t=130 (backward), first moment
    assert m.peak.bytes == 5120 and m.peak.phase == "backward" and m.peak.t_s == pytest.approx(30e-9)
    assert m.peak.by_category["gradients"] == 1024
    assert at(56.5e-9)["temporaries"] == 0 and at(58.5e-9)["temporaries"] == 1536
    assert m.by_module == {"fc1": 1024 + 2048 + 1024, "(outside the model)": 512 + 512}
    assert m.summary()["cuda"]["fragmentation_bytes"] == 20971520 - 6656
    rows = m.table[m.table.t_s > 0]
    assert list(rows.phase.unique()) == ["forward", "backward"]


def test_compare_rows_for_forecast_beside_measured():
    rows = {r["category"]: r for r in measured.compare({"parameters": 110, "activations": 50},
                                                       {"parameters": 100, "activations": 0, "gradients": 40})}
    assert rows["parameters"]["error"] == pytest.approx(0.10)
    assert rows["activations"]["error"] is None                       # nothing measured: no ratio
    assert rows["total"]["forecast_bytes"] == 160 and rows["total"]["measured_bytes"] == 140


def test_multi_rank_memory_is_the_largest_rank_with_the_imbalance():
    from harness.distributed.merge import job_summary

    def rank(peak: int) -> dict:
        return {"latency_s": {"p50": 1.0, "p90": 1.0}, "config_key": "x|bs=1|float32|cpu|threads=1|tag=",
                "scenario": "x", "batch_size": 1, "dtype": "float32", "device": "cpu", "threads": 1,
                "memory": {"peak_bytes": peak, "at_phase": "backward", "by_category_at_peak": {"activations": peak}}}

    job = job_summary([rank(300), rank(400), rank(200)], [{}, {}, {}], ["a", "a", "a"], [0, 1, 2], backend="gloo")
    assert job["memory"]["peak_bytes"] == 400 and job["memory"]["rank"] == 1
    assert job["memory"]["peak_bytes_by_rank"] == [300, 400, 200]
    assert job["memory"]["imbalance"] == 400 / 200 == 2.0
    assert [r["memory_peak_bytes"] for r in job["ranks"]] == [300, 400, 200]


def test_forecast_beside_measured_in_a_run():
    """Every run forecasts its own iteration on the meta device: a Linear stack's forward holds its weights
    (the same bytes forecast and measured), and the forecast's error is against the measured peak."""
    import torch
    from torch import nn

    import harness

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    run = harness.profile(model, torch.randn(8, 64), iters=2, warmup=1, threads=1)
    mem = run.summary["memory"]
    f = mem["forecast"]
    P = 2 * (64 * 64 + 64) * 4  # 33,280 B of parameters
    assert f["by_category_at_peak"]["parameters"] == mem["by_category_at_peak"]["parameters"] == P
    assert f["error"] == pytest.approx(f["peak_bytes"] / mem["peak_bytes"] - 1)
    assert abs(f["error"]) < 0.15
    from harness.report.terminal import render_summary

    line = next(x for x in render_summary(run.summary).splitlines() if x.strip().startswith("peak memory"))
    assert f"forecast {si(f['peak_bytes'], 'B')} ({round(f['error'] * 100, 1) + 0.0:+.1f} %)" in line
