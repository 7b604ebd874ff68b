"""The kernel-level join of a compiled run: kernels.csv, module attribution, coverage, what fusion did.

Real torch.compile (Inductor, gcc) on CPU, each model compiled once per test module (fixtures share
the runs): a small conv + batch norm + linear model, a pointwise chain whose bytes are written out
by hand, and the tiny_gpt scenario. The CUDA path (Triton kernels, CUDA-graph replay) is fed
profiler-shaped events, as tests/test_cuda_events.py does, since there is no GPU here.
"""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn
from torch.autograd import DeviceType
from torch.autograd.profiler_util import EventList, FunctionEvent

import harness
from harness.count import count
from harness.pipeline.join import join
from harness.pipeline.profiling import from_events
from harness.pipeline.provenance import Graph, Recorder, parse_code

QUICK = dict(iters=3, warmup=1, threads=1, vs_eager_s=0)  # compiled runs; eager vs compiled is test_compile's


class ConvLin(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Sequential(nn.Linear(8, 4), nn.ReLU())

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return torch.relu(self.head(x.mean((2, 3))) * 2 + 1)


class Lookup(nn.Module):
    """An embedding table of 1000 x 64 float32 (256,000 B) from which 8 rows are gathered, then scaled."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(1000, 64)

    def forward(self, ids):
        return self.emb(ids) * 2


class Chain(nn.Module):
    def forward(self, x):
        return torch.relu(x * 2 + 1) * 3


def _trace_names(run_dir: Path) -> list[str]:
    (trace,) = list(run_dir.glob("*.pt.trace.json*"))
    raw = gzip.decompress(trace.read_bytes()) if trace.suffix == ".gz" else trace.read_bytes()
    return [e.get("name", "") for e in json.loads(raw)["traceEvents"]]


@pytest.fixture(scope="module")
def convlin(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("convlin")
    run = harness.profile(ConvLin().eval(), torch.randn(1, 3, 16, 16), compile="default", logdir=d, name="convlin",
                          **QUICK)
    return run, pd.read_csv(run.path / "kernels.csv", keep_default_na=False), run.path


@pytest.fixture(scope="module")
def chain():
    return harness.profile(Chain(), torch.randn(64, 64), compile="default", **QUICK)


@pytest.fixture(scope="module")
def tiny_gpt(tmp_path_factory):
    run = harness.run_scenario("tiny_gpt", compile="default", logdir=tmp_path_factory.mktemp("gpt"), **QUICK)
    return run, pd.read_csv(run.path / "kernels.csv", keep_default_na=False), run.path


def _every_generated_kernel_has_a_row(kernels: pd.DataFrame, run_dir: Path) -> set[str]:
    in_trace = {n for n in _trace_names(run_dir) if re.match(r"^graph_\d+_cpp_fused_", n)}
    assert in_trace, "the trace has generated kernels"
    rows = kernels.set_index("kernel")
    for name in in_trace:
        r = rows.loc[[name]].iloc[0]
        assert r["kind"] == "generated" and r["fused_ops"] and r["modules"], name
    return in_trace


def test_convlin_every_generated_kernel_has_fused_ops_and_a_module(convlin):
    run, kernels, path = convlin
    _every_generated_kernel_has_a_row(kernels, path)
    # the convolution stays an extern kernel, holding the conv's 1 x 8 x 14 x 14 x (3 x 3 x 3) MACs
    conv = kernels[(kernels.kernel == "aten::convolution")].iloc[0]
    assert conv["kind"] == "extern" and conv["modules"] == "conv" and conv["fused_ops"] == "aten::conv2d"
    assert conv["macs"] == 8 * 14 * 14 * 3 * 3 * 3 == 42_336
    # every counted MAC lands on exactly one kernel: the sum over kernels is the eager count
    assert kernels["macs"].sum() == run.summary["macs"] == 42_336 + 8 * 4
    assert kernels["other_flops"].sum() == pytest.approx(run.summary["other_flops"])


def test_convlin_conv_bytes_are_its_buffers(convlin):
    """The extern convolution moves its input, weight, bias and output: (768 + 216 + 8 + 1568) x 4 B."""
    _, kernels, _ = convlin
    conv = kernels[kernels.kernel == "aten::convolution"].iloc[0]
    assert conv["bytes"] == (1 * 3 * 16 * 16 + 8 * 3 * 3 * 3 + 8 + 1 * 8 * 14 * 14) * 4 == 10_240


def test_convlin_kernel_time_is_attributed_to_modules(convlin):
    run, kernels, _ = convlin
    cov = run.summary["coverage"]
    assert cov["share_of_kernel_time_in_modules"] >= 0.95 and cov["unattributed_kernels"] == []
    assert cov["kernel_time_per_iteration_s"] == pytest.approx(kernels["time_s"].sum())
    mods = run.modules.set_index("path")
    # the root holds every kernel's time; conv holds the whole convolution kernel's time
    assert mods.loc["(model)", "time_s"] == pytest.approx(kernels["time_s"].sum())
    conv_kernels = kernels[kernels.modules == "conv"]["time_s"].sum()
    assert mods.loc["conv", "time_s"] == pytest.approx(conv_kernels)
    assert mods.loc["head", "time_s"] >= mods.loc["head.0", "time_s"] > 0


def test_convlin_fusion_summary(convlin):
    run, kernels, _ = convlin
    f = run.summary["compile"]["fusion"]
    assert f["eager_bytes"] == run.summary["bytes"]
    assert f["compiled_bytes"] == pytest.approx((kernels["bytes"]).sum())
    assert f["eager_kernels"] == 9  # conv2d, batch_norm, relu, mean, linear, relu, mul, add, relu
    assert f["compiled_kernels"] == pytest.approx(kernels["calls"].sum()) and f["compiled_kernels"] < 9


def test_chain_moves_fewer_bytes_by_the_intermediates(chain):
    """x * 2 + 1, relu, * 3 on a 64 x 64 float32 tensor (16 KiB).

    Eager: four ops, each reads its input and writes its output: 4 x (16384 + 16384) = 131072 B.
    Compiled: one kernel reads x and writes the result: 16384 + 16384 = 32768 B. The difference
    is the three intermediate tensors, each written once and read once: 3 x 2 x 16384 = 98304 B."""
    run = chain
    tensor = 64 * 64 * 4
    k = run.kernels[run.kernels.kind == "generated"]
    assert len(k) == 1 and k.iloc[0]["bytes"] == 2 * tensor == 32_768
    assert k.iloc[0]["fused_ops"].split(";") == ["aten::mul", "aten::add", "aten::relu"]
    f = run.summary["compile"]["fusion"]
    assert f["eager_bytes"] == 4 * 2 * tensor == 131_072
    assert f["compiled_bytes"] == 32_768
    assert f["bytes_saved"] == 3 * 2 * tensor == 98_304
    assert (f["eager_kernels"], f["compiled_kernels"]) == (4, 1)
    assert k.iloc[0]["other_flops"] == 4 * 64 * 64  # four elementwise ops of 4096 elements


def test_tiny_gpt_kernels_and_attribution(tiny_gpt):
    run, kernels, path = tiny_gpt
    _every_generated_kernel_has_a_row(kernels, path)
    cov = run.summary["coverage"]
    assert cov["share_of_kernel_time_in_modules"] >= 0.95, cov["unattributed_kernels"]
    # every kernel moves something: its buffers' sizes were all found in the generated code
    assert (kernels.loc[kernels.kind.isin(["generated", "extern"]), "bytes"] > 0).all()
    assert kernels["macs"].sum() == pytest.approx(run.summary["macs"], rel=0.01)
    assert (path / "roofline.png").stat().st_size > 0 and (path / "time_by_module.png").stat().st_size > 0


def test_tiny_gpt_terminal_kernels_line(tiny_gpt):
    from harness.report.kernels_line import kernels_line

    run, _, _ = tiny_gpt
    line = kernels_line(run.summary)
    f = run.summary["compile"]["fusion"]
    assert line.startswith(f"{f['compiled_kernels']:g} per iteration") and "in modules" in line


# ------------------------------------------------------------------ generated code parsing

TRITON_CODE = '''
triton_poi_fused_add_mul_0 = async_compile.triton('triton_poi_fused_add_mul_0', \'\'\'
@triton_heuristics.pointwise(size_hints={'x': 1024}, filename=__file__,
    triton_meta={'signature': {'in_out_ptr0': '*fp32', 'in_ptr0': '*fp16', 'xnumel': 'i32', 'XBLOCK': 'constexpr'}},
)
@triton.jit
def triton_poi_fused_add_mul_0(in_out_ptr0, in_ptr0, xnumel, XBLOCK : tl.constexpr):
    pass
\'\'\', device_str='cuda')

class Runner:
    def call(self, args):
        arg0_1, arg1_1 = args
        assert_size_stride(arg0_1, (4, 256), (256, 1), 'input')
        assert_size_stride(arg1_1, (256, 256), (256, 1), 'input')
        buf0 = empty_strided_cuda((4, 256), (256, 1), torch.float32)
        # Topologically Sorted Source Nodes: [linear], Original ATen: [aten.mm]
        # [Provenance debug handles] extern_kernels.mm:1
        extern_kernels.mm(arg0_1, arg1_1, out=buf0)
        buf1 = buf0; del buf0  # reuse
        # [Provenance debug handles] triton_poi_fused_add_mul_0:2
        triton_poi_fused_add_mul_0.run(buf1, arg0_1, 1024, stream=stream0)
        return (buf1, )
'''


def test_parse_triton_code_bytes():
    """mm: reads 4 x 256 and 256 x 256, writes 4 x 256 (float32 where the code does not say);
    the Triton kernel reads and writes its in-out buffer (4 x 256 fp32, twice) and reads 4 x 256 fp16."""
    mm, tri = parse_code(TRITON_CODE)
    assert (mm.name, mm.kind, mm.handle) == ("aten::mm", "extern", "extern_kernels.mm:1")
    assert mm.bytes == (4 * 256 + 256 * 256 + 4 * 256) * 4
    assert (tri.name, tri.kind) == ("triton_poi_fused_add_mul_0", "generated")
    assert tri.bytes == 2 * 4 * 256 * 4 + 4 * 256 * 2


# ------------------------------------------------------------------ CUDA, profiler-shaped events

class LinAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(256, 256, bias=False)

    def forward(self, x):
        return self.fc(x) * 2 + x


TRITON_US, GEMM_US, REPLAY_US, STRAY_US = 4, 20, 3, 2


def _cuda_events(steps: int, replay: bool) -> EventList:
    """Per step: the compiled region, its call range, the GEMM (aten::mm, an extern kernel) and the Triton
    launch with their device kernels; with ``replay`` (CUDA graphs) the Triton kernel runs again from a
    graph, and a kernel nothing recorded, both without a CPU op (no correlation)."""
    ids = iter(range(1, 100_000))

    def ev(name, start, end, device=DeviceType.CPU, annotation=False):
        return FunctionEvent(id=next(ids), name=name, thread=0 if device == DeviceType.CPU else 7, start_us=start,
                             end_us=end, input_shapes=[], stack=[], device_type=device, use_device="cuda",
                             is_user_annotation=annotation)

    out = []
    for step in range(steps):
        t = step * 1000
        mm = ev("aten::mm", t + 20, t + 40)
        mm.append_kernel("sm90_xmma_gemm", 0, GEMM_US)
        launch = ev("cuLaunchKernel", t + 45, t + 50)
        launch.append_kernel("triton_poi_fused_add_mul_0", 0, TRITON_US)
        out += [ev(f"ProfilerStep#{step}", t, t + 900), ev("model_inference", t + 1, t + 890),
                ev("forward", t + 2, t + 880), ev("Torch-Compiled Region: 0/0", t + 5, t + 100),
                ev("## Call CompiledFxGraph fabc ##", t + 10, t + 90), mm, launch,
                ev("sm90_xmma_gemm", t + 100, t + 100 + GEMM_US, DeviceType.CUDA),
                ev("triton_poi_fused_add_mul_0", t + 130, t + 130 + TRITON_US, DeviceType.CUDA)]
        if replay:
            out += [ev("triton_poi_fused_add_mul_0", t + 200, t + 200 + REPLAY_US, DeviceType.CUDA),
                    ev("void stray_kernel<float>", t + 300, t + 300 + STRAY_US, DeviceType.CUDA)]
    el = EventList(out, use_device="cuda")
    el._build_tree()
    return el


def _recorder() -> Recorder:
    """What the recording backend and Inductor's artifacts give for LinAdd (its code: TRITON_CODE)."""
    rec = Recorder()
    rec.graphs.append(Graph(nodes={"linear": ("aten::linear", "fc"), "mul": ("aten::mul", ""),
                                   "add": ("aten::add", "")}, label=""))
    mm, tri = parse_code(TRITON_CODE)
    mm.post_nodes, mm.nodes = ["mm"], ["linear"]
    tri.post_nodes, tri.nodes = ["mul", "add"], ["mul", "add"]
    rec.graphs[0].kernels += [mm, tri]
    return rec


@pytest.fixture(scope="module")
def cuda_joined():
    counts = count(LinAdd(), torch.randn(4, 256))
    out = {}
    for replay in (False, True):
        prof = from_events(_cuda_events(3, replay), "model_inference", ("forward",), "cuda")
        out[replay] = join(prof, counts, peak_flop_per_s=1e12, peak_bytes_per_s=1e11, provenance=_recorder())
    return counts, out


def test_cuda_triton_and_extern_kernels_joined(cuda_joined):
    counts, out = cuda_joined
    k = out[False].kernels.set_index("kernel")
    assert k.loc["triton_poi_fused_add_mul_0", "kind"] == "generated"
    assert k.loc["triton_poi_fused_add_mul_0", "time_s"] == pytest.approx(TRITON_US * 1e-6)
    assert k.loc["triton_poi_fused_add_mul_0", "fused_ops"] == "aten::mul;aten::add"
    assert k.loc["aten::mm", "time_s"] == pytest.approx(GEMM_US * 1e-6)
    assert k.loc["aten::mm", "macs"] == 4 * 256 * 256 == counts.macs
    assert k.loc["aten::mm", "modules"] == "fc" and k.loc["triton_poi_fused_add_mul_0", "modules"] == "(root)"
    assert out[False].coverage["share_of_kernel_time_in_modules"] == 1.0
    mods = out[False].modules.set_index("path")
    assert mods.loc["fc", "time_s"] == pytest.approx(GEMM_US * 1e-6)


def test_cuda_graph_replay_is_attributed_through_the_capture_or_listed(cuda_joined):
    """Replayed kernels have no CPU op: the recorded one is attributed by its name (kind replay), the
    other is listed as unattributed with its share, never folded into another row."""
    _, out = cuda_joined
    j = out[True]
    k = j.kernels.set_index(["kernel", "kind"])
    assert k.loc[("triton_poi_fused_add_mul_0", "replay"), "time_s"] == pytest.approx(REPLAY_US * 1e-6)
    assert k.loc[("triton_poi_fused_add_mul_0", "replay"), "modules"] == "(root)"
    assert k.loc[("void stray_kernel<float>", "unattributed"), "time_s"] == pytest.approx(STRAY_US * 1e-6)
    total = (TRITON_US + GEMM_US + REPLAY_US + STRAY_US) * 1e-6
    (stray,) = j.coverage["unattributed_kernels"]
    assert stray["kernel"] == "void stray_kernel<float>" and stray["share"] == pytest.approx(STRAY_US * 1e-6 / total)
    assert j.coverage["share_of_kernel_time_in_modules"] == pytest.approx(1 - STRAY_US * 1e-6 / total)


def test_a_gather_reads_its_rows_not_its_table():
    """A generated kernel that gathers 8 rows of a 1000 x 64 table is handed the whole table (256,000 B) but
    reads 8 x 64 x 4 = 2,048 B of it: the table's share is capped at the embedding's counted bytes (rows read
    2,048 + indices 8 x 8 = 64 + output 2,048 = 4,160 B), beside the kernel's other buffers: the indices it
    reads (64 B) and its own output (8 x 64 x 4 = 2,048 B)."""
    torch.manual_seed(0)
    run = harness.profile(Lookup().eval(), torch.randint(0, 1000, (8,)), compile="default", **QUICK)
    gen = run.kernels[run.kernels.kind == "generated"]
    assert len(gen) == 1 and "aten::embedding" in gen.iloc[0]["fused_ops"]
    rows_read, indices, out = 8 * 64 * 4, 8 * 8, 8 * 64 * 4
    assert gen.iloc[0]["bytes"] == (rows_read + indices + out) + indices + out
    assert gen.iloc[0]["bytes"] < 1000 * 64 * 4 / 10


def test_compiled_terminal_speaks_of_kernels(convlin):
    """The profiled line of a compiled run gives its kernel time and counted share, not dispatch-level op time."""
    from harness.core.units import percent, seconds
    from harness.report.terminal import render_summary

    run, _, _ = convlin
    cov = run.summary["coverage"]
    line = next(x for x in render_summary(run.summary).splitlines() if x.strip().startswith("profiled"))
    assert f"kernel time {seconds(cov['kernel_time_per_iteration_s'])} per forward (kernels.csv;" in line
    assert f"{percent(cov['share_of_kernel_time_counted'])} of kernel time counted" in line and "op time" not in line


def test_report_lists_the_kernels(convlin):
    """report.html of a compiled run has the kernel table: every generated kernel of the top rows by name."""
    run, kernels, run_dir = convlin
    page = (run_dir / "report.html").read_text()
    assert '<h2 id="kernels">Kernels' in page
    top = kernels.sort_values("time_s", ascending=False).head(5)
    for name in top.kernel:
        assert (name if len(name) <= 38 else name[:37]) in page


def test_report_summary_gives_the_kernel_time(convlin):
    from harness.core.units import seconds
    from harness.report.html import summary_rows

    run, _, _ = convlin
    rows = dict(summary_rows(run.summary))
    cov = run.summary["coverage"]
    assert rows["Kernel time per forward (s; kernels.csv, a compiled run's basis)"] == seconds(
        cov["kernel_time_per_iteration_s"])
