"""harness.models: names, options, inputs derived from the model, errors, and `harness list`."""
import argparse
import os
import subprocess
import sys

import pytest
import torch

from harness.errors import HarnessError
from harness.models import ModelOptions, add_arguments, is_qualified, list_models, load, options_from_args, split_variant
from harness.models.common import disk_name

from conftest import ROOT


def one_line_error(text, options=None) -> str:
    with pytest.raises(HarnessError) as err:
        load(text, options)
    assert err.value.exit_code == 2
    assert "\n" not in err.value.message
    return err.value.message


@pytest.mark.parametrize("text, expected", [
    ("timm:x", True), ("torchvision:resnet50", True), ("hf:./cfg", True), ("hf:org/name", True), ("foo:bar", True),
    ("./a.py", False), ("C:\\x", False), ("vgg16", False), ("vgg16:channels_last", False), ("model.py:bs=8", False),
])
def test_is_qualified(text, expected):
    assert is_qualified(text) is expected


@pytest.mark.parametrize("text, expected", [
    ("timm:resnet50:channels_last", ("timm:resnet50", "channels_last")),
    ("timm:resnet50", ("timm:resnet50", "")),
    ("hf:org/m:dtype=bfloat16,bs=2", ("hf:org/m", "dtype=bfloat16,bs=2")),
    ("vgg16:bs=8", ("vgg16", "bs=8")),
    ("model.py", ("model.py", "")),
])
def test_split_variant(text, expected):
    assert split_variant(text) == expected


@pytest.mark.parametrize("source, name, expected", [
    ("timm", "convnext_tiny", "timm-convnext_tiny"), ("hf", "./cfg/llama", "hf-cfg-llama"),
    ("hf", "org/name", "hf-org-name"), ("torchvision", "efficientnet_b0", "torchvision-efficientnet_b0"),
])
def test_disk_name(source, name, expected):
    assert disk_name(source, name) == expected


def parse(*argv) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_options_from_args():
    o = options_from_args(parse("--input-size", "64", "--seq-len", "32", "--model-kwargs", '{"num_classes": 10}',
                                "--attn-implementation", "eager", "--weights"))
    assert o == ModelOptions(input_size=64, seq_len=32, model_kwargs={"num_classes": 10}, attn_implementation="eager",
                             weights=True)
    assert options_from_args(parse()) == ModelOptions()


@pytest.mark.parametrize("argv, words", [
    (("--model-kwargs", "{num_classes: 10}"), "--model-kwargs is not valid JSON"),
    (("--model-kwargs", "[10]"), "must be a JSON object"),
    (("--input-size", "0"), "--input-size must be at least 1"),
])
def test_bad_options_are_one_line_errors(argv, words):
    with pytest.raises(HarnessError) as err:
        options_from_args(parse(*argv))
    assert words in err.value.message and err.value.exit_code == 2 and "\n" not in err.value.message


@pytest.mark.parametrize("text, words", [
    ("foo:bar", "unknown model source 'foo'"),
    ("timm:resnet_50", "unknown timm model 'resnet_50'; did you mean resnet50"),
    ("torchvision:resnet5", "unknown torchvision model 'resnet5'; did you mean resnet50"),
    ("hf:lama", "unknown hf model 'lama'; did you mean llama"),
    ("hf:no-such-org/no-such-model", "'no-such-org/no-such-model' is not in the local Hugging Face cache (nothing is downloaded)"),
    ("timm:", "give a model name after 'timm:'"),
])
def test_bad_names_are_one_line_errors(text, words):
    assert words in one_line_error(text)


def test_unknown_model_kwargs_name_the_close_ones():
    msg = one_line_error("hf:llama", ModelOptions(model_kwargs={"hiden_size": 64}))
    assert "'hiden_size'; did you mean hidden_size" in msg
    msg = one_line_error("torchvision:resnet18", ModelOptions(weights=True))
    assert "--weights needs" in msg and "nothing is downloaded" in msg


def test_a_missing_library_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # what `import timm` meets when timm is not installed
    msg = one_line_error("timm:resnet18")
    assert msg == ("timm: models need timm, which is not installed here; pip install timm   "
                   "(or pip install 'harness[timm]')")


@pytest.mark.parametrize("name, size, shape", [
    ("inception_v3", None, (2, 3, 299, 299)), ("fcn_resnet50", None, (2, 3, 520, 520)),
    ("efficientnet_b0", None, (2, 3, 224, 224)), ("r3d_18", None, (2, 3, 16, 112, 112)),
    ("resnet18", 96, (2, 3, 96, 96)),
])
def test_torchvision_input_shapes(name, size, shape):
    assert tuple(load(f"torchvision:{name}", ModelOptions(input_size=size)).make_inputs(2, "cpu").shape) == shape


def test_detection_takes_a_list_and_optical_flow_a_pair():
    det = load("torchvision:fasterrcnn_resnet50_fpn", ModelOptions(input_size=64))
    images = det.make_inputs(3, "cpu")
    assert det.kind == "detection" and type(images) is list and [tuple(i.shape) for i in images] == [(3, 64, 64)] * 3
    flow = load("torchvision:raft_small").make_inputs(2, "cpu")
    assert type(flow) is tuple and [tuple(f.shape) for f in flow] == [(2, 3, 224, 224)] * 2
    assert "multiple of 8 and at least 128" in one_line_error("torchvision:raft_small", ModelOptions(input_size=100))


