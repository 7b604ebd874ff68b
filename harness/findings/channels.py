"""G1 and G2: channel widths and groups set a convolution's memory access cost (MAC).

ShuffleNet V2's memory access cost of a convolution, in elements (N images of h1 x w1 in, h2 x w2 out,
c1 -> c2 channels, g groups, k x k kernel)::

    MAC = N·h1·w1·c1 + N·h2·w2·c2 + c1·c2·k²/g          (1x1, N = 1, h·w kept: h·w·(c1+c2) + c1·c2)

For the same multiply-adds (N·h2·w2·c1·c2·k²/g) the least MAC has equal widths and no groups: width
c = sqrt(c1·c2/g) in and out, the same weights, ``MAC_eq = N·(h1·w1 + h2·w2)·c + c²·k²``.

* **G1** — 1x1 convolutions (g = 1) with c1 != c2 move more than the equal-width form;
* **G2** — grouped (and depthwise) convolutions move ``N·(h1·w1·c1 + h2·w2·c2)`` activations for work a
  dense convolution of width sqrt(c1·c2/g) does with ``N·(h1·w1 + h2·w2)·sqrt(c1·c2/g)``.

The prediction uses the roofline: the op's time scales as max(FLOPs / ceiling, MAC bytes / bandwidth)
does from its MAC to MAC_eq (0 when the op is compute-bound either way). Both are changes to the model's
code (its widths and groups), so they are reported, not verified.
"""
from __future__ import annotations

import math

from ..core.units import percent, seconds, si
from ..hardware.ceilings import op_class
from .context import Context, itemsize, tensor_shapes
from .model import MIN_SAVED_SHARE, Finding, shares

COLUMNS = ("module", "input_shape", "c1", "c2", "groups", "kernel", "mac_elements", "mac_equal_elements",
           "excess_bytes", "time_s", "saved_s")


def conv_geometry(event: dict, out_shape: list[int] | None) -> dict | None:
    """N, c1, c2, g, k (kh·kw), h1·w1, h2·w2 of a 2-d convolution event; None for anything else."""
    shapes = tensor_shapes(event["input_shapes"])
    if len(shapes) < 2 or len(shapes[0]) != 4 or len(shapes[1]) != 4:
        return None
    (n, c1, h1, w1), (c2, cin_g, kh, kw) = shapes[0], shapes[1]
    if not cin_g or c1 % cin_g:
        return None
    hw2 = out_shape[-1] * out_shape[-2] if out_shape and len(out_shape) == 4 else h1 * w1
    return {"n": n, "c1": c1, "c2": c2, "g": c1 // cin_g, "k": kh * kw, "hw1": h1 * w1, "hw2": hw2}


def mac(geo: dict) -> tuple[float, float]:
    """(MAC, MAC of the equal-width dense form with the same multiply-adds), in elements."""
    n, c1, c2, g, k = geo["n"], geo["c1"], geo["c2"], geo["g"], geo["k"]
    weights = c1 * c2 * k / g
    actual = n * geo["hw1"] * c1 + n * geo["hw2"] * c2 + weights
    c = math.sqrt(c1 * c2 / g)
    return actual, n * (geo["hw1"] + geo["hw2"]) * c + c * c * k


def _rule(geo: dict) -> str | None:
    if geo["g"] > 1:
        return "G2"
    if geo["k"] == 1 and geo["c1"] != geo["c2"]:
        return "G1"
    return None


def _out_shapes(ctx: Context) -> dict[str, list[int]]:
    import ast

    out: dict[str, list[int]] = {}
    mods = ctx.modules
    if mods is None or not len(mods) or "output_shape" not in mods:
        return out
    for path, shape in zip(mods["path"], mods["output_shape"]):
        try:
            value = ast.literal_eval(shape) if isinstance(shape, str) and shape else shape
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, (list, tuple)) and all(isinstance(d, int) for d in value):
            out[str(path)] = list(value)
    return out


