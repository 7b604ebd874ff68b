"""The run pipeline's contracts: one input convention, workloads with phases, and an API
that leaves the caller's model as it found it."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn

import harness
from conftest import run_cli
from harness.core.calls import Call, split_inputs

LIST_SCENARIO = '''
"""Two tensors handed over as one list argument."""
import torch
from torch import nn

class SumOfTwo(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 8)
        self.b = nn.Linear(32, 8)

    def forward(self, xs):  # one argument: a list of two tensors
        return self.a(xs[0]) + self.b(xs[1])

def build_model():
    torch.manual_seed(0)
    return SumOfTwo()

def make_inputs(batch_size, device):
    return [torch.randn(batch_size, 16, device=device), torch.randn(batch_size, 32, device=device)]
'''
# batch 3: linear 16->8 = 3*8*16 = 384 MACs; linear 32->8 = 3*8*32 = 768 MACs; 1,152 in all
LIST_MACS = 3 * 8 * 16 + 3 * 8 * 32


def test_the_input_rule():
    t = torch.ones(2)
    assert split_inputs(t).args == (t,) and split_inputs(t).kwargs == {}
    assert split_inputs((t, t)).args == (t, t)  # a tuple is the positional arguments
    assert split_inputs({"x": t}).kwargs == {"x": t}  # a dict is the keyword arguments
    lst = [t, t]
    assert split_inputs(lst).args == (lst,)  # anything else, a list too, is the single argument
    assert isinstance(split_inputs(lst), Call)


def test_list_inputs_run_count_and_profile_with_identical_macs(tmp_path):
    path = tmp_path / "listin.py"
    path.write_text(textwrap.dedent(LIST_SCENARIO))
    proc = run_cli("count", str(path), "--batch-size", "3", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["macs"] == LIST_MACS
    proc = run_cli("run", str(path), "--batch-size", "3", "--iters", "3", "--warmup", "1", "--json",
                   "--logdir", str(tmp_path / "logs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["macs"] == LIST_MACS and s["phases"]["forward"]["macs"] == LIST_MACS
    assert s["coverage"]["calls_aligned"] is True  # the profiled forward dispatched exactly the counted ops
    # summary.json on disk names its run directory, as --json does
    (on_disk,) = (tmp_path / "logs" / "listin").glob("*/summary.json")
    assert json.loads(on_disk.read_text())["path"] == s["path"] == str(on_disk.parent)


def _state(m: nn.Module) -> dict:
    return {"dtypes": {n: p.dtype for n, p in m.named_parameters()},
            "devices": {n: p.device for n, p in m.named_parameters()},
            "training": {n: x.training for n, x in m.named_modules()},
            "requires_grad": {n: p.requires_grad for n, p in m.named_parameters()},
            "values": {n: p.detach().clone() for n, p in m.named_parameters()}}


def _same(a: dict, b: dict) -> bool:
    return (a["dtypes"] == b["dtypes"] and a["devices"] == b["devices"] and a["training"] == b["training"]
            and a["requires_grad"] == b["requires_grad"]
            and all(torch.equal(a["values"][k], b["values"][k]) for k in a["values"]))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


@pytest.mark.parametrize("options", [{}, {"dtype": "bfloat16"}, {"dtype": "float32"}, {"device": "cpu"},
                                     {"threads": 1}])
@pytest.mark.parametrize("start_dtype", [torch.float32, torch.bfloat16])
def test_profile_leaves_the_model_as_it_found_it(options, start_dtype):
    torch.manual_seed(0)
    m = MLP().to(start_dtype).train()
    m.fc1.weight.requires_grad_(False)  # a frozen tensor stays frozen
    before = _state(m)
    threads = torch.get_num_threads()
    run = harness.profile(m, torch.randn(4, 8), iters=2, warmup=1, **options)
    try:
        assert _same(before, _state(m))
        # the default dtype is the model's own; a different one ran on a copy
        assert run.summary["dtype"] == str(options.get("dtype") and getattr(torch, options["dtype"]) or start_dtype).replace("torch.", "")
        # and the user's next count works in the model's own dtype
        assert harness.count(m, torch.randn(4, 8, dtype=start_dtype)).macs == 4 * 8 * 16 + 4 * 16 * 4
    finally:
        torch.set_num_threads(threads)


def test_api_runs_are_named_after_the_model_class():
    run = harness.profile(MLP(), torch.randn(2, 8), iters=2, warmup=0)
    assert run.summary["scenario"] == "MLP" and run.summary["config_key"].startswith("MLP|")
    run = harness.profile(MLP(), torch.randn(2, 8), iters=2, warmup=0, name="mine")
    assert run.summary["scenario"] == "mine"


def test_forward_is_one_phase_and_the_phase_is_everywhere():
    run = harness.profile(MLP(), torch.randn(2, 8), iters=3, warmup=1)
    s = run.summary
    assert s["workload"] == "forward" and s["phase_names"] == ["forward"]
    # 2*8*16 + 2*16*4 = 256 + 128 = 384 MACs, all in the one phase
    assert s["macs"] == s["phases"]["forward"]["macs"] == 384
    assert set(run.ops.loc[run.ops.kind == "op", "phase"]) == {"forward"}
    assert set(run.modules.phase) == {"forward"}
    assert len(run.phase_samples) == 3 and set(run.phase_samples.phase) == {"forward"}
    # a phase sample is the forward inside its iteration: never longer than the iteration
    assert (run.phase_samples.latency_s.values <= run.samples.latency_s.values + 1e-9).all()


@pytest.mark.parametrize("name,message", [("bogus", "unknown workload 'bogus'; use one of forward, generate, train")])
def test_unknown_workloads_exit_2(tmp_path, name, message):
    proc = run_cli("run", "two_input", "--workload", name, "--logdir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_bad_arguments_are_refused_before_torch_is_imported():
    """`run x --batch-size 0` answers at once: the check runs before torch (seconds to import) is loaded."""
    import subprocess
    import sys

    code = ("import sys; from harness.cli import main; rc = main(['run', 'vgg16', '--batch-size', '0']); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr
    assert "--batch-size must be at least 1" in out.stderr


def test_workload_options_as_keywords():
    with pytest.raises(harness.HarnessError, match="--prompt-len does not apply to --workload forward"):
        harness.profile(MLP(), torch.randn(2, 8), iters=1, warmup=0, prompt_len=4)


def test_training_through_the_api_leaves_the_callers_weights():
    torch.manual_seed(0)
    m = MLP().train()
    before = _state(m)
    run = harness.profile(m, torch.randn(4, 8), iters=2, warmup=1, workload="train", optimizer="sgd")
    assert run.summary["workload"] == "train" and set(run.summary["phases"]) == {"forward", "backward", "optimizer"}
    assert _same(before, _state(m))  # the steps trained it; teardown put every weight back
    assert all(p.grad is None for p in m.parameters())
