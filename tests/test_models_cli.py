"""Models by name through the CLI verbs (the Python side is in test_models_api/test_models_count)."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli


@pytest.mark.parametrize("args,says", [
    (["count", "foo:bar"], "foo"),
    (["count", "timm:resnet_50"], "resnet50"),  # closest names suggested
    (["count", "hf:nope/nope"], "nope/nope"),
    (["count", "torchvision:resnet18", "--model-kwargs", "{bad"], "--model-kwargs"),
    (["count", "hf:llama", "--model-kwargs", '{"hiden_size": 1}'], "hidden_size"),
    (["run", "torchvision:resnet_18", "--logdir", "LOGS"], "resnet18"),
])
def test_bad_names_and_options_exit_2_in_one_line(tmp_path, args, says):
    args = [str(tmp_path / "logs") if a == "LOGS" else a for a in args]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_count_and_run_a_model_by_name(tmp_path):
    pytest.importorskip("timm", reason="timm is not installed (pip install 'harness[timm]')")
    proc = run_cli("count", "timm:resnet18", "--input-size", "64", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    counted = json.loads(proc.stdout)
    assert counted["params"] == 11_689_512  # timm resnet18, 1000 classes: what PyTorch holds (numel)
    proc = run_cli("run", "timm:resnet18", "--input-size", "64", "--iters", "2", "--warmup", "1", "--json",
                   "--logdir", str(tmp_path / "logs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    # the run dir and history use the on-disk name; its work equals `count` of the same model and input size
    assert s["scenario"] == "timm-resnet18" and (tmp_path / "logs" / "timm-resnet18").is_dir()
    assert s["macs"] == counted["macs"] and s["coverage"]["calls_aligned"]
    # non-default model options are part of the config key, so two configurations never mix in history
    assert "|model=" in s["config_key"]
