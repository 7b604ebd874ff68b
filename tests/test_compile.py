"""``--compile``: a compiled model timed, its compile cost measured apart, its work counted eagerly.

Real torch.compile (Inductor and gcc on CPU) on one tiny MLP, compiled once per test module
(a fixture shares the run); a graph break uses the ``eager`` backend, which traces with dynamo
but generates no code, so it costs no C++ compile.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli, write_scenario
from harness.errors import HarnessError
from harness.pipeline.spec import RunSpec
from harness.tracking.ab.sides import parse_side

MLP = '''
import torch
from torch import nn

batch_size = 4


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 8))


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 32, device=device)
'''

BREAK = '''
import torch
from torch import nn

batch_size = 2


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        x = self.a(x)
        torch._dynamo.graph_break()
        return self.b(x)


def build_model():
    torch.manual_seed(0)
    return Broken()


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 16, device=device)
'''

QUICK = ("--iters", "5", "--warmup", "1", "--active", "1")


def _only_run(logdir: Path, scenario: str) -> Path:
    (run,) = [p for p in (logdir / scenario).iterdir() if p.name != "trends"]
    return run


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory):
    """One compiled forward run of the MLP through the CLI: (terminal text, summary, run dir, logdir)."""
    d = tmp_path_factory.mktemp("compiled")
    scen = write_scenario(d, "mlp", MLP)
    r = run_cli("run", str(scen), "--compile", "--vs-eager-s", "1", "--threads", "1", "--logdir", str(d / "logs"),
                *QUICK, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run = _only_run(d / "logs", "mlp")
    return r.stdout, json.loads((run / "summary.json").read_text()), run, d


def test_compile_record(compiled_run):
    _, s, _, _ = compiled_run
    c = s["compile"]
    assert (c["mode"], c["backend"], c["dynamic"]) == ("default", "inductor", None)
    # one frame (the Sequential's forward), one graph, no break, nothing compiled after the first iteration
    assert (c["frames_compiled"], c["graphs"], c["graph_breaks"], c["recompiles"]) == (1, 1, [], 0)
    assert c["recompiles_while_timed"] == 0 and c["steady"] is True
    assert c["cache"] in ("warm", "cold")  # one graph: the FX graph cache served it or it did not
    assert c["compile_s"] > 0 and c["settle_iterations"] == 1
    assert s["stage_times_s"]["compile"] >= c["compile_s"]


def test_compiled_work_is_the_eager_count(compiled_run):
    """The compiled run counts the eager model's math, exactly: 4 x (32 x 64 + 64 x 8) MACs."""
    _, s, _, _ = compiled_run
    assert s["macs"] == 4 * (32 * 64 + 64 * 8) == 10_240
    assert s["flops"] == 2 * s["macs"]
    eager = json.loads(run_cli("count", str(Path(s["path"]).parent.parent.parent / "mlp.py"), "--json").stdout)
    assert (eager["macs"], eager["flops"], eager["other_flops"]) == (s["macs"], s["flops"], s["other_flops"])


def test_compiled_config_is_its_own(compiled_run):
    """Eager and compiled runs never share a config: history, compare and trends keep them apart."""
    _, s, _, d = compiled_run
    assert s["config_key"].endswith("|compile=default/inductor")
    hist = pd.read_csv(d / "logs" / "history.csv")
    assert list(hist["config_key"]) == [s["config_key"]]


def test_compiled_terminal_and_report_say_so(compiled_run):
    out, s, run, _ = compiled_run
    line = next(x for x in out.splitlines() if x.strip().startswith("compiled"))
    assert f"{s['compile']['compile_s']:.1f} s to the end of the first iteration" in line
    assert "1 graph, 0 graph breaks, 0 recompiles after it" in line
    # the op table's limit is said, not hidden: fused kernels' time is in kernels.csv, not attributed to ops
    assert "its fused kernels, with the ops and modules they fused, are in kernels.csv" in out
    assert any("fused" in w for w in s["warnings"])
    html = (run / "report.html").read_text()
    assert "its fused kernels, with the ops and modules they fused, are in kernels.csv" in html
    assert "1 graph, 0 graph breaks, 0 recompiles after it" in html  # the compile row, as in the terminal


