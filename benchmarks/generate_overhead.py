"""What the harness's generate timing costs: its decode-step p50 against a plain loop.

Both sides run the same model (a generate scenario, tiny_llama by default) in the same
process: the harness through its measure stage (``time_workload``: a phase clock around
the prefill and each decode step), the plain side as a user writes it by hand
(``perf_counter`` around each ``decode_step``). Blocks alternate (ABAB...) so the
machine's drift cancels; the p50 of all decode-step samples of each side is compared
(goal: the harness within 5 % of the plain loop).

    .venv/bin/python benchmarks/generate_overhead.py [--scenario tiny_llama] [--blocks 10] [--iters 5]
                                                     [--prompt-len 32] [--new-tokens 16] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import torch  # noqa: E402

from harness.pipeline import scenario as scenario_mod, workloads  # noqa: E402
from harness.pipeline.measure import time_workload  # noqa: E402
from harness.pipeline.prepare import prepare_scenario  # noqa: E402


def plain_decode_steps(wl, prep, iters: int) -> list[float]:
    """``iters`` generations by hand: prefill, then perf_counter around each decode step."""
    out = []
    model, drv = prep.model, wl.driver
    for _ in range(iters):
        state = drv.prefill(model, wl.prompt)
        for _ in range(wl.new_tokens):
            t = time.perf_counter()
            state = drv.decode(model, state)
            out.append(time.perf_counter() - t)
    return out


def harness_decode_steps(wl, prep, iters: int) -> list[float]:
    timing = time_workload(wl, prep, warmup=0, iters=iters)
    return timing.phase_samples("decode")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", default="tiny_llama")
    ap.add_argument("--blocks", type=int, default=10, help="block pairs")
    ap.add_argument("--iters", type=int, default=5, help="generations per block")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    prep = prepare_scenario(scenario_mod.load(args.scenario), threads=args.threads)
    wl = workloads.get("generate", prompt_len=args.prompt_len, new_tokens=args.new_tokens)
    wl.setup(prep)
    samples: dict[str, list[float]] = {"harness": [], "plain": []}
    with wl.grad_mode():
        plain_decode_steps(wl, prep, 3)  # warm-up
        for b in range(args.blocks):
            order = ("harness", "plain") if b % 2 == 0 else ("plain", "harness")
            for side in order:
                fn = harness_decode_steps if side == "harness" else plain_decode_steps
                samples[side] += fn(wl, prep, args.iters)
    h, p = statistics.median(samples["harness"]), statistics.median(samples["plain"])
    print(f"{args.scenario}: prompt {wl.prompt_len}, {wl.new_tokens} decode steps, "
          f"{torch.get_num_threads()} thread(s), {args.blocks} block pairs x {args.iters} generations")
    print(f"decode step p50  harness {h * 1e3:.3f} ms   plain loop {p * 1e3:.3f} ms   "
          f"ratio {h / p:.3f} ({len(samples['harness'])} / {len(samples['plain'])} samples)")
    print("within 5 %" if abs(h / p - 1) <= 0.05 else "NOT within 5 %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
