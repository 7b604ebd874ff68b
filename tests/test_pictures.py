"""report/pictures: which points and modules get drawn (hand arithmetic), and that PNGs are written."""
from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pandas as pd
import pytest

from harness.hardware import Peak
from harness.report.pictures import (_bandwidths, _hot_ops, _module_rate, model_point, module_frontier, module_panels,
                                     roofline_png, roofline_points, time_by_module_png)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CPU_PEAK = Peak("Test CPU", "float32", 200e9, 25e9, "calibrated", "measured", device_type="cpu",
                bytes_source="calibrated")


def _ops():
    return pd.DataFrame([
        # name, total_flops, bytes, self_time_s  -> intensity, FLOP/s
        {"name": "aten::convolution", "total_flops": 2e9, "bytes": 4e7, "self_time_s": 0.02},   # 50 FLOP/B, 100 G
        {"name": "aten::convolution", "total_flops": 1e9, "bytes": 1e8, "self_time_s": 0.01},   # 10 FLOP/B, 100 G
        {"name": "aten::relu_", "total_flops": 1e6, "bytes": 8e6, "self_time_s": 0.001},        # 0.125, 1 G
        {"name": "aten::view", "total_flops": 0, "bytes": 0, "self_time_s": 1e-5},              # no work
        {"name": "aten::add", "total_flops": 5e5, "bytes": 6e6, "self_time_s": 0.0},            # no time
        {"name": "aten::max_pool2d", "total_flops": 0, "bytes": 3e6, "self_time_s": 0.002},     # no FLOPs
    ])


def test_roofline_points_hand_arithmetic():
    pts, skipped = roofline_points(_ops())
    assert skipped == 3
    assert list(pts["name"]) == ["aten::convolution", "aten::convolution", "aten::relu_"]  # by time
    assert list(pts["intensity"]) == pytest.approx([50.0, 10.0, 0.125])
    assert list(pts["flop_per_s"]) == pytest.approx([100e9, 100e9, 1e9])


def test_roofline_points_total_flops_fallback():
    df = pd.DataFrame([{"name": "aten::addmm", "flops": 300, "other_flops": 100, "bytes": 200, "self_time_s": 2.0}])
    pts, skipped = roofline_points(df)
    # (300 + 100) / 200 = 2 FLOP/B;  400 / 2 s = 200 FLOP/s
    assert skipped == 0 and pts["intensity"][0] == 2.0 and pts["flop_per_s"][0] == 200.0


@pytest.mark.parametrize("peak", [
    CPU_PEAK,
    Peak("Unknown GPU", "float32", None, None, "unknown", "not in the table", device_type="cuda"),
    Peak("Test CPU", "float32", 150e9, None, "derived", "no bandwidth", device_type="cpu"),
])
def test_roofline_png_is_written(tmp_path, peak):
    model = {"total_flops": 3.0015e9, "bytes": 1.5e8, "time_s": 0.035}
    drawn = roofline_png(tmp_path / "r" / "roofline.png", _ops(), peak, model, "tiny · batch 2 · float32")
    out = drawn.path
    data = out.read_bytes()
    assert out.name == "roofline.png" and data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp-")]  # atomic: no leftovers
    # the three plottable (op, shape) points, by time: (name, FLOP/B, FLOP/s, s)
    assert [p[0] for p in drawn.points] == ["aten::convolution", "aten::convolution", "aten::relu_"]
    assert [p[1:] for p in drawn.points] == [pytest.approx(x) for x in [(50.0, 100e9, 0.02), (10.0, 100e9, 0.01),
                                                                       (0.125, 1e9, 0.001)]]
    # the whole model: 3.0015 GFLOP / 150 MB = 20.01 FLOP/B at 3.0015e9 / 0.035 s = 85.76 GFLOP/s
    (star,) = drawn.stars
    assert star.label == "whole model" and (star.x, star.y) == pytest.approx((20.01, 3.0015e9 / 0.035))
    ceilings = dict(drawn.ceilings)
    assert ceilings.get("compute") == peak.flop_per_s and ceilings.get("DRAM") == peak.bytes_per_s
    assert drawn.note == "" and not any(drawn.hot)  # 100 GFLOP/s is under every compute ceiling here
    if peak.flop_per_s is None:
        assert drawn.title.splitlines()[1].startswith("peak unknown: no compute ceiling")
    elif peak.bytes_per_s is None:
        assert drawn.title.splitlines()[1].startswith("memory bandwidth unknown")
    else:
        assert "device ceilings: compute, DRAM" in drawn.legend and "cache ceilings not calibrated" in drawn.legend