def test_graph_break_is_reported(tmp_path):
    """A graph break in forward: two frames, two graphs, the break's reason counted once per compile."""
    scen = write_scenario(tmp_path, "broken", BREAK)
    r = run_cli("run", str(scen), "--compile", "--compile-backend", "eager", "--no-dynamic", "--vs-eager-s", "0",
                "--threads", "1",
                "--logdir", str(tmp_path / "logs"), *QUICK, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((_only_run(tmp_path / "logs", "broken") / "summary.json").read_text())
    c = s["compile"]
    assert (c["backend"], c["dynamic"], c["cache"]) == ("eager", False, "not used")
    assert c["graphs"] == 2 and c["frames_compiled"] == 2
    assert len(c["graph_breaks"]) == 1 and c["graph_breaks"][0]["count"] == 1
    assert "graph_break" in c["graph_breaks"][0]["reason"].lower() or "graph break" in c["graph_breaks"][0]["reason"]
    assert s["macs"] == 2 * (16 * 16 + 16 * 4)
    assert s["config_key"].endswith("|compile=default/eager+static")


@pytest.mark.parametrize("args, message", [
    (("--compile-backend", "eager"), "--compile-backend needs --compile [MODE]"),
    (("--no-dynamic",), "--dynamic/--no-dynamic needs --compile [MODE]"),
])
def test_compile_options_need_compile(args, message, tmp_path):
    r = run_cli("run", "vgg16", *args, "--logdir", str(tmp_path))
    assert r.returncode == 2 and message in r.stderr


def test_compile_mode_is_checked(tmp_path):
    r = run_cli("run", "vgg16", "--compile", "fastest", "--logdir", str(tmp_path))
    assert r.returncode == 2 and "fastest" in r.stderr
    with pytest.raises(HarnessError, match="use one of default, reduce-overhead"):
        RunSpec(target="vgg16", compile="fastest")


def test_ab_side_compile_key():
    """``ab X X:compile``: the side's run spec carries the mode (bare: default)."""
    assert parse_side("vgg16").spec.compile is None
    assert parse_side("vgg16:compile").spec.compile == "default"
    assert parse_side("vgg16:compile=max-autotune").spec.compile == "max-autotune"
    with pytest.raises(HarnessError, match="side 'vgg16:compile=fast'"):
        parse_side("vgg16:compile=fast")


def test_python_api_compile():
    """``harness.profile(model, x, compile="default")`` (no logdir): the record says compiled, the work is eager's."""
    import torch
    from torch import nn

    import harness

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    run = harness.profile(model, torch.randn(3, 8), compile="default", iters=3, warmup=1, threads=1, vs_eager_s=0)
    assert run.summary["compile"]["graphs"] == 1 and run.summary["compile"]["steady"] is True
    assert run.summary["macs"] == 3 * 8 * 8
    assert run.summary["compile"]["vs_eager"] == {"skipped": "--vs-eager-s 0"}
    assert run.summary["config_key"].endswith("|compile=default/inductor")


def test_vs_eager_in_the_run(compiled_run):
    """``run --compile`` times the compiled model against itself run eagerly, in alternating blocks."""
    out, s, _, _ = compiled_run
    v = s["compile"]["vs_eager"]
    assert v["judged"] == "forward" and v["pairs"] >= 8 and v["budget_s"] == 1.0
    assert v["low"] <= v["ratio"] <= v["high"]
    assert v["speedup"] == pytest.approx(1 / v["ratio"]) and v["speedup_low"] == pytest.approx(1 / v["high"])
    assert v["verdict"] in ("faster", "slower", "no significant change", "inconclusive")
    assert v["eager_median_s"] > 0 and v["compiled_median_s"] > 0
    assert s["stage_times_s"]["vs_eager"] >= 1.0
    line = next(x for x in out.splitlines() if x.strip().startswith("vs eager"))
    assert f"{v['speedup']:.3f}x the eager speed [{v['speedup_low']:.3f}, {v['speedup_high']:.3f}] per forward" in line


def test_vs_eager_times_the_eager_model(tmp_path):
    """The eager side really runs eagerly: a backend whose compiled code spins 3 ms per call makes the
    compiled side ~3 ms + a forward, the eager side a forward (~0.05 ms): compiled is judged slower,
    by far more than the 5 % threshold; had both sides run the compiled code the ratio would be ~1."""
    import time

    import torch

    from harness.pipeline import versus_eager
    from harness.pipeline.run import build

    calls = []

    def spinning(gm, example_inputs):
        def run(*args):  # a busy wait, not a sleep: a sleeping block would have a low CPU share (disturbed)
            calls.append(1)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.003:
                pass
            return gm.forward(*args)
        return run

    scen = write_scenario(tmp_path, "mlp", MLP)
    _, workload, prep = build(RunSpec(target=str(scen), threads=1, logdir=None))
    try:
        prep.model.compile(backend=spinning)
        workload.setup(prep)
        with torch.inference_mode():
            v = versus_eager.compare(workload, prep, budget_s=0.5)
    finally:
        workload.teardown(prep)
        prep.restore()
    assert v["compiled_median_s"] >= 0.003 and v["eager_median_s"] < 0.002
    assert v["ratio"] > 2 and v["low"] > 1 and v["speedup"] < 0.5
    # the verdict is "slower", unless a neighbour disturbed too many block pairs (then it refuses to judge)
    assert v["verdict"] == "slower" or (v["verdict"] == "inconclusive" and v["disturbed"]), v
    assert calls  # the compiled side ran the backend's code


FAILING = MLP + '''

from torch._dynamo import register_backend


@register_backend
def failing_backend(gm, example_inputs):
    raise RuntimeError("this backend cannot lower the graph\\nsecond line of the error")
'''


def test_unknown_backend_is_exit_2(tmp_path):
    scen = write_scenario(tmp_path, "mlp", MLP)
    r = run_cli("run", str(scen), "--compile", "--compile-backend", "nosuch", "--logdir", str(tmp_path / "logs"))
    assert r.returncode == 2 and "--compile-backend 'nosuch'" in r.stderr and "inductor" in r.stderr
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("summary.json"))


