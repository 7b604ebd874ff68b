"""The CUDA path of profile → join, fed profiler-shaped events of a CUDA run.

No GPU here: the events are built as torch.profiler builds them on a GPU — CPU ops with the
kernels they launched, the kernels again as device events, and a device-side copy of every
``record_function`` range (a user annotation with device type CUDA) — then go through the
same code as a real run (``EventList._build_tree``, ``key_averages``, the join).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import DeviceType
from torch.autograd.profiler_util import EventList, FunctionEvent

from harness.count import count
from harness.pipeline.join import join
from harness.pipeline.profiling import from_events

GEMM_US, RELU_US = 30, 5  # device time of the two kernels of one forward


class LinRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 16)

    def forward(self, x):
        return torch.relu(self.fc(x))


def _events(steps: int = 3) -> EventList:
    ids = iter(range(1, 100_000))

    def ev(name, start, end, device=DeviceType.CPU, shapes=None, annotation=False):
        return FunctionEvent(id=next(ids), name=name, thread=0 if device == DeviceType.CPU else 7, start_us=start,
                             end_us=end, input_shapes=shapes or [], stack=[], device_type=device, use_device="cuda",
                             is_user_annotation=annotation)

    out = []
    for step in range(steps):
        t = step * 1000
        out += [ev(f"ProfilerStep#{step}", t, t + 900), ev("model_inference", t + 1, t + 890), ev("forward", t + 2, t + 880)]
        lin = ev("aten::linear", t + 10, t + 50, shapes=[[4, 8], [16, 8], [16]])
        addmm = ev("aten::addmm", t + 12, t + 48, shapes=[[16], [4, 8], [8, 16]])
        addmm.append_kernel("sm90_xmma_gemm", 0, GEMM_US)
        relu = ev("aten::relu", t + 55, t + 70, shapes=[[4, 16]])
        relu.append_kernel("vectorized_elementwise_relu", 0, RELU_US)
        out += [lin, addmm, relu,
                # what the profiler adds on a GPU: device-side copies of the ranges, and the kernels themselves
                ev("model_inference", t + 20, t + 90, DeviceType.CUDA, annotation=True),
                ev("forward", t + 21, t + 89, DeviceType.CUDA, annotation=True),
                ev("sm90_xmma_gemm", t + 30, t + 60, DeviceType.CUDA),
                ev("vectorized_elementwise_relu", t + 70, t + 75, DeviceType.CUDA)]
    el = EventList(out, use_device="cuda")
    el._build_tree()
    return el


@pytest.fixture(scope="module")
def joined():
    prof = from_events(_events(3), "model_inference", ("forward",), "cuda")
    counts = count(LinRelu(), torch.randn(4, 8))
    return prof, counts, join(prof, counts, peak_flop_per_s=1e12, peak_bytes_per_s=1e11)


def test_three_forwards_are_three_steps_not_six(joined):
    prof, _, _ = joined
    assert prof.steps == 3 and prof.device_time_recorded and prof.device_type == "cuda"


def test_join_aligns_and_op_time_is_the_sum_of_its_kernels(joined):
    _, counts, j = joined
    assert j.aligned
    ops = j.ops.set_index("name")
    assert ops.loc["aten::linear", "self_time_s"] == pytest.approx(GEMM_US * 1e-6)
    assert ops.loc["aten::relu", "self_time_s"] == pytest.approx(RELU_US * 1e-6)
    # 4 rows x 8 in x 16 out = 512 MACs on the linear, per forward
    assert ops.loc["aten::linear", "macs"] == 512 == counts.macs
    assert j.op_time_per_forward_s == pytest.approx((GEMM_US + RELU_US) * 1e-6)
    assert j.ops.self_time_s.sum() == pytest.approx(j.time_per_forward_s)


def test_no_duplicate_label_rows(joined):
    _, _, j = joined
    assert not j.ops.name.duplicated().any()
    assert (j.ops.name == "model_inference").sum() == 1
    assert j.ops.loc[j.ops.name == "model_inference", "calls"].item() == 1  # one per forward, not two
    assert not j.ops.name.isin(["sm90_xmma_gemm", "vectorized_elementwise_relu"]).any()  # kernels are not op rows


def test_kernels_table_names_the_launching_op_and_module(joined):
    _, _, j = joined
    k = j.kernels.set_index("kernel")
    assert k.loc["sm90_xmma_gemm", "op"] == "aten::linear" and k.loc["sm90_xmma_gemm", "module"] == "fc"
    assert k.loc["vectorized_elementwise_relu", "op"] == "aten::relu"
    assert k.loc["sm90_xmma_gemm", "calls"] == 1 and k.loc["sm90_xmma_gemm", "device_time_s"] == pytest.approx(GEMM_US * 1e-6)
    assert k.time_share.sum() == pytest.approx(1.0)


def test_no_device_time_falls_back_to_cpu_time_labelled():
    el = _events(2)
    for e in el:  # what a run without CUPTI records: no kernels at all
        e.kernels.clear()
    prof = from_events(el, "model_inference", ("forward",), "cuda")
    assert not prof.device_time_recorded and prof.device_type == "cpu"
    j = join(prof, count(LinRelu(), torch.randn(4, 8)), peak_flop_per_s=1e12, peak_bytes_per_s=1e11)
    assert j.ops.set_index("name").loc["aten::linear", "self_time_s"] == pytest.approx(40e-6)  # CPU time 10..50 us
