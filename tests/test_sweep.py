"""sweep: one real run per point, failing points recorded, progress with ETA, bad input."""
from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from conftest import run_cli, write_scenario
from harness.tracking import history
from harness.errors import HarnessError
from harness.tracking.sweep import COLUMNS, Point, Progress, _point_row, parse_dtypes, parse_ints

HUNGRY = '''
"""Runs out of memory above batch 4 (simulated), and its kernel 'breaks' at batch 3."""
import torch
from torch import nn


class Hungry(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 32)

    def forward(self, x):
        if x.shape[0] > 4:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.shape[0] * 40} GiB")
        if x.shape[0] == 3:
            raise RuntimeError("unsupported batch for this kernel")
        return self.fc(x).relu()


def build_model():
    torch.manual_seed(0)
    return Hungry()


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 32, device=device)
'''


def test_sweep_records_failed_points_and_goes_on(tmp_path: Path):
    scen = write_scenario(tmp_path, "hungry", HUNGRY)
    logdir = tmp_path / "logs"
    proc = run_cli("sweep", str(scen), "--batch-sizes", "1,8,3,2", "--iters", "3", "--warmup", "1",
                   "--threads", "1", "--logdir", str(logdir))
    assert proc.returncode == 0, proc.stderr
    sweeps = list((logdir / "hungry" / "sweeps").iterdir())
    assert len(sweeps) == 1
    df = pd.read_csv(sweeps[0] / "sweep.csv")
    assert df["batch_size"].tolist() == [1, 8, 3, 2]
    assert df["status"].tolist() == ["ok", "failed", "failed", "ok"]
    assert "out of memory" in df.loc[1, "reason"] and "320 GiB" in df.loc[1, "reason"]
    assert "unsupported batch for this kernel" in df.loc[2, "reason"]
    assert df["threads"].tolist() == [1, 1, 1, 1]
    ok = df[df["status"] == "ok"]
    assert (ok["latency_p50_s"] > 0).all() and (ok["achieved_flop_per_s"] > 0).all()
    assert ok["flops"].tolist() == [2 * 32 * 32 * 1, 2 * 32 * 32 * 2]
    for _, r in ok.iterrows():  # each point's peak (it changes with threads) and contention, as its run saw them
        summary = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
        assert r["peak_flop_per_s"] == pytest.approx(summary["peak_flop_per_s"])
        assert r["peak_source"] == summary["peak_source"]
        c = summary.get("contention") or {}
        assert (pd.isna(r["cpu_share"]) and "cpu_share" not in c) or r["cpu_share"] == pytest.approx(c["cpu_share"])
    assert set(history.read(logdir)["run_id"]) == set(ok["run_id"])  # every ok point is a history row
    png = sweeps[0] / "sweep.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the table on stdout, progress lines (not a TTY: one per point, with an ETA) on stderr
    assert "2 point(s) ok, 2 failed" in proc.stdout
    progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    assert len(progress) == 4 and all("ETA" in ln for ln in progress)
    assert progress[1].startswith("[##########----------] 2/4") and "ran out of memory" in progress[1]


def test_sweep_where_every_point_fails_exits_2(tmp_path: Path):
    scen = write_scenario(tmp_path, "hungry", HUNGRY)
    proc = run_cli("sweep", str(scen), "--batch-sizes", "8,16", "--logdir", str(tmp_path / "logs"))
    assert proc.returncode == 2 and "every point of the sweep failed" in proc.stderr
    sweep_csv = next((tmp_path / "logs" / "hungry" / "sweeps").glob("*/sweep.csv"))
    assert pd.read_csv(sweep_csv)["status"].tolist() == ["failed", "failed"]


def test_bad_sweep_input(tmp_path: Path):
    scen = write_scenario(tmp_path, "hungry", HUNGRY)
    for args, words in [(("--batch-sizes", "1,two"), "not a whole number"),
                        (("--batch-sizes", "1", "--dtypes", "float64"), "unknown dtype")]:
        proc = run_cli("sweep", str(scen), *args, "--logdir", str(tmp_path / "logs"))
        assert proc.returncode == 2 and words in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)
    proc = run_cli("sweep", "nosuchscenario", "--batch-sizes", "1", "--logdir", str(tmp_path / "logs"))
    assert proc.returncode == 2 and "unknown scenario" in proc.stderr


