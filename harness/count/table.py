"""Readable output of a Counts: a summary and a table by module or by op, in SI units."""
from __future__ import annotations

from ..core.units import percent, si


def _summary(c) -> list[str]:
    cov = c.coverage
    lines = [
        f"params       {si(c.params):>10}   ({c.params:,}; trainable {c.trainable_params:,}; buffers {c.buffers:,})",
        f"MACs         {si(c.macs, 'MAC'):>10}   ({c.macs:,})",
        f"FLOPs        {si(c.flops, 'FLOP'):>10}   (2 x MACs)",
        f"other FLOPs  {si(c.other_flops, 'FLOP'):>10}   ({c.other_flops:,}: bias, norm, softmax, activation, elementwise)",
        f"bytes        {si(c.bytes, 'B'):>10}   ({c.bytes:,}: each op's inputs, weights and outputs once)",
        f"coverage     {percent(cov.get('share_of_calls', 1.0)):>10}   of {cov.get('calls', 0):,} op calls counted"
        f" on {c.device}{' (training mode)' if c.training else ''}",
    ]
    if len(c.by_phase) > 1:
        lines.append("phases       " + "; ".join(
            f"{r.phase} {si(r.macs, 'MAC')}, {r.calls:,} calls" for r in c.by_phase.itertuples(index=False)))
    if cov.get("uncounted_ops"):
        lines.append("uncounted    " + ", ".join(
            f"{row.op} x{row.calls}" for row in c.uncounted.itertuples(index=False)))
    return lines


def _fmt_table(headers: list[str], rows: list[list[str]], align: str) -> list[str]:
    from ..core.text import table

    return table(headers, rows, align)


def render(c, by: str = "module", depth: int | None = None) -> str:
    """Summary + a table by module (indented tree, up to ``depth``) or by op (largest first), summed over phases."""
    lines = _summary(c)
    lines.append("")
    total_flops = c.flops + c.other_flops
    if by == "op":
        df = c.by_op.groupby(["op", "input_shapes", "dtype"], sort=False, as_index=False)[
            ["calls", "macs", "flops", "other_flops", "bytes"]].sum()
        df = df.assign(_w=df["flops"] + df["other_flops"]).sort_values(["_w", "bytes"], ascending=False, kind="stable")
        rows = [[r.op, r.input_shapes if len(r.input_shapes) <= 60 else r.input_shapes[:57] + "...", r.dtype,
                 str(r.calls), si(r.macs), si(r.other_flops), si(r.bytes, "B"),
                 percent((r.flops + r.other_flops) / total_flops) if total_flops else "n/a"]
                for r in df.itertuples(index=False)]
        lines += _fmt_table(["op", "input shapes", "dtype", "calls", "MACs", "other FLOPs", "bytes", "% FLOPs"],
                            rows, "lllrrrrr")
    else:
        df = c.module_totals()
        if depth is not None:
            df = df[df["depth"] <= depth]
        rows = []
        for r in df.itertuples(index=False):
            name = r.path.rsplit(".", 1)[-1] if r.path else "(model)"
            rows.append([("  " * r.depth) + f"{name} ({r.type})", r.output_shape, si(r.params), si(r.macs),
                         si(r.other_flops), si(r.bytes, "B"), str(r.calls)])
        lines += _fmt_table(["module", "output", "params", "MACs", "other FLOPs", "bytes", "calls"], rows, "llrrrrr")
    if c.notes:
        lines.append("")
        lines += [f"note: {n}" for n in c.notes]
    return "\n".join(lines)
