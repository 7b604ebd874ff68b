"""How close is the memory forecast? Forecast on meta vs the run's own measurement, per configuration.

For each configuration (issue 22's list): the forecast peak (:func:`harness.memory.forecast.forecast_spec`:
the scenario built on the meta device, the workload driven there) and the measured peak of one real
CPU iteration of the same spec (:func:`harness.memory.measured.measure`: torch.profiler's memory
events, storages matched by address — what ``run`` writes as memory.csv), with the categories that
differ most. Prints a markdown table, the median and worst |error|.

    PYTHONPATH=. python benchmarks/memory_forecast.py [--only resnet18]

On a GPU, ``--device cuda`` compares against the same measurement on CUDA (the caching allocator's
blocks) and prints ``torch.cuda.max_memory_allocated`` beside it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GPT2 = {"n_layer": 2, "n_embd": 128, "n_head": 4, "vocab_size": 1000, "n_positions": 128, "bos_token_id": 0,
        "eos_token_id": 0}
CONFIGS = [  # (label, target, workload, batch, model options)
    ("resnet18 train b1", "torchvision:resnet18", "train", 1, {}),
    ("resnet18 train b4", "torchvision:resnet18", "train", 4, {}),
    ("resnet50 train b1", "resnet50", "train", 1, {}),
    ("resnet50 train b4", "resnet50", "train", 4, {}),
    ("mobilenet_v2 train b2", "mobilenet_v2", "train", 2, {}),
    ("vit_b_16 forward b1", "vit_b_16", "forward", 1, {}),
    ("transformer_encoder train b2", "transformer_encoder", "train", 2, {}),
    ("tiny_gpt train b2", "tiny_gpt", "train", 2, {}),
    ("tiny_gpt train b2, checkpointed", "tiny_gpt_train", "train", 2, {}),
    ("tiny_llama generate b2", "tiny_llama", "generate", 2, {}),
    ("timm:resnet18 train b2 (64 px)", "timm:resnet18", "train", 2, {"input_size": 64}),
    ("hf:gpt2 train b2 (2 layers, 64 tokens)", "hf:gpt2", "train", 2, {"model_kwargs": GPT2, "seq_len": 64}),
]


def measure(spec) -> tuple[dict, float | None]:
    """The measured ``memory`` summary of one real iteration of ``spec``, and CUDA's max allocated (or None)."""
    import torch

    from harness.memory.measured import measure as measure_memory
    from harness.pipeline.run import build

    _, wl, prep = build(spec)
    try:
        wl.setup(prep)
        if prep.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(prep.device)
        m = measure_memory(wl, prep).summary()
        cuda_max = torch.cuda.max_memory_allocated(prep.device) if prep.device.type == "cuda" else None
        return m, cuda_max
    finally:
        wl.teardown(prep)
        prep.restore()


def worst_categories(forecast: dict, measured: dict) -> str:
    diffs = sorted(((forecast.get(c, 0) - measured.get(c, 0), c) for c in set(forecast) | set(measured)),
                   key=lambda x: -abs(x[0]))
    from harness.core.units import si

    return ", ".join(f"{c} {'+' if d > 0 else '-'}{si(abs(d), 'B')}" for d, c in diffs[:2] if d) or "—"


def main() -> None:
    from harness.core.units import si
    from harness.memory.forecast import forecast_spec
    from harness.pipeline.spec import RunSpec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="a substring of the labels to run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args()
    rows, errors = [], []
    print("| configuration | forecast peak | measured peak | error | largest category differences | at phase "
          "(forecast / measured) | s |")
    print("|---|---|---|---|---|---|---|")
    for label, target, workload, batch, model in CONFIGS:
        if args.only and args.only not in label:
            continue
        spec = RunSpec(target=target, workload=workload, batch_size=batch, device=args.device, model=model,
                       logdir=None, threads=2)
        t0 = time.perf_counter()
        f = forecast_spec(spec)
        m, cuda_max = measure(spec)
        err = f.peak_bytes / m["peak_bytes"] - 1
        errors.append(err)
        extra = f" (max allocated {si(cuda_max, 'B')})" if cuda_max is not None else ""
        print(f"| {label} | {si(f.peak_bytes, 'B')} | {si(m['peak_bytes'], 'B')}{extra} | {err * 100:+.1f} % | "
              f"{worst_categories(f.by_category_at_peak, m['by_category_at_peak'])} | {f.at_phase} / "
              f"{m['at_phase']} | {time.perf_counter() - t0:.0f} |", flush=True)
        rows.append({"label": label, "forecast_bytes": f.peak_bytes, "measured_bytes": m["peak_bytes"], "error": err,
                     "forecast": f.by_category_at_peak, "measured": m["by_category_at_peak"]})
    if errors:
        print(f"\nmedian |error| {statistics.median(abs(e) for e in errors) * 100:.1f} %, "
              f"worst {max(abs(e) for e in errors) * 100:.1f} % over {len(errors)} configurations")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