def row(ctx: Context, event: dict, geo: dict) -> dict:
    """One convolution's evidence: its MAC against the equal-width form and the time the excess costs."""
    size = itemsize(event.get("dtype"))
    actual, equal = mac(geo)
    t = ctx.call_time(str(event.get("phase") or ""), event["op"], event["input_shapes"])
    flops = float(event.get("flops") or 0)
    before = ctx.roofline_s(event["op"], flops, actual * size) or 0.0
    after = ctx.roofline_s(event["op"], flops, equal * size) or 0.0
    saved = t * (before - after) / before if before > 0 else 0.0
    return {"module": str(event.get("module") or ""), "input_shape": str(tensor_shapes(event["input_shapes"])[0]),
            "c1": geo["c1"], "c2": geo["c2"], "groups": geo["g"], "kernel": geo["k"], "mac_elements": actual,
            "mac_equal_elements": equal, "excess_bytes": (actual - equal) * size, "time_s": t,
            "saved_s": max(saved, 0.0), "geo": geo, "phase": str(event.get("phase") or "")}


def find(ctx: Context) -> list[Finding]:
    if not len(ctx.events):
        return []
    shapes = _out_shapes(ctx)
    found: dict[str, list[dict]] = {"G1": [], "G2": []}
    for e in ctx.events.to_dict("records"):
        if op_class(e["op"]) != "conv" or "backward" in e["op"]:
            continue
        geo = conv_geometry(e, shapes.get(str(e.get("module") or "")))
        rule = _rule(geo) if geo else None
        if rule:
            found[rule].append(row(ctx, e, geo))
    out = []
    for rule, rows in found.items():
        rows = sorted((r for r in rows if r["excess_bytes"] > 0), key=lambda r: -r["saved_s"])
        if rows:
            f = _finding(ctx, rule, rows)
            if f.saved_share >= MIN_SAVED_SHARE:
                out.append(f)
    return out


def _worked(r: dict) -> str:
    g = r["geo"]
    c = math.sqrt(g["c1"] * g["c2"] / g["g"])
    return (f"{r['module'] or 'a conv'}: N·h1·w1·c1 + N·h2·w2·c2 + c1·c2·k²/g = {g['n']}·{g['hw1']}·{g['c1']} + "
            f"{g['n']}·{g['hw2']}·{g['c2']} + {g['c1']}·{g['c2']}·{g['k']}/{g['g']} = {r['mac_elements']:,.0f} elements; "
            f"equal width c = sqrt({g['c1']}·{g['c2']}/{g['g']}) = {c:.1f}: N·(h1·w1 + h2·w2)·c + c²·k² = "
            f"{r['mac_equal_elements']:,.0f}")


def _finding(ctx: Context, rule: str, rows: list[dict]) -> Finding:
    time_s = sum(r["time_s"] for r in rows)
    saved = sum(r["saved_s"] for r in rows)
    excess = sum(r["excess_bytes"] for r in rows)
    what = ("1x1 convolutions with unequal input and output widths" if rule == "G1"
            else "grouped convolutions (depthwise included)")
    arithmetic = (f"{len(rows)} {what} move {si(excess, 'B')} more than the equal-width dense form of the same "
                  f"multiply-adds. Largest: {_worked(rows[0])}. Roofline time max(FLOPs / ceiling, MAC bytes / "
                  f"bandwidth) from MAC to MAC_eq, applied to their measured {seconds(time_s)}: saves {seconds(saved)} "
                  f"= {percent(saved / ctx.profiled_s if ctx.profiled_s else 0)} of the profiled iteration "
                  f"(0 for compute-bound ones).")
    change = ("make input and output widths of 1x1 convolutions equal (ShuffleNet V2 G1)" if rule == "G1"
              else "use fewer groups or dense convolutions of equal width (ShuffleNet V2 G2)")
    return Finding(
        id=f"channels:{rule}", family="channels", phase=rows[0]["phase"] or None,
        title=f"{rule}: {len(rows)} {what if len(rows) != 1 else what.replace('convolutions', 'convolution', 1)} "
              f"cost memory access", arithmetic=arithmetic, change=change,
        evidence=[{k: r[k] for k in COLUMNS} for r in rows], evidence_columns=COLUMNS,
        ab_side=None, ab=None, needs_code_change=True,
        **shares(time_s, saved, ctx.profiled_s, ctx.latency_s))
