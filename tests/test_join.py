"""The join's fallback: when the profiled op sequence does not match the counted one."""
from __future__ import annotations

import torch
from torch import nn

from harness.count import count
from harness.pipeline.join import join
from harness.pipeline.prepare import prepare_model
from harness.pipeline.profiling import ProfileConfig, run_profiler
from harness.pipeline.workloads import Forward


def test_fallback_join_by_op_and_shapes_keeps_every_flop_and_microsecond():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    x = torch.randn(4, 32)
    with torch.inference_mode():
        counts = count(model, x)
        prof = run_profiler(Forward(), prepare_model(model, x), config=ProfileConfig(active=2), staged_trace=None)
    # the counter saw one op less than the profiler: sequences differ, so calls cannot be matched one to one
    counts.events = counts.events.iloc[1:].reset_index(drop=True)
    j = join(prof, counts, peak_flop_per_s=1e11, peak_bytes_per_s=1e10)
    assert not j.aligned and not j.coverage["calls_aligned"]
    # linear 32->64 on 4 rows: 4*32*64 = 8,192 MACs; linear 64->8: 4*64*8 = 2,048 MACs (from by_op, unchanged)
    assert counts.macs == 8_192 + 2_048
    lin = j.ops_by_shape[j.ops_by_shape.name == "aten::linear"].set_index("input_shapes")
    assert lin.loc["[[4, 32], [64, 32], [64]]", "macs"] == 8_192
    assert lin.loc["[[4, 64], [8, 64], [8]]", "macs"] == 2_048
    for df in (j.ops, j.ops_by_shape):
        assert df.flops.sum() == counts.flops
        assert abs(df.self_time_s.sum() - j.time_per_forward_s) <= 1e-12
    mods = j.modules.set_index("path")
    assert abs(mods.loc["", "time_s"] - j.op_time_per_forward_s) <= 1e-12
    assert abs(mods.drop(index="").time_s.sum() - mods.loc["", "time_s"]) <= 1e-12


def test_extra_profiled_calls_are_skipped_in_order():
    """The profiler may record a dispatch-level call the counter never sees (transformers' cache makes an
    `aten::to` inside a tensor constructor): the counted (op, shapes) sequence is matched as a subsequence,
    in order, and the extra call keeps its time with no work; never when the counted work is incomplete."""
    import pandas as pd

    from harness.pipeline.join import _match_step

    got = pd.DataFrame({"name": ["aten::linear", "aten::to", "aten::linear", "aten::relu"],
                        "input_shapes": ["[[2, 8]]", "[[]]", "[[2, 16]]", "[[2, 4]]"]}, index=[10, 11, 12, 13])
    want = ["aten::linear", "aten::linear", "aten::relu"]
    shapes = ["[[2, 8]]", "[[2, 16]]", "[[2, 4]]"]
    assert _match_step(got, want, shapes) == [10, 12, 13]
    assert _match_step(got, want, shapes, subsequence=False) is None  # incomplete counts: the fallback join
    assert _match_step(got, ["aten::linear", "aten::gelu"], ["[[2, 8]]", "[[2, 4]]"]) is None
    assert _match_step(got, list(got.name), list(got.input_shapes)) == [10, 11, 12, 13]
