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
from harness.pipeline import scenario as scenario_mod

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "tiny_gpt_train.py"

# tiny_gpt_train (scenarios/tiny_gpt.py) by hand: batch B 2, sequence T 128, width D 256, H 4 heads of E 64,
# L 4 blocks, vocabulary V 8000, 512 positions; the head shares the token embedding's weight.
B, T, D, H, L, V, MAX_LEN = 2, 128, 256, 4, 4, 8000, 512
E = D // H
# parameters: per block 2 LayerNorms (2 x 2D), qkv D*3D + 3D, proj D*D + D, MLP D*4D + 4D and 4D*D + D
BLOCK_PARAMS = 2 * 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * 4 * D + 4 * D) + (4 * D * D + D)  # 789,760
N = V * D + MAX_LEN * D + L * BLOCK_PARAMS + 2 * D  # 2,048,000 + 131,072 + 3,159,040 + 512 = 5,338,624
PARAM_TENSORS = 1 + 1 + L * 12 + 2  # token embedding (= head), positions, 6 weights + 6 biases a block, ln_f: 52
# forward MACs: a block's qkv B*T*D*3D, QK^T and PV 2*B*H*T*T*E (the causal half is computed too), proj
# B*T*D*D, MLP 2*B*T*D*4D; the head B*T*D*V
BLOCK_MACS = B * T * D * 3 * D + 2 * B * H * T * T * E + B * T * D * D + 2 * B * T * D * 4 * D  # 218,103,808
FORWARD_FLOPS = 2 * (L * BLOCK_MACS + B * T * D * V)  # 2 x (872,415,232 + 524,288,000) = 2,793,406,464
# backward: grad input + grad weight of every linear (the blocks' inputs come from the embeddings, which
# train) and attention's dP, dV, dQ, dK: twice the forward
MODEL_FLOPS = 3 * FORWARD_FLOPS  # 8,380,219,392
# non-reentrant checkpointing re-runs a block's forward in backward until the last tensor backward needs is
# saved (the input of the MLP's second linear): all but that matmul; fused attention's backward also
# recomputes QK^T (B*H*T*T*E MACs)
RECOMPUTED_FLOPS = L * 2 * (B * T * D * 3 * D + 2 * B * H * T * T * E + B * T * D * D + B * T * D * 4 * D
                            + B * H * T * T * E)  # 4 x 2 x 159,383,552 = 1,275,068,416
# AdamW with weight decay: 14 FLOPs an element (tests/test_train_count.py) + 1 per step counter, one a tensor
OPTIMIZER_OTHER_FLOPS = 14 * N + PARAM_TENSORS  # 74,740,736 + 52 = 74,740,788
# saved for backward in the forward (parameters left out, each storage once): token ids B*T int64 and
# positions T int64 (embeddings); each checkpointed block's input (checkpoint keeps only its inputs) B*T*D
# fp32; ln_f's input and its mean and rstd (B*T fp32 each); the head's input (ln_f's output); log_softmax's
# output B*T*V fp32; nll_loss's targets B*T int64 and its total_weight (one fp32)
ACTIVATIONS_BYTES = (B * T * 8 + T * 8 + L * B * T * D * 4 + B * T * D * 4 + 2 * B * T * 4 + B * T * D * 4
                     + B * T * V * 4 + B * T * 8 + 4)  # 9,772,036
