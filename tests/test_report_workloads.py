"""Every output says which workload and which phase: report.html, TensorBoard's TEXT, the terminal and the
multi-rank printout render the workload's word and its Figure rows; op tables per phase; cache-resident ops
marked wherever a bandwidth utilization is shown. Real (tiny) train and generate runs through the CLI."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY_SCENARIO, run_cli
from harness.pipeline.workloads import figures, render
from harness.report.cells import CACHE_LEGEND, CACHE_MARK
from harness.report.html import ops_table
from harness.report.tensorboard import TEXT_MODULES, TEXT_OPS, TEXT_SUMMARY, ops_markdown
from harness.report.terminal import render_summary, render_top_ops
from tbserver import make_summary

GENERATE = ("--threads", "1", "--warmup", "1", "--iters", "2", "--prompt-len", "8", "--new-tokens", "2")


def _only_run(logdir: Path, scenario: str) -> Path:
    runs = [p for p in (logdir / scenario).iterdir() if (p / "summary.json").is_file()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    """``run tiny.py --workload train`` (the conv + linear model, SGD): its stdout and run directory."""
    d = tmp_path_factory.mktemp("train")
    scen = d / "tiny.py"
    scen.write_text(TINY_SCENARIO)
    proc = run_cli("run", str(scen), "--workload", "train", "--optimizer", "sgd", "--warmup", "1", "--iters", "2",
                   "--threads", "1", "--logdir", str(d / "logs"))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, _only_run(d / "logs", "tiny")


@pytest.fixture(scope="module")
def generate_run(tmp_path_factory):
    """``run tiny_llama`` (its scenario's workload: generate): its stdout and run directory."""
    d = tmp_path_factory.mktemp("generate")
    proc = run_cli("run", "tiny_llama", *GENERATE, "--logdir", str(d / "logs"))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, _only_run(d / "logs", "tiny_llama")


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _text(html: str) -> str:
    """The page's text: tags dropped, entities of the few characters the report escapes put back."""
    text = re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]*"', "", html))
    return text.replace("&amp;", "&").replace("&gt;", ">").replace("&lt;", "<").replace("&#x27;", "'")


# ------------------------------------------------------------------ report.html

def test_train_report_says_training_step_and_shows_mfu_hfu_and_the_memory_split(train_run):
    _, run_dir = train_run
    s = _summary(run_dir)
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    text = _text(html)
    assert "per forward" not in text and "/ forward" not in text and "Profiled forwards" not in text
    assert "MACs per training step (MAC)" in text and "Profiled training steps" in text
    assert "Self time / training step (s)" in text and "Time / training step (s)" in text
    assert 'id="workload"' in html
    for label in ("training step", "MFU / HFU", "memory split"):
        assert f"<td>{label}</td>" in html
    assert "MFU" in text and "HFU" in text
    for part in ("gradients", "optimizer state", "activations"):  # the memory split's own labels
        assert part in text
    # the rows are the workload's Figure rows, text for text
    for f in figures(s):
        assert f"<td>{f.label}</td><td>{f.text}</td>" in html.replace("&#x27;", "'")
    # one modules table per phase, each headed with its phase
    for phase in ("forward", "backward", "optimizer"):
        assert f'id="modules-{phase}"' in html and f"Modules in phase {phase}" in text


def test_generate_report_shows_ttft_decode_step_and_mbu(generate_run):
    _, run_dir = generate_run
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    text = _text(html)
    for words in ("TTFT", "decode step", "MBU", "Profiled generations", "MACs per generation (MAC)"):
        assert words in text, words
    assert "per forward" not in text and "Profiled forwards" not in text
    assert 'id="modules-prefill"' in html and 'id="modules-decode"' in html