def test_parsers():
    assert parse_ints("1, 2,4,4,8", "--batch-sizes") == [1, 2, 4, 8]
    assert parse_dtypes("fp32,bf16,float32") == ["float32", "bfloat16"]
    for bad in ("", "0", "x"):
        with pytest.raises(HarnessError):
            parse_ints(bad, "--threads")
    with pytest.raises(HarnessError, match="unknown dtype"):
        parse_dtypes("float64")


def test_progress_eta_scales_with_batch_size():
    pts = [Point(b, None, None) for b in (1, 2, 4, 8)]
    out = io.StringIO()
    p = Progress(pts, stream=out)
    p.finish(0, pts[0], "bs 1", 2.0, "ok")
    p.finish(1, pts[1], "bs 2", 3.0, "ok")
    # fitted 1 + 1 * bs: the rest (bs 4 and 8) take 5 + 9 = 14 s
    assert p.eta() == pytest.approx(14.0)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("[##########----------] 2/4  bs 2: ok (3.0 s)") and "ETA 14s" in lines[1]


def test_a_disturbed_point_is_marked():
    summary = {"run_id": "r1", "latency_s": {"p50": 0.0157, "p90": 0.02}, "peak_flop_per_s": 7.04e10,
               "peak_source": "calibrated", "contention": {"cpu_share": 0.41, "disturbed": True}}
    row = {c: None for c in COLUMNS}
    outcome = _point_row(SimpleNamespace(summary=summary, path=None), row)
    assert (row["cpu_share"], row["disturbed"], row["peak_source"], row["peak_flop_per_s"]) == \
        (0.41, 1, "calibrated", 7.04e10)
    assert outcome == "p50 15.7 ms (machine disturbed)"
    summary["contention"] = {"cpu_share": 0.99, "disturbed": False}
    assert _point_row(SimpleNamespace(summary=summary, path=None), row) == "p50 15.7 ms" and row["disturbed"] == 0


# --------------------------------------------------------------------------- every workload

def _sweep_csv(logdir: Path, scenario: str) -> tuple[pd.DataFrame, Path]:
    sweep_dir = next((logdir / scenario / "sweeps").iterdir())
    return pd.read_csv(sweep_dir / "sweep.csv"), sweep_dir


def test_sweep_a_train_step_over_batch_sizes(tmp_path: Path):
    scen = write_scenario(tmp_path, "hungry", HUNGRY)
    logdir = tmp_path / "logs"
    proc = run_cli("sweep", str(scen), "--workload", "train", "--batch-sizes", "1,2", "--iters", "2", "--warmup", "1",
                   "--threads", "1", "--no-plot", "--logdir", str(logdir))
    assert proc.returncode == 0, proc.stderr
    df, _ = _sweep_csv(logdir, "hungry")
    assert list(df.columns) == COLUMNS + ["workload", "forward_p50_s", "backward_p50_s", "optimizer_p50_s"]
    assert df["status"].tolist() == ["ok", "ok"] and df["workload"].tolist() == ["train", "train"]
    assert df["batch_size"].tolist() == [1, 2]
    for col in ("forward_p50_s", "backward_p50_s", "optimizer_p50_s", "latency_p50_s"):
        assert (df[col] > 0).all(), col
    assert "p50 per training step" in proc.stdout.splitlines()[0]
    assert "forward  backward  optimizer" in proc.stdout