PEAK = 1e12  # FLOP/s: the fp32 ceiling written as this CPU's calibration for the run below


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real train run, 2 threads, against a calibration file (its own cache dir) that sets the fp32
    peak to PEAK: MFU and HFU can then be checked against figures the run did not produce."""
    from harness.core.fsio import atomic_write_json
    from harness.hardware.calibration import SCHEMA, calibration_path
    from harness.hardware.cpu import cpu_id, cpu_info

    logdir = tmp_path_factory.mktemp("logs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        info = cpu_info()
        atomic_write_json(calibration_path(2, info), {
            "schema": SCHEMA, "key": {"cpu": cpu_id(info), "threads": 2}, "created": "2026-01-01T00:00:00+00:00",
            "threads": 2, "flop_per_s": {"float32": PEAK}, "measured_path": {"float32": "fma"}})
        return harness.run_scenario(str(SCENARIO), warmup=1, iters=3, logdir=logdir, threads=2)


def test_hand_figures():
    assert (BLOCK_PARAMS, N, BLOCK_MACS) == (789_760, 5_338_624, 218_103_808)
    assert (FORWARD_FLOPS, MODEL_FLOPS, RECOMPUTED_FLOPS) == (2_793_406_464, 8_380_219_392, 1_275_068_416)
    assert (OPTIMIZER_OTHER_FLOPS, ACTIVATIONS_BYTES) == (74_740_788, 9_772_036)
    model = scenario_mod.load(str(SCENARIO)).module.build_model()  # the model the run trains
    assert sum(p.numel() for p in model.parameters()) == N and len(list(model.parameters())) == PARAM_TENSORS


def test_summary_keys_and_sums(run):
    s = run.summary
    assert s["workload"] == "train" and s["optimizer"] == "adamw"
    assert set(s["phases"]) == {"forward", "backward", "optimizer"}
    assert s["step_s"]["n"] == 3 and set(s["step_s"]) >= {"p50", "p90", "p99", "mean", "std", "min", "n"}
    assert s["params"] == s["trainable_params"] == N
    assert sum(ph["flops"] for ph in s["phases"].values()) == s["flops"] == s["hardware_flops"]
    assert sum(ph["other_flops"] for ph in s["phases"].values()) == s["other_flops"]
    assert s["phases"]["forward"]["flops"] == FORWARD_FLOPS
    assert s["phases"]["optimizer"]["flops"] == 0 and s["phases"]["optimizer"]["other_flops"] == OPTIMIZER_OTHER_FLOPS
    for ph in s["phases"].values():
        assert ph["time_s_p50"] > 0
    # checkpointed blocks: hardware = model + recomputed forward + fused attention's recomputed scores
    assert s["model_flops"] == MODEL_FLOPS and s["recomputed_flops"] == RECOMPUTED_FLOPS
    assert s["hardware_flops"] == MODEL_FLOPS + RECOMPUTED_FLOPS == 9_655_287_808
    # MFU and HFU from the hand figures and the calibrated ceiling, over the run's median step
    assert (s["peak_flop_per_s"], s["peak_source"]) == (PEAK, "calibrated")
    assert s["mfu"] == pytest.approx(MODEL_FLOPS / s["step_s"]["p50"] / PEAK)
    assert s["hfu"] == pytest.approx((MODEL_FLOPS + RECOMPUTED_FLOPS) / s["step_s"]["p50"] / PEAK)
    assert s["samples_per_s"] == pytest.approx(B / s["step_s"]["p50"])
    assert s["tokens_per_s"] == pytest.approx(s["samples_per_s"] * T)
    est = s["estimate_6n"]
    assert est["flops"] == 6 * N * B * T
    assert est["counted_over_estimate"] == pytest.approx(MODEL_FLOPS / (6 * N * B * T))
    m = s["memory"]
    assert m["gradients_bytes"] == m["parameters_bytes"] == 4 * N  # every parameter trains, fp32
    # weights_bytes has one meaning everywhere: parameters and buffers, each once
    assert m["weights_bytes"] == s["weights_bytes"] == m["parameters_bytes"] + m["buffers_bytes"]
    assert m["buffers_bytes"] == 4 * s["buffers"] == 0
    # AdamW: two fp32 moments an element and one fp32 step counter a tensor
    assert m["optimizer_state_bytes"] == 2 * 4 * N + 4 * PARAM_TENSORS == 42_709_200
    assert m["activations_bytes"] == ACTIVATIONS_BYTES
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


LINEARS = '''
import torch
from torch import nn

batch_size = 8
workload = "train"


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(256, 256) for _ in range(8)])


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 256, device=device)
'''
# 8 Linear(256, 256): 8 x (256 x 256 + 256) = 526,336 parameters in 16 tensors
LINEARS_N, LINEARS_TENSORS = 8 * (256 * 256 + 256), 16


def test_cli_optimizer_impl_fused(tmp_path):
    from conftest import run_cli, write_scenario

    scen = write_scenario(tmp_path, "linears", LINEARS)
    out = run_cli("run", str(scen), "--optimizer-impl", "fused", "--warmup", "1", "--iters", "2", "--threads", "1",
                  "--logdir", str(tmp_path / "logs"), "--top", "0")
    assert out.returncode == 0, out.stderr[-2000:]
    (rundir,) = (tmp_path / "logs" / "linears").glob("2*")
    s = json.loads((rundir / "summary.json").read_text())
    assert s["optimizer"] == "adamw" and s["optimizer_impl"] == "fused" and s["optimizer_param_groups"] == 1
    assert s["config_key"].endswith("|workload=train|optimizer=adamw|optimizer_impl=fused")
    # AdamW with weight decay, fused: 14 other FLOPs a parameter in _fused_adamw_ (13 + decoupled decay),
    # plus the step counters' _foreach_add_, one a tensor
    ops = pd.read_csv(rundir / "ops.csv")
    opt = ops[ops.phase == "optimizer"].set_index("name")
    assert opt.loc["aten::_fused_adamw_", "other_flops"] == 14 * LINEARS_N == 7_368_704
    assert s["phases"]["optimizer"]["other_flops"] == 14 * LINEARS_N + LINEARS_TENSORS
    # bytes: parameters, gradients, two moments read; parameters and two moments written: (4 + 3) x 4 B a
    # parameter, and the 16 fp32 step counters read (4 B each)
    assert opt.loc["aten::_fused_adamw_", "bytes"] == (4 + 3) * 4 * LINEARS_N + 4 * LINEARS_TENSORS
    doc = json.loads((rundir / "findings.json").read_text())
    assert "optimizer:fused" not in {f["id"] for f in doc["findings"]}  # fused already


def test_each_optimizer_impl_counts_the_same_other_flops():
    from harness.core.training import make_optimizer

    m = nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 4))
    n, tensors = 16 * 32 + 32 + 32 * 4 + 4, 4  # 676 parameters in 4 tensors
    for impl in ("for_loop", "foreach", "fused"):
        opt = make_optimizer("adamw", list(m.parameters()), impl=impl)
        c = harness.count(m, torch.randn(8, 16), train=True, optimizer=opt)
        assert c.by_phase.set_index("phase").loc["optimizer", "other_flops"] == 14 * n + tensors == 9468, impl
    assert make_optimizer("sgd", list(m.parameters()), impl="fused").defaults["fused"] is True
    assert make_optimizer("adamw", list(m.parameters()), impl="for_loop").defaults["foreach"] is False


def test_scenario_optimizer_rebuilt_with_the_impl():
    from harness.core.training import with_impl

    ps = [nn.Parameter(torch.randn(4, 4)) for _ in range(3)]
    own = torch.optim.AdamW([{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.0}], lr=3e-4, weight_decay=0.1)
    fused = with_impl(own, "fused")
    assert type(fused) is torch.optim.AdamW and fused.defaults["lr"] == 3e-4
    assert [(g["fused"], g["weight_decay"]) for g in fused.param_groups] == [(True, 0.1), (True, 0.0)]
    assert with_impl(own, "default") is own
    with pytest.raises(harness.errors.HarnessError, match="LBFGS, which takes no foreach/fused") as err:
        with_impl(torch.optim.LBFGS(ps), "fused")
    assert err.value.exit_code == 2


def test_optimizer_impl_as_an_ab_side():
    from harness.tracking.ab import parse_side

    assert parse_side("tiny_gpt:optimizer_impl=fused", workload="train").spec.workload_options == {"optimizer_impl": "fused"}
    with pytest.raises(harness.errors.HarnessError, match="unknown --optimizer-impl 'fast'"):
        parse_side("tiny_gpt:optimizer_impl=fast", workload="train")