def test_time_by_module_of_a_generation_has_a_panel_per_phase(generate_run):
    """The picture's bars are the modules table's times of each phase (drawn again from the run's CSV)."""
    from harness.report.pictures import time_by_module_png

    _, run_dir = generate_run
    modules = pd.read_csv(run_dir / "modules.csv")
    drawn = time_by_module_png(run_dir.parent / "again.png", modules, "t", phases=["prefill", "decode"],
                               word="generation")
    assert [p.phase for p in drawn.panels] == ["prefill", "decode"] and "per generation" in drawn.title
    for panel in drawn.panels:
        times = modules[modules["phase"] == panel.phase].set_index("path")["time_s"]
        assert panel.total_s == pytest.approx(times["(model)"])
        for bar in panel.bars:
            assert bar.label.endswith(f" · {panel.phase}")
            if not bar.grey:
                assert bar.value_s == pytest.approx(times[bar.label.split("  ")[0]])


# ------------------------------------------------------------------ TensorBoard

def _tb_text(run_dir: Path, tag: str) -> str:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util

    acc = ea.EventAccumulator(str(run_dir), size_guidance={ea.TENSORS: 0})
    acc.Reload()
    return tensor_util.make_ndarray(acc.Tensors(tag)[-1].tensor_proto).item().decode()


def test_tensorboard_text_of_a_train_run_uses_the_word_and_the_figure_rows(train_run):
    _, run_dir = train_run
    s = _summary(run_dir)
    md = _tb_text(run_dir, TEXT_SUMMARY)
    assert "per training step" in md and "per forward" not in md and "Profiled forwards" not in md
    assert "**Workload `train`**" in md
    mfu = next(f for f in figures(s) if f.label == "MFU / HFU")
    assert f"| MFU / HFU | {mfu.text} |" in md
    ops = _tb_text(run_dir, TEXT_OPS)
    assert "in phase backward" in ops and "Self time / training step (s)" in ops and "/ forward" not in ops
    mods = _tb_text(run_dir, TEXT_MODULES)
    assert "modules in phase forward" in mods and "Time / training step (s)" in mods


# ------------------------------------------------------------------ terminal

def _tables(out: str) -> list[str]:
    """The title line of each operator table printed."""
    return [line for line in out.splitlines() if re.match(r"Top \d+ operators? of ", line)]


def test_terminal_shows_the_figure_rows_and_an_op_table_per_phase(generate_run, train_run):
    out, run_dir = generate_run
    s = _summary(run_dir)
    assert render(s) and render(s) in out  # the workload's rows, as render_summary prints them
    titles = _tables(out)
    assert len(titles) == 2 and "in phase prefill" in titles[0] and "in phase decode" in titles[1]
    assert all("per generation" in t for t in titles)
    train_out, _ = train_run
    assert [t.split(" in phase ")[1].split()[0] for t in _tables(train_out)] == ["forward", "backward", "optimizer"]


def test_phase_flag_picks_one_table(tmp_path):
    proc = run_cli("run", "tiny_llama", *GENERATE, "--phase", "decode", "--logdir", str(tmp_path / "logs"))
    assert proc.returncode == 0, proc.stderr
    titles = _tables(proc.stdout)
    assert len(titles) == 1 and "in phase decode" in titles[0]


def test_an_unknown_phase_is_refused_before_the_run(tmp_path):
    proc = run_cli("run", "tiny_llama", "--workload", "generate", "--phase", "nope", "--logdir", str(tmp_path / "l"))
    assert proc.returncode == 2
    assert "--phase nope: --workload generate's phases are prefill, decode" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "l").exists()  # nothing ran


def test_an_unknown_phase_of_the_scenario_workload_is_refused_after(generate_run):
    """Without --workload the scenario file names it: the run's own phases are checked (exit 2, listed)."""
    from harness.errors import HarnessError

    _, run_dir = generate_run
    ops = pd.read_csv(run_dir / "ops.csv")
    with pytest.raises(HarnessError, match=r"--phase nope: this run's phases are prefill, decode"):
        render_top_ops(ops, _summary(run_dir), top=5, sort_by="self_time", phase="nope")