def test_roofline_png_with_no_points(tmp_path):
    drawn = roofline_png(tmp_path / "roofline.png", pd.DataFrame(columns=["name", "total_flops", "bytes",
                                                                           "self_time_s"]),
                         CPU_PEAK, {"total_flops": 0, "bytes": 0, "time_s": 0}, "empty")
    assert drawn.path.read_bytes().startswith(PNG_MAGIC)
    assert drawn.points == () and drawn.stars == ()  # nothing measured: no dot, no star
    assert drawn.ceilings == (("compute", 200e9), ("DRAM", 25e9))  # the ceilings alone
    assert "no op with counted work and time to plot" in drawn.title


def _modules(with_depth=True):
    rows = [  # inclusive times: a = 4 s contains a.x (3 s) and a.y (0.5 s) and 0.5 s of its own ops
        ("", "Net", 10.0), ("a", "Block", 4.0), ("a.x", "Conv2d", 3.0), ("a.y", "ReLU", 0.5),
        ("b", "Linear", 5.0), ("c", "Block", 1.0), ("c.z", "Conv2d", 1.0),
    ]
    df = pd.DataFrame(rows, columns=["path", "type", "time_s"])
    if with_depth:
        df["depth"] = [0, 1, 2, 2, 1, 1, 2]
    df["utilization"] = [0.3, 0.4, 0.5, math.nan, 0.2, 0.6, 0.6]
    return df


def test_module_frontier_depth_1_partitions_the_total():
    rows, depth, total = module_frontier(_modules(), top=3)
    # depth 1 already has 3 modules: a, b, c; 4 + 5 + 1 = 10 = the root's time
    assert depth == 1 and total == 10.0
    assert list(rows["path"]) == ["b", "a", "c"] and rows["time_s"].sum() == 10.0


def test_module_frontier_goes_deeper_without_double_counting():
    rows, depth, total = module_frontier(_modules(with_depth=False), top=4)
    # depth 2: a.x, a.y, c.z plus the depth-1 leaf b; a and c are replaced by their children
    assert depth == 2
    assert list(rows["path"]) == ["b", "a.x", "c.z", "a.y"]
    # 5 + 3 + 1 + 0.5 = 9.5; the other 0.5 s is a's own ops, drawn as an "outside" bar
    assert rows["time_s"].sum() == 9.5 and total == 10.0


def test_module_frontier_stops_at_the_deepest_level():
    rows, depth, _ = module_frontier(_modules(), top=50)
    assert depth == 2 and len(rows) == 4


def test_time_by_module_png_is_written(tmp_path):
    drawn = time_by_module_png(tmp_path / "time_by_module.png", _modules(), "tiny · batch 2", top=3)
    assert drawn.path.read_bytes().startswith(PNG_MAGIC)
    (panel,) = drawn.panels  # one phase: one panel, labels without a phase
    assert panel.phase is None and panel.depth == 1 and panel.total_s == 10.0
    assert [(b.label, b.value_s) for b in panel.bars] == [("b  (Linear)", 5.0), ("a  (Block)", 4.0),
                                                          ("c  (Block)", 1.0)]
    assert panel.bars[0].text == "5 s · 50.0% of time · 20.0% of peak FLOP/s"
    assert drawn.title == "tiny · batch 2\ntime by module per forward"
    assert drawn.xlabel.startswith("profiled op time per forward")
    empty = time_by_module_png(tmp_path / "empty.png", pd.DataFrame(columns=["path", "type", "depth", "time_s"]),
                               "empty")
    assert empty.path.read_bytes().startswith(PNG_MAGIC) and empty.labels == []