def test_compile_failure_is_exit_2_with_the_first_line(tmp_path):
    """A backend that raises: exit 2, the error's first line, the full error in a file it names; no run dir."""
    scen = write_scenario(tmp_path, "mlp", FAILING)
    r = run_cli("run", str(scen), "--compile", "--compile-backend", "failing_backend", "--threads", "1",
                "--logdir", str(tmp_path / "logs"), *QUICK)
    assert r.returncode == 2, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert "torch.compile (failing_backend) failed" in line and "this backend cannot lower the graph" in line
    assert "second line" not in line
    path = Path(line.split("the full error: ")[1].split(" ")[0])
    assert "second line of the error" in path.read_text()
    path.unlink()
    assert not any((tmp_path / "logs").rglob("summary.json"))
    assert not (tmp_path / "logs" / "history.csv").exists()


def test_no_cpp_compiler_is_exit_2(tmp_path):
    """Inductor on CPU with no C++ compiler (CXX names one that does not exist): exit 2 naming it."""
    scen = write_scenario(tmp_path, "mlp", MLP)
    r = run_cli("run", str(scen), "--compile", "--logdir", str(tmp_path / "logs"),
                env={"CXX": "/nonexistent/g++"})
    assert r.returncode == 2 and "needs a C++ compiler" in r.stderr and "/nonexistent/g++" in r.stderr


