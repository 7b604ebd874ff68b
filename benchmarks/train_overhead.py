"""Harness overhead on a training step.

1. Step time: the train workload's timed step (measure stage: synchronized phase clocks) against a
   plain ``zero_grad; loss = model(x).mean(); loss.backward(); opt.step()`` loop, interleaved
   in the same process on the same model and optimizer; prints both p50s and the ratio.
2. Counting cost: ``harness.count(model, x, train=True, optimizer="none")`` (forward + backward under
   the counter) against ``FlopCounterMode`` around the same forward + backward, resnet50.

    PYTHONPATH=. python benchmarks/train_overhead.py [--rounds 10] [--batch 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import harness
from harness.pipeline.measure import time_workload
from harness.pipeline.prepare import prepare_model
from harness.pipeline.workloads import get


def plain_step(model, x, opt) -> float:
    t0 = time.perf_counter_ns()
    opt.zero_grad(set_to_none=True)
    loss = model(x).float().mean()
    loss.backward()
    opt.step()
    return (time.perf_counter_ns() - t0) * 1e-9


def step_overhead(rounds: int, batch: int) -> None:
    model, x = torchvision.models.resnet18(), torch.randn(batch, 3, 224, 224)
    prep = prepare_model(model, x)
    wl = get("train")
    wl.setup(prep)
    harness_s, plain_s = [], []
    for _ in range(rounds):
        harness_s += time_workload(wl, prep, warmup=0, iters=1).samples_s
        plain_s.append(plain_step(model, x, wl.optimizer))
    h, p = statistics.median(harness_s), statistics.median(plain_s)
    print(f"resnet18 b{batch} step p50: harness {h * 1e3:.1f} ms, plain loop {p * 1e3:.1f} ms, ratio {h / p:.3f}")


def count_cost(batch: int) -> None:
    model, x = torchvision.models.resnet50(), torch.randn(batch, 3, 224, 224)
    ours, theirs = [], []
    for _ in range(3):  # interleaved; the median of three
        t0 = time.perf_counter()
        c = harness.count(model, x, train=True, optimizer="none")
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with FlopCounterMode(display=False) as fcm:
            model(x).float().mean().backward()
        theirs.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    ours, theirs = statistics.median(ours), statistics.median(theirs)
    print(f"resnet50 b{batch} fwd+bwd count: harness {ours:.2f} s ({c.flops:,} FLOPs), "
          f"FlopCounterMode {theirs:.2f} s ({fcm.get_total_flops():,} FLOPs), ratio {ours / theirs:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()
    step_overhead(args.rounds, args.batch)
    count_cost(args.batch)


if __name__ == "__main__":
    main()