def _phased_modules() -> pd.DataFrame:
    """The same model in two phases: decode takes 3x prefill's time in every module."""
    pre = _modules().assign(phase="prefill")
    dec = _modules().assign(phase="decode", time_s=lambda d: d["time_s"] * 3)
    return pd.concat([pre, dec], ignore_index=True)


def test_time_by_module_one_panel_per_phase_labelled(tmp_path):
    modules = _phased_modules()
    drawn = time_by_module_png(tmp_path / "m.png", modules, "tiny", top=6, phases=["prefill", "decode"],
                               word="generation")
    assert drawn.path.read_bytes().startswith(PNG_MAGIC)
    assert drawn.title == "tiny\ntime by module per generation, one panel per phase"
    assert drawn.xlabel.startswith("profiled op time per generation")
    assert [p.phase for p in drawn.panels] == ["prefill", "decode"]
    for panel in drawn.panels:
        assert panel.title.startswith(f"phase {panel.phase}: ") and "per generation" in panel.title
        assert all(b.label.endswith(f" · {panel.phase}") and b.phase == panel.phase for b in panel.bars)
        # 5 bars per panel (ceil(6 / 2) -> at least 5): depth 2, whose frontier is b, a.x, c.z, a.y; the values
        # are the modules table's times of that phase, and a's own ops are the "outside" bar
        mine = modules[modules["phase"] == panel.phase].set_index("path")["time_s"]
        assert panel.depth == 2
        assert [(b.label.split("  ")[0], b.value_s) for b in panel.bars[:4]] == [
            (p, mine[p]) for p in ("b", "a.x", "c.z", "a.y")]
        assert panel.bars[4].grey and panel.bars[4].value_s == pytest.approx(mine["a"] - mine["a.x"] - mine["a.y"])
        assert panel.total_s == mine[""] and sum(b.value_s for b in panel.bars) == pytest.approx(panel.total_s)
    # a module in both phases is drawn twice, each time saying which phase
    assert {"b  (Linear) · prefill", "b  (Linear) · decode"} <= set(drawn.labels)


def test_module_panels_default_to_the_phase_column_and_skip_idle_modules():
    modules = _phased_modules()
    modules.loc[(modules["phase"] == "decode") & (modules["path"] != ""), "time_s"] = 0.0  # e.g. an optimizer phase
    prefill, decode = module_panels(modules, top=6)
    assert (prefill.phase, decode.phase) == ("prefill", "decode")
    # decode's time is all outside its (idle) modules: one grey bar, and the title says why
    assert [(b.label, b.value_s, b.grey) for b in decode.bars] == [
        ("outside these modules (parents' own ops) · decode", 30.0, True)]
    assert decode.title == ("phase decode: 30 s profiled op time per forward, none of it inside the modules at "
                            "depth 2; 4 modules with no time in it not drawn")


