"""A real train run: phases timed and profiled apart, MFU/HFU, memory split, files on disk."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import harness
from harness.pipeline.workloads.train import render
from harness.report.terminal import render_summary

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "tiny_gpt_train.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("logs")
    return harness.run_scenario(str(SCENARIO), warmup=1, iters=3, logdir=logdir)


def test_summary_keys_and_sums(run):
    s = run.summary
    assert s["workload"] == "train" and s["optimizer"] == "adamw"
    assert set(s["phases"]) == {"forward", "backward", "optimizer"}
    assert s["step_s"]["n"] == 3 and set(s["step_s"]) >= {"p50", "p90", "p99", "mean", "std", "min", "n"}
    assert sum(ph["flops"] for ph in s["phases"].values()) == s["flops"] == s["hardware_flops"]
    assert sum(ph["other_flops"] for ph in s["phases"].values()) == s["other_flops"]
    assert s["phases"]["optimizer"]["flops"] == 0 and s["phases"]["optimizer"]["other_flops"] > 0
    for ph in s["phases"].values():
        assert ph["time_s_p50"] > 0
    # checkpointed blocks: hardware = model + recomputed forward + fused attention's recomputed scores
    assert s["hardware_flops"] - s["model_flops"] == s["recomputed_flops"] > 0
    assert s["hfu"] / s["mfu"] == pytest.approx(s["hardware_flops"] / s["model_flops"])
    assert s["mfu"] == pytest.approx(s["model_flops"] / s["step_s"]["p50"] / s["peak_flop_per_s"])
    assert s["samples_per_s"] == pytest.approx(2 / s["step_s"]["p50"])
    assert s["tokens_per_s"] == pytest.approx(s["samples_per_s"] * 128)
    est = s["estimate_6n"]
    assert est["flops"] == 6 * s["trainable_params"] * 256
    m = s["memory"]
    assert m["gradients_bytes"] == m["parameters_bytes"] == 4 * s["params"]  # every parameter trains, fp32
    # weights_bytes has one meaning everywhere: parameters and buffers, each once
    assert m["weights_bytes"] == s["weights_bytes"] == m["parameters_bytes"] + m["buffers_bytes"]
    assert m["buffers_bytes"] == 4 * s["buffers"]
    assert m["optimizer_state_bytes"] >= 2 * m["parameters_bytes"]  # AdamW: two moments (+ step counters)
    assert m["activations_bytes"] > 0
    assert "workload=train" in s["config_key"] and "optimizer=adamw" in s["config_key"]
    assert "MFU" in render(s) and "HFU" in render(s)
    assert "backward" in render_summary(s)  # the generic phase table


def test_ops_and_modules_by_phase(run):
    ops, s = run.ops, run.summary
    assert ops.flops.sum() == pytest.approx(s["flops"])
    assert ops.self_time_s.sum() == pytest.approx(s["profiled"]["time_per_forward_s"])
    phases = set(ops.phase)
    assert {"forward", "backward", "optimizer"} <= phases
    assert ops[ops.phase == "backward"].flops.sum() > ops[ops.phase == "forward"].flops.sum()
    mods = run.modules
    assert set(mods.phase) == {"forward", "backward", "optimizer"}
    blk = mods[(mods.path == "blocks.0")].set_index("phase")
    assert blk.loc["backward", "flops"] > blk.loc["forward", "flops"] > 0


def test_files_and_trace_ranges(run):
    d = run.path
    s = json.loads((d / "summary.json").read_text())
    assert s["workload"] == "train" and "mfu" in s
    ph = pd.read_csv(d / "phase_samples.csv")
    assert set(ph.phase) == {"forward", "backward", "optimizer"} and len(ph) == 9
    trace = json.loads((d / s["trace_files"][0]).read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"train_step", "forward", "backward", "optimizer"} <= names


def test_cli_optimizer_flag(tmp_path):
    out = subprocess.run([sys.executable, "-m", "harness", "run", str(SCENARIO), "--optimizer", "sgd", "--warmup", "0",
                          "--iters", "1", "--logdir", str(tmp_path), "--json", "--top", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    s = json.loads(out.stdout)
    assert s["optimizer"] == "sgd" and "optimizer=sgd" in s["config_key"]


def test_optimizer_none_and_bad_values():
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    r = harness.profile(m, torch.randn(8, 16), workload="train", workload_options={"optimizer": "none"},
                        warmup=0, iters=2)
    assert set(r.summary["phases"]) == {"forward", "backward"}
    assert r.summary["flops"] == 2 * (8 * 16 * 32 + 8 * 32 * 4) + 2 * (8 * 16 * 32 + 2 * 8 * 32 * 4)
    with pytest.raises(harness.errors.HarnessError, match="--optimizer"):
        harness.profile(m, torch.randn(8, 16), workload="train", workload_options={"optimizer": "lamb"})