def test_generate_recompiles_per_context_length(tmp_path):
    """A generation compiled (the ``eager`` backend: dynamo traces, no C++): the prefill compiles, the first
    decode step compiles for its context length (33 = prompt 32 + 1), the second recompiles (34: a new shape,
    which dynamo then marks dynamic), later steps reuse it; the terminal says where it compiled."""
    r = run_cli("run", "tiny_llama", "--compile", "--compile-backend", "eager", "--new-tokens", "4", "--threads", "1",
                "--vs-eager-s", "0", "--logdir", str(tmp_path / "logs"), *QUICK, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    c = json.loads((_only_run(tmp_path / "logs", "tiny_llama") / "summary.json").read_text())["compile"]
    assert [(x["iteration"], x["phase"], x["index"], x["at"], x["frames"]) for x in c["compiled_in"]] == [
        (0, "prefill", 0, "prefill", 1), (0, "decode", 0, "decode step 1 (context 33)", 1),
        (0, "decode", 1, "decode step 2 (context 34)", 1)]
    assert (c["graphs"], c["frames_compiled"], c["recompiles"], c["settle_iterations"]) == (3, 3, 0, 1)
    assert "compiled in prefill, decode step 1 (context 33), decode step 2 (context 34)" in r.stdout


def test_compiled_optimizer_step(tmp_path):
    """``--workload train --optimizer-step compiled``: the AdamW step runs under torch.compile too (more frames
    than the model's one), the config says so, and the counted work is still the eager step's, exactly."""
    scen = write_scenario(tmp_path, "mlp", MLP)
    common = ("--workload", "train", "--threads", "1", "--logdir", str(tmp_path / "logs"), *QUICK)
    r = run_cli("run", str(scen), "--compile", "--compile-backend", "eager", "--optimizer-step", "compiled",
                "--vs-eager-s", "0", *common, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((_only_run(tmp_path / "logs", "mlp") / "summary.json").read_text())
    assert s["optimizer_step"] == "compiled" and s["config_key"].endswith("|optimizer=adamw|optimizer_step=compiled")
    assert s["compile"]["frames_compiled"] > 1  # the Sequential's forward is one frame; the step adds its own
    # the meta forecast beside the measurement runs the step eagerly (it once failed: "needs --compile")
    assert "error_text" not in s["memory"]["forecast"] and s["memory"]["forecast"]["by_category_at_peak"][
        "optimizer_state"] == s["memory"]["by_category_at_peak"]["optimizer_state"]
    eager = json.loads(run_cli("count", str(scen), "--workload", "train", "--json").stdout)
    assert (eager["macs"], eager["flops"], eager["other_flops"]) == (s["macs"], s["flops"], s["other_flops"])
    r = run_cli("run", str(scen), "--optimizer-step", "compiled", *common)
    assert r.returncode == 2 and "--optimizer-step compiled needs --compile" in r.stderr


GROWING = '''
import torch
from torch import nn

batch_size = 2


class Growing(nn.Module):
    """Each call uses one more column of its input than the last: a new shape every call."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        n = 8 + self.calls % 48
        return self.lin(torch.nn.functional.pad(x[:, :n], (0, 64 - n)))


def build_model():
    torch.manual_seed(0)
    return Growing()


def make_inputs(batch_size, device):
    return torch.randn(batch_size, 64, device=device)
'''


def test_a_model_that_keeps_recompiling_says_so(tmp_path):
    """Static shapes (--no-dynamic) and a new slice length every call: dynamo recompiles on every shape change
    (counted: frames compiled after the first iteration, and while timed), the run is not a steady state and
    warns. The ``eager`` backend traces with dynamo without generating code."""
    scen = write_scenario(tmp_path, "growing", GROWING)
    r = run_cli("run", str(scen), "--compile", "--compile-backend", "eager", "--no-dynamic", "--vs-eager-s", "0",
                "--threads", "1", "--logdir", str(tmp_path / "logs"), *QUICK, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    c = json.loads((_only_run(tmp_path / "logs", "growing") / "summary.json").read_text())["compile"]
    assert c["recompiles"] >= 1 and c["settle_iterations"] == 5  # MAX_SETTLE: it never settled
    assert c["recompiles_while_timed"] >= 1 and c["steady"] is False
    assert f"recompiled {c['recompiles_while_timed']} times while timed" in r.stdout


def test_ab_eager_against_compiled_gives_a_verdict(compiled_run):
    """``ab X X:compile``: the two sides built in one process, the candidate compiled, a verdict and exit 0 or 1;
    ab.json says which side was compiled and the work counted is the same on both (the compiled side counts
    eagerly)."""
    _, s, _, d = compiled_run
    scen = d / "mlp.py"
    r = run_cli("ab", str(scen), f"{scen}:compile", "--budget-s", "1", "--threads", "1", "--logdir", str(d / "ab"),
                "--json", timeout=600)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res["verdict"] in ("faster", "slower", "no significant change", "inconclusive")
    assert res["exit_code"] == r.returncode and res["work_differs"] is False
    assert res["candidate"]["spec"]["run"]["compile"] == "default" and res["baseline"]["spec"]["run"]["compile"] is None
    assert res["candidate"]["counts"]["macs"] == res["baseline"]["counts"]["macs"] == s["macs"]
