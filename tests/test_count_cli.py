"""The `count` verb: table and JSON output, scenario files, one-line errors."""
import argparse
import json
import textwrap

import pytest

from harness.commands import count as count_cmd
from harness.errors import HarnessError


def run(capsys, *argv):
    parser = argparse.ArgumentParser(prog="harness")
    sub = parser.add_subparsers(dest="verb")
    count_cmd.add_parser(sub)
    args = parser.parse_args(["count", *argv])
    assert args.func is count_cmd.main
    rc = args.func(args)
    return rc, capsys.readouterr().out


@pytest.fixture
def scenario_file(tmp_path):
    p = tmp_path / "mlp.py"
    p.write_text(textwrap.dedent('''
        """A two-layer MLP."""
        import torch
        from torch import nn

        def build_model():
            return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))

        def make_inputs(batch_size, device):
            return torch.randn(batch_size, 32, device=device)
    '''))
    return p


def test_table_by_module_and_by_op(capsys, scenario_file):
    rc, out = run(capsys, str(scenario_file), "--batch-size", "4")
    assert rc == 0
    # 4 x (32*64 + 64*10) = 10,752 MACs
    assert "(10,752)" in out and "10.8 KMAC" in out
    assert "(model) (Sequential)" in out and "0 (Linear)" in out
    rc, out = run(capsys, str(scenario_file), "--by", "op")
    assert rc == 0 and "aten::linear" in out and "% FLOPs" in out
    rc, out = run(capsys, str(scenario_file), "--depth", "0")
    assert "0 (Linear)" not in out


def test_json_output_and_meta_device(capsys, scenario_file):
    rc, out = run(capsys, str(scenario_file), "--json", "--batch-size", "2")
    data = json.loads(out)
    assert rc == 0
    assert data["macs"] == 2 * (32 * 64 + 64 * 10) and data["flops"] == 2 * data["macs"]
    assert data["params"] == 32 * 64 + 64 + 64 * 10 + 10
    assert data["batch_size"] == 2 and data["device"] == "cpu"
    assert {r["op"] for r in data["by_op"]} == {"aten::linear", "aten::relu"}
    assert data["by_module"][0]["path"] == "" and data["coverage"]["share_of_calls"] == 1.0
    rc, out = run(capsys, str(scenario_file), "--json", "--batch-size", "2", "--device", "meta")
    meta = json.loads(out)
    assert meta["device"] == "meta"
    assert (meta["macs"], meta["other_flops"], meta["bytes"]) == (data["macs"], data["other_flops"], data["bytes"])


def test_builtin_scenario_on_meta(capsys):
    rc, out = run(capsys, "vgg16", "--device", "meta", "--json")
    data = json.loads(out)
    assert data["macs"] == 15_470_264_320 and data["params"] == 138_357_544


def test_errors_are_one_line(capsys, scenario_file):
    with pytest.raises(HarnessError, match="unknown scenario"):
        run(capsys, "no_such_scenario")
    with pytest.raises(HarnessError, match="batch-size"):
        run(capsys, str(scenario_file), "--batch-size", "0")
    with pytest.raises(HarnessError, match="device"):
        run(capsys, str(scenario_file), "--device", "nonsense")


def test_forward_error_becomes_harness_error(capsys, tmp_path):
    p = tmp_path / "broken.py"
    p.write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class Broken(nn.Module):
            def forward(self, x):
                raise RuntimeError("shape mismatch somewhere")

        def build_model():
            return Broken()

        def make_inputs(batch_size, device):
            return torch.randn(batch_size, 3)
    '''))
    with pytest.raises(HarnessError, match="raised during the counted forward pass: RuntimeError: shape mismatch"):
        run(capsys, str(p))


def test_through_the_harness_cli(capsys, scenario_file):
    from harness import cli

    rc = cli.main(["count", str(scenario_file), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out)["macs"] == 32 * 64 + 64 * 10
    rc = cli.main(["count", "no_such_scenario"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "unknown scenario" in err


def test_dtype_through_the_cli(capsys, scenario_file):
    from harness import cli

    rc = cli.main(["count", str(scenario_file), "--json", "--dtype", "bf16", "--batch-size", "2"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    data = json.loads(out.out)
    assert data["dtype"] == "bfloat16" and data["macs"] == 2 * (32 * 64 + 64 * 10)
    assert {r["dtype"] for r in data["by_op"]} == {"bfloat16"}
    # bf16: 2 bytes an element; first linear reads x (2x32), W (64x32), b (64) and writes 2x64
    first = data["by_op"][0]
    assert first["op"] == "aten::linear" and first["bytes"] == 2 * (2 * 32 + 64 * 32 + 64 + 2 * 64)
    rc = cli.main(["count", str(scenario_file), "--json", "--dtype", "float16", "--device", "meta"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out)["by_op"][0]["dtype"] == "float16"
    with pytest.raises(SystemExit) as exc:
        cli.main(["count", str(scenario_file), "--dtype", "int4"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "unknown dtype 'int4'" in err and "`python -m harness count --help`" in err