def _phase_ops(times: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame([{"name": f"aten::op_{p}", "kind": "op", "phase": p, "calls": 1, "dispatch_calls": 1,
                          "self_time_s": t, "counted": True, "flops": 1e6, "other_flops": 0.0, "bytes": 1e3,
                          "utilization": 0.1} for p, t in times.items()])


def test_more_than_three_phases_show_the_largest_saying_so():
    times = {"a": 0.001, "b": 0.004, "c": 0.002, "d": 0.003}
    s = make_summary(phases={p: {"time_s": {"p50": 0.001}} for p in times}, phase_names=list(times))
    out = render_top_ops(_phase_ops(times), s, top=5, sort_by="self_time")
    assert out.splitlines()[0] == ("showing phase b, the largest (most profiled op time) of 4 phases (a, b, c, d); "
                                   "--phase NAME for another")
    (only,) = _tables(out)
    assert "in phase b " in only
    picked = render_top_ops(_phase_ops(times), s, top=5, sort_by="self_time", phase="d")
    assert "showing phase" not in picked and "in phase d " in _tables(picked)[0]
    three = {k: times[k] for k in "abc"}
    s3 = make_summary(phases={p: {"time_s": {"p50": 0.001}} for p in three}, phase_names=list(three))
    assert len(_tables(render_top_ops(_phase_ops(three), s3, top=5, sort_by="self_time"))) == 3


# ------------------------------------------------------------------ multi-rank printout

def test_the_multi_rank_printout_shows_the_same_figure_rows(train_run, capsys):
    from harness.distributed import merge
    from harness.distributed.command import print_job

    _, run_dir = train_run
    s = _summary(run_dir)
    comms = [{"comm_time_s": 0.001, "iteration_time_s": 0.01}] * 2
    job = merge.job_summary([s, s], comms, ["h", "h"], [0, 1], backend="gloo")
    print_job(argparse.Namespace(json=False, logdir="logs"), job)
    out = capsys.readouterr().out
    assert render(s) in out and render(s) in render_summary(s)  # one rendering of the rows, in both printouts
    assert "MFU / HFU" in out and "memory split" in out


# ------------------------------------------------------------------ cache-resident ops

def _cache_ops() -> pd.DataFrame:
    """An elementwise op moving 4 MB in 10 us: 400 GB/s, 2x a 200 GB/s DRAM (cache-resident), and one below it."""
    row = {"kind": "op", "calls": 1, "dispatch_calls": 1, "counted": True, "flops": 0.0, "other_flops": 1e6,
           "peak_bytes_per_s": 2e11}
    return pd.DataFrame([
        {**row, "name": "aten::add", "self_time_s": 1e-5, "bytes": 4e6, "achieved_bytes_per_s": 4e11,
         "bandwidth_utilization": 2.0, "cache_resident": True},
        {**row, "name": "aten::mul", "self_time_s": 1e-4, "bytes": 4e6, "achieved_bytes_per_s": 4e10,
         "bandwidth_utilization": 0.2, "cache_resident": False},
    ])


def test_a_cache_resident_op_is_marked_wherever_its_utilization_is_shown():
    ops, s = _cache_ops(), make_summary()
    term = render_top_ops(ops, s, top=5, sort_by="self_time")
    add = next(line for line in term.splitlines() if line.startswith("aten::add"))
    mul = next(line for line in term.splitlines() if line.startswith("aten::mul"))
    assert "200.0%" + CACHE_MARK in add and CACHE_MARK not in mul and "20.0%" in mul
    assert "above DRAM bandwidth: the data sat in cache" in " ".join(term.split())
    head, rows = ops_table(ops, summary=s)
    cells = {r[0]: dict(zip(head, r)) for r in rows}
    assert cells["aten::add"]["Bandwidth utilization (% of peak B/s)"] == "200.0% (cache)"
    assert cells["aten::mul"]["Bandwidth utilization (% of peak B/s)"] == "20.0%"
    md = ops_markdown(ops, summary=s)
    assert "200.0% (cache)" in md and CACHE_LEGEND in md
    # a row without the column (an older ops.csv) is marked by its utilization alone
    old = ops.drop(columns=["cache_resident"])
    assert "200.0% (cache)" in render_top_ops(old, s, top=5, sort_by="self_time")
    # a table with no such row has no legend line
    assert "sat in cache" not in render_top_ops(ops.iloc[1:], s, top=5, sort_by="self_time")