def test_timm_input_size_from_the_pretrained_config():
    pytest.importorskip("timm")
    assert tuple(load("timm:inception_v3").make_inputs(1, "cpu").shape) == (1, 3, 299, 299)
    vit = load("timm:vit_tiny_patch16_224", ModelOptions(input_size=32))  # fixed size: built with img_size=32
    assert tuple(vit.build_model().patch_embed.img_size) == (32, 32)


def test_hf_token_ids_stay_in_the_vocabulary_and_positions():
    pytest.importorskip("transformers")
    kw = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=50, n_positions=32)
    ids = load("hf:gpt2", ModelOptions(model_kwargs=kw)).make_inputs(4, "cpu")["input_ids"]
    assert tuple(ids.shape) == (4, 32)  # the default 128 lowered to the model's 32 positions
    assert 0 <= int(ids.min()) and int(ids.max()) < 50 and ids.dtype == torch.int64
    assert "--seq-len 64 exceeds the model's 32 positions" in one_line_error(
        "hf:gpt2", ModelOptions(model_kwargs=kw, seq_len=64))


def test_hf_config_directory_and_weights_on_disk(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   vocab_size=64)
    saved = transformers.LlamaForCausalLM(cfg)
    saved.save_pretrained(tmp_path / "tiny")
    scen = load(f"hf:{tmp_path / 'tiny'}", ModelOptions(attn_implementation="eager"))
    assert scen.kind == "causal-lm" and scen.name.startswith("hf-") and scen.name.endswith("-tiny") and scen.path is None
    random_model = scen.build_model()
    assert random_model.config._attn_implementation == "eager"
    loaded = load(f"hf:{tmp_path / 'tiny'}", ModelOptions(weights=True)).build_model()
    w = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(loaded.state_dict()[w], saved.state_dict()[w])
    assert not torch.equal(random_model.state_dict()[w], saved.state_dict()[w])
    (tmp_path / "tiny" / "model.safetensors").unlink()
    with pytest.raises(HarnessError) as err:
        load(f"hf:{tmp_path / 'tiny'}", ModelOptions(weights=True)).build_model()
    assert "--weights found no weights on disk" in err.value.message and "\n" not in err.value.message


def test_random_weights_are_reproducible_and_leave_the_callers_rng_alone():
    scen = load("torchvision:mobilenet_v3_small")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = scen.build_model(), scen.build_model()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_list_models_filters_by_glob():
    assert list_models("torchvision", "resnet1*") == ["resnet101", "resnet152", "resnet18"]
    with pytest.raises(HarnessError):
        list_models("foo")


ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run_cli(*argv, flags=()):
    """``python [FLAGS] -m harness ARGV`` in a fresh process."""
    return subprocess.run([sys.executable, *flags, "-m", "harness", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=ENV)


def test_list_does_not_import_torch():
    # -X importtime logs `import` statements (not importlib calls): torch would be one
    r = run_cli("list", flags=("-X", "importtime"))
    assert r.returncode == 0, r.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "harness.pipeline.scenario" in imported and "torch" not in imported
    assert "vgg16  " in r.stdout and "VGG-16 (torchvision, random weights) on 224x224 RGB images" in r.stdout
    # and the whole verb, run in a fresh interpreter, leaves torch out of sys.modules
    code = "import sys; from harness.cli import main; rc = main(['list']); print(rc, 'torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=ENV)
    assert r.stdout.splitlines()[-1] == "0 False", r.stderr


def test_list_sources_on_the_command_line():
    r = run_cli("list", "torchvision", "vit_b_*")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["torchvision:vit_b_16", "torchvision:vit_b_32"]
    r = run_cli("list", "foo")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown model source 'foo'") and "Traceback" not in r.stderr
    r = run_cli("list", "torchvision", "zz*")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1


def test_torchvision_weights_come_from_disk_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert "--weights needs" in one_line_error("torchvision:mobilenet_v3_small", ModelOptions(weights=True))
    state = load("torchvision:mobilenet_v3_small").build_model().state_dict()
    state["classifier.3.bias"] = torch.arange(1000, dtype=torch.float32)  # recognisable weights
    url = torchvision_weights_url("mobilenet_v3_small")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[-1])
    model = load("torchvision:mobilenet_v3_small", ModelOptions(weights=True)).build_model()
    assert torch.equal(model.classifier[3].bias, torch.arange(1000, dtype=torch.float32))


def torchvision_weights_url(name: str) -> str:
    from torchvision.models import get_model_weights

    return get_model_weights(name).DEFAULT.url


def test_hf_directory_config_takes_overrides_and_names_a_missing_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    transformers.BertConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            vocab_size=64).save_pretrained(tmp_path / "bert")
    scen = load(f"hf:{tmp_path / 'bert'}", ModelOptions(model_kwargs={"num_hidden_layers": 3}, seq_len=8))
    model = scen.build_model()
    assert scen.kind == "text" and len(model.encoder.layer) == 3 and model.config.hidden_size == 32
    assert tuple(scen.make_inputs(2, "cpu")["input_ids"].shape) == (2, 8)
    (tmp_path / "empty").mkdir()
    assert "holds no readable transformers config.json" in one_line_error(f"hf:{tmp_path / 'empty'}")


def test_importing_the_package_imports_no_model_library():
    code = ("import sys, harness.models as m; m.is_qualified('timm:x'); m.split_variant('timm:x:bs=2'); "
            "print([k for k in ('torch', 'timm', 'transformers', 'torchvision') if k in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=ENV)
    assert r.stdout.strip() == "[]", r.stderr