def test_sweep_a_generation_over_prompt_lengths(tmp_path: Path):
    logdir = tmp_path / "logs"
    proc = run_cli("sweep", "tiny_llama", "--workload", "generate", "--prompt-lens", "8,16", "--new-tokens", "2",
                   "--iters", "2", "--warmup", "1", "--threads", "1", "--logdir", str(logdir))
    assert proc.returncode == 0, proc.stderr
    df, sweep_dir = _sweep_csv(logdir, "tiny_llama")
    assert df["status"].tolist() == ["ok", "ok"] and df["prompt_len"].tolist() == [8, 16]
    assert (df["decode_step_p50_s"] > 0).all() and (df["ttft_p50_s"] > 0).all()
    for _, r in df.iterrows():  # each point ran its own spec: the prompt length and the fixed new_tokens
        summary = json.loads((Path(r["run_dir"]) / "summary.json").read_text())
        assert (summary["prompt_len"], summary["new_tokens"], summary["workload"]) == (r["prompt_len"], 2, "generate")
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    assert meta["options"] == {"prompt_len": [8, 16]} and meta["workload"] == "generate"
    assert (sweep_dir / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    head = proc.stdout.splitlines()
    assert "p50 per generation, over prompt length" in head[0] and "decode step" in head[1]
    progress = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    assert len(progress) == 2 and "prompt length 16" in progress[1] and "ETA" in progress[1]


def test_bad_workload_lists_exit_2(tmp_path: Path):
    for args, words in [(("--workload", "generate", "--prompt-lens", "0"),
                         "--prompt-lens '0': --prompt-len must be at least 1"),
                        (("--workload", "train", "--prompt-lens", "8,16"),
                         "--prompt-lens does not apply to --workload train"),
                        (("--workload", "generate", "--prompt-len", "8", "--prompt-lens", "8,16"), "both given"),
                        (("--workload", "train",), "nothing to sweep")]:
        proc = run_cli("sweep", "tiny_llama", *args, "--logdir", str(tmp_path / "logs"))
        assert proc.returncode == 2 and words in proc.stderr and proc.stderr.count("\n") == 1, (args, proc.stderr)
    assert not (tmp_path / "logs").exists()


def test_points_are_the_product_of_every_list():
    from harness.pipeline.spec import RunSpec
    from harness.tracking.sweep import make_points, x_key

    base = RunSpec(target="tiny_llama", workload="generate", workload_options={"new_tokens": 2}, iters=2)
    pts = make_points(base, [1, 2], ["float32"], [None], {"prompt_len": [8, 16]})
    assert [(p.batch_size, p.options["prompt_len"]) for p in pts] == [(1, 8), (2, 8), (1, 16), (2, 16)]
    spec = RunSpec.from_dict(pts[3].spec)  # what a (remote) job runs
    assert spec == base.replace(batch_size=2, dtype="float32", workload_options={"new_tokens": 2, "prompt_len": 16})
    assert [p.size for p in pts] == [8, 16, 16, 32]  # the ETA's x: batch size x prompt length
    assert x_key([1, 2], {"prompt_len": [8, 16]}) == "prompt_len"
    assert x_key([1, 2], {"optimizer": ["sgd"]}) == "batch_size"
    assert x_key([None], {"optimizer": ["sgd", "adamw"]}) == "optimizer"


def test_the_keyword_api_runs_each_point_through_its_spec(tmp_path: Path):
    """`sweep(...)` as callers used it (an injected `run`): the workload's options reach every point."""
    from harness.tracking.sweep import sweep

    scen = write_scenario(tmp_path, "hungry", HUNGRY)
    calls = []

    def fake_run(target, **kw):
        calls.append(kw)
        s = {"run_id": f"r{len(calls)}", "latency_s": {"p50": 0.01}, "workload": "train",
             "optimizer": kw["workload_options"]["optimizer"], "batch_size": kw["batch_size"],
             "phases": {p: {"time_s": {"p50": 0.001}} for p in ("forward", "backward", "optimizer")}}
        return SimpleNamespace(summary=s, path=None)

    result = sweep(str(scen), [1, 2], workload="train", lists={"optimizer": ["sgd", "adamw"]},
                   logdir=tmp_path / "logs", iters=2, run=fake_run, progress=False, plot=False)
    assert [(c["batch_size"], c["workload_options"]["optimizer"], c["iters"]) for c in calls] == \
        [(1, "sgd", 2), (2, "sgd", 2), (1, "adamw", 2), (2, "adamw", 2)]
    assert [r["optimizer"] for r in result.rows] == ["sgd", "sgd", "adamw", "adamw"]
    assert all(r["backward_p50_s"] == 0.001 and r["workload"] == "train" for r in result.rows)
    df = pd.read_csv(result.path / "sweep.csv")
    assert df["optimizer"].tolist() == ["sgd", "sgd", "adamw", "adamw"] and result.x == "batch_size"
