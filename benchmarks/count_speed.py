"""How long counting takes, as a multiple of one eager forward pass, measured in one run.

For resnet50 and vgg16 (batch 1, fp32, 224x224, eval) this times, interleaved
round by round on the same machine:

* ``forward``      one eager forward pass under ``torch.inference_mode()`` (the unit);
* ``count``        ``harness.count.count(model, x)`` (runs the forward, counts it);
* ``count meta``   ``count(model, x, device="meta")`` (copies the structure to meta, no math);
* ``FlopCounterMode``  ``torch.utils.flop_counter.FlopCounterMode`` around a forward,
  under ``inference_mode`` (as ``count``) and under ``no_grad`` (its usual use).

Each figure is the median over the rounds; the ratio is median / median(forward).
Usage: ``python benchmarks/count_speed.py [--rounds N] [--models resnet50,vgg16] [--threads N]``.
The machine's load average is printed before and after: on a shared machine,
oneDNN's threads can be slowed many times over by other processes, which makes
every ratio meaningless; ``--threads 1`` is more robust there.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from harness.count import count  # noqa: E402


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench(name: str, rounds: int) -> dict:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, 224, 224)

    def forward():
        with torch.inference_mode():
            model(x)

    def ours():
        count(model, x)

    def ours_meta():
        count(model, x, device="meta")

    def fcm_inference():
        with torch.inference_mode(), FlopCounterMode(display=False):
            model(x)

    def fcm_no_grad():
        with torch.no_grad(), FlopCounterMode(display=False):
            model(x)

    methods = {"forward": forward, "count": ours, "count meta": ours_meta,
               "FlopCounterMode (inference_mode)": fcm_inference, "FlopCounterMode (no_grad)": fcm_no_grad}
    for fn in methods.values():  # warm-up: allocator, oneDNN primitives, formula caches
        fn()
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(rounds):
        for k, fn in methods.items():
            times[k].append(_timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"model": name, "median_s": med, "ratio": {k: med[k] / med["forward"] for k in med}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--models", default="resnet50,vgg16")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds, "
          f"load average {_load()}")
    print(f"{'model':<10} {'method':<34} {'median':>10} {'x forward':>10}")
    for name in args.models.split(","):
        r = bench(name.strip(), args.rounds)
        for k, v in r["median_s"].items():
            print(f"{r['model']:<10} {k:<34} {v * 1e3:>8.1f}ms {r['ratio'][k]:>9.3f}x")
    print(f"load average after: {_load()}")
    return 0


def _load() -> str:
    try:
        import os

        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    raise SystemExit(main())