def test_pictures_import_no_matplotlib_and_use_no_pyplot(tmp_path):
    code = f"""
import sys
import harness.report.pictures as P
assert 'matplotlib' not in sys.modules, 'matplotlib imported at module import'
import pandas as pd
from harness.hardware import Peak
P.time_by_module_png({str(tmp_path / 'm.png')!r}, pd.DataFrame({{'path': ['', 'a'], 'time_s': [1.0, 1.0]}}), 't')
assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


@dataclasses.dataclass(frozen=True)
class CachePeak(Peak):
    """A Peak with calibrated cache levels (the attribute the roofline reads with getattr)."""

    cache_bytes_per_s: dict | None = None


CACHE_PEAK = CachePeak("Test CPU", "float32", 200e9, 25e9, "calibrated", "measured", bytes_source="calibrated",
                       cache_bytes_per_s={"L2": 400e9, "L1": 1.6e12, "L3": 150e9, "DRAM": 25e9})


def test_bandwidth_ceilings_one_per_level():
    assert _bandwidths(CACHE_PEAK) == ([("L1", 1.6e12), ("L2", 400e9), ("L3", 150e9), ("DRAM", 25e9)], True)
    assert _bandwidths(CPU_PEAK) == ([("DRAM", 25e9)], False)  # no cache levels: DRAM alone, "not calibrated"
    assert _bandwidths(Peak("X", "float32", 1e9, None, "derived", "")) == ([], False)


def test_model_point_uses_the_summary_figures():
    s = {"flops": 300, "other_flops": 100, "bytes": 200, "latency_s": {"p50": 2.0}, "utilization": 0.75}
    # the star sits at all FLOPs (400 / 200 B = 2 FLOP/B; 400 / 2 s) but names the summary's utilization
    assert model_point(s) == {"total_flops": 400, "flops": 300, "bytes": 200, "time_s": 2.0, "utilization": 0.75}


def test_points_above_a_ceiling_are_marked():
    pts, _ = roofline_points(_ops())  # conv 100 G, conv 100 G, relu 1 G
    assert list(_hot_ops(pts, None, 200e9)) == [False, False, False]
    assert list(_hot_ops(pts, None, 50e9)) == [True, True, False]  # above the compute ceiling itself
    # an op named in peak_exceeded whose dots are each below its entry's ceiling: all its dots
    ex = [{"what": "op", "name": "aten::relu_", "achieved_flop_per_s": 3e9, "ceiling_flop_per_s": 2e9}]
    assert list(_hot_ops(pts, ex, 200e9)) == [False, False, True]


def test_module_rate_only_for_multiply_add_work():
    assert _module_rate(pd.Series({"flops": 0.0, "other_flops": 1.8e6, "utilization": 0.0}), False) == ""
    assert _module_rate(pd.Series({"flops": 2e9, "utilization": 0.026}), False) == " · 2.6% of peak FLOP/s"
    assert "the ceiling is wrong" in _module_rate(pd.Series({"flops": 2e9, "utilization": 1.3}), True)


def test_roofline_with_caches_phases_and_an_exceeded_peak(tmp_path):
    phases = {"prefill": {"flops": 2e9, "other_flops": 0, "bytes": 4e7, "time_s": {"p50": 0.02}},
              "decode": {"flops": 1e8, "other_flops": 0, "bytes": 1e8, "time_s": {"p50": 0.05}}}
    ex = [{"what": "run", "name": "tiny", "achieved_flop_per_s": 3e11, "ceiling_flop_per_s": 2e11, "source": "table"}]
    drawn = roofline_png(tmp_path / "roofline.png", _ops(), CACHE_PEAK,
                         {"total_flops": 3e9, "flops": 3e9, "bytes": 1e8, "time_s": 0.01}, "t", phases=phases,
                         exceeded=ex)
    assert drawn.path.read_bytes().startswith(PNG_MAGIC)
    # one ceiling per calibrated level, fastest first, under the compute peak
    assert drawn.ceilings == (("compute", 200e9), ("L1", 1.6e12), ("L2", 400e9), ("L3", 150e9), ("DRAM", 25e9))
    assert "cache ceilings: L1, L2, L3" in drawn.legend
    # a star for the whole model and one per phase: prefill 2 GFLOP / 40 MB = 50 FLOP/B at 2e9 / 0.02 s
    assert [s.label for s in drawn.stars] == ["whole model", "prefill", "decode"]
    assert (drawn.stars[1].x, drawn.stars[1].y) == pytest.approx((50.0, 1e11))
    # the whole run exceeded its ceiling: the red note names the source
    assert drawn.note == "red ring: above the table ceiling: the ceiling is wrong, not the result"


def test_a_gpu_table_bandwidth_is_not_a_calibrated_cache_level():
    from harness.hardware import peak_for
    from harness.report.pictures import _bandwidths

    # A100-SXM4-40GB: 1,555 GB/s HBM2 from its datasheet; no cache level measured
    levels, calibrated = _bandwidths(peak_for("cuda", "bfloat16", device_name="NVIDIA A100-SXM4-40GB"))
    assert levels == [("DRAM", 1.555e12)] and calibrated is False
