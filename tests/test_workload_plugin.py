"""The workload recipe, end to end: a workload defined and registered here, in the test, reaches
every verb and every output without touching another file (README "Adding a workload").

``fwdbwd``: a forward and a backward, no optimizer, in phases ``fwd`` and ``bwd``; one option,
``--loss-scale``; its own summary key and figure row. Everything is real: the CLI in this
process (so it sees the registration), torch.profiler, TensorBoard's own event loader, files.
"""
from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from conftest import write_scenario
from harness.cli import main as cli
from harness.pipeline import workloads
from harness.pipeline.workloads import Figure, Option, PhaseScope, Workload

MLP = '''
import torch
from torch import nn

batch_size = 2


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 16, device=device)
'''

# batch 2. forward: 2*(16*32) + 2*(32*4) = 1024 + 256 = 1280 MACs.
FWD_MACS = 2 * 16 * 32 + 2 * 32 * 4
# backward (the input needs no gradient): the second Linear's grad input 2*4*32 = 256 and grad weight
# 32*4*2 = 256; the first Linear's grad weight 16*32*2 = 1024 (no grad input): 1536 MACs.
BWD_MACS = 2 * 4 * 32 + 32 * 4 * 2 + 16 * 32 * 2


class FwdBwd(Workload):
    """Forward and backward, no optimizer step."""

    name = "fwdbwd"
    phases = ("fwd", "bwd")
    word, plural = "forward-backward pass", "forward-backward passes"
    label = "fwd_bwd"
    computes_gradients = True
    options_declared = (Option("loss_scale", help="fwdbwd: multiply the loss by N", plural="loss_scales"),)

    def setup(self, prep: Any) -> None:
        prep.model.train()

    def grad_mode(self):
        return contextlib.nullcontext()

    def iteration(self, prep: Any, scope: PhaseScope) -> None:
        prep.model.zero_grad(set_to_none=True)
        with scope("fwd"):
            loss = prep.call(prep.model).float().mean() * self.options.get("loss_scale", 1)
        with scope("bwd"):
            loss.backward()

    def summary_extra(self, parts: Any) -> dict[str, Any]:
        ph = parts.phases
        return {"bwd_over_fwd_flops": ph["bwd"]["flops"] / ph["fwd"]["flops"]}

    @classmethod
    def figures(cls, summary: dict) -> list[Figure]:
        return [Figure("bwd / fwd", f"{summary['bwd_over_fwd_flops']:.2f}x the forward's FLOPs")]


@pytest.fixture
def fwdbwd(tmp_path: Path):
    workloads.register(FwdBwd)
    try:
        yield write_scenario(tmp_path, "mlp", MLP)
    finally:
        workloads.unregister("fwdbwd")


QUICK = ["--warmup", "1", "--iters", "3"]


def only_run(logdir: Path, name: str = "mlp") -> Path:
    (run,) = [p for p in (logdir / name).iterdir() if p.name not in ("trends", "sweeps")]
    return run


def test_run_summary_report_tensorboard_history(fwdbwd: Path, tmp_path: Path, capsys):
    logdir = tmp_path / "logs"
    assert cli(["run", str(fwdbwd), "--workload", "fwdbwd", "--loss-scale", "2", "--logdir", str(logdir),
                "--active", "1", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "bwd / fwd" in out and "1.20x the forward's FLOPs" in out  # the workload's own row
    run = only_run(logdir)
    s = json.loads((run / "summary.json").read_text())
    assert s["workload"] == "fwdbwd" and s["phase_names"] == ["fwd", "bwd"]
    assert s["phases"]["fwd"]["macs"] == FWD_MACS and s["phases"]["bwd"]["macs"] == BWD_MACS
    assert s["macs"] == FWD_MACS + BWD_MACS
    assert s["bwd_over_fwd_flops"] == BWD_MACS / FWD_MACS == 1.2
    assert "|workload=fwdbwd|loss_scale=2" in s["config_key"]
    html = (run / "report.html").read_text()
    assert "MACs per forward-backward pass" in html and "bwd / fwd" in html
    assert re.search(r"per forwards?(?![-\w])", html) is None  # the word of this workload, never "per forward"
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(str(run), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    text = "\n".join(cell.decode() for tag in acc.Tags()["tensors"]
                     for cell in tensor_util.make_ndarray(acc.Tensors(tag)[-1].tensor_proto).ravel()
                     if isinstance(cell, bytes))
    assert "forward-backward pass" in text and "bwd / fwd" in text
    hist = pd.read_csv(logdir / "history.csv")
    row = hist.iloc[-1]
    assert row["workload"] == "fwdbwd"
    assert row["fwd_p50_s"] == pytest.approx(s["phases"]["fwd"]["time_s"]["p50"])
    assert row["bwd_p50_s"] == pytest.approx(s["phases"]["bwd"]["time_s"]["p50"])


def test_count(fwdbwd: Path, capsys):
    assert cli(["count", str(fwdbwd), "--workload", "fwdbwd", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["workload"] == "fwdbwd"
    assert {r["phase"]: r["macs"] for r in c["by_phase"]} == {"fwd": FWD_MACS, "bwd": BWD_MACS}


def test_option_checked_before_running(fwdbwd: Path, tmp_path: Path, capsys):
    assert cli(["run", str(fwdbwd), "--workload", "fwdbwd", "--loss-scale", "0", "--logdir", str(tmp_path)]) == 2
    assert "--loss-scale must be at least 1" in capsys.readouterr().err
    assert cli(["run", str(fwdbwd), "--workload", "forward", "--loss-scale", "2", "--logdir", str(tmp_path)]) == 2
    assert "--loss-scale does not apply to --workload forward" in capsys.readouterr().err
    assert not (tmp_path / "mlp").exists()


def test_sweep(fwdbwd: Path, tmp_path: Path, capsys):
    logdir = tmp_path / "logs"
    assert cli(["sweep", str(fwdbwd), "--workload", "fwdbwd", "--loss-scales", "1,2", "--batch-sizes", "2",
                "--logdir", str(logdir), "--no-plot", *QUICK]) == 0
    (sweep_dir,) = (logdir / "mlp" / "sweeps").iterdir()
    df = pd.read_csv(sweep_dir / "sweep.csv")
    assert list(df.status) == ["ok", "ok"] and list(df.loss_scale) == [1, 2]
    assert (df.workload == "fwdbwd").all() and (df.fwd_p50_s > 0).all() and (df.bwd_p50_s > 0).all()
    assert (df.flops == 2 * (FWD_MACS + BWD_MACS)).all()


def test_ab(fwdbwd: Path, tmp_path: Path, capsys):
    code = cli(["ab", str(fwdbwd), f"{fwdbwd}:label=again", "--workload", "fwdbwd", "--budget-s", "1",
                "--min-pairs", "4", "--logdir", str(tmp_path / "logs"), "--json"])
    assert code in (0, 1)
    res = json.loads(capsys.readouterr().out)
    assert res["workload"] == "fwdbwd" and res["judged_metric"] == "forward-backward pass"  # the whole iteration
    assert set(res["phases"]) == {"fwd", "bwd"}
    for ph in res["phases"].values():
        assert 0 < ph["low"] <= ph["ratio"] <= ph["high"] and ph["pairs"] >= 4 and ph["baseline_median_s"] > 0
    # both sides ran the workload with its own counts: fwd + bwd MACs of batch 2
    for side in ("baseline", "candidate"):
        assert res[side]["workload"] == "fwdbwd" and res[side]["counts"]["macs"] == FWD_MACS + BWD_MACS
