"""The memory forecast on meta against one real CPU iteration's allocations (torch.profiler's [memory] events).

For each configuration: the forecast peak (:func:`harness.memory.forecast.forecast_spec`), and a
real CPU iteration of the same spec (``pipeline.run.build``, the workload's ``setup``), profiled with
``profile_memory=True``: the bytes alive before it (parameters, buffers, inputs, targets, the
optimizer's state; the last step's gradients left out, because ``zero_grad`` frees them in a way the
profiler does not record: their blocks were allocated before it started) plus the highest running
sum of the profiler's allocation and free events. A quick check of the forecast engine, not the
measured timeline (which the run measures itself).

    python benchmarks/memory_forecast_vs_profiler.py
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = [("torchvision:resnet18", "train", 4), ("torchvision:resnet18", "train", 1), ("tiny_gpt", "train", 2),
           ("tiny_gpt_train", "train", 2), ("tiny_llama", "generate", 2), ("transformer_encoder", "train", 2),
           ("torchvision:mobilenet_v2", "train", 2), ("torchvision:vit_b_16", "forward", 1)]


def measured_peak(spec) -> int:
    import torch

    from harness.core.tensors import walk_tensors
    from harness.pipeline.run import build
    from harness.pipeline.workloads import no_scope

    _, wl, prep = build(spec)
    wl.setup(prep)
    held = [prep.model, prep.call.args, prep.call.kwargs, getattr(wl, "targets", None), getattr(wl, "prompt", None),
            list(getattr(getattr(wl, "optimizer", None), "state", {}).values())]
    before = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in walk_tensors(held)}
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        with wl.grad_mode():
            wl.iteration(prep, no_scope)
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    wl.teardown(prep)
    return sum(before.values()) + peak


def main() -> None:
    from harness.memory.forecast import forecast_spec
    from harness.pipeline.spec import RunSpec

    errors = []
    print(f"{'configuration':<40} {'forecast':>14} {'measured':>14} {'error':>8}")
    for target, workload, batch in CONFIGS:
        spec = RunSpec(target=target, workload=workload, batch_size=batch, device="cpu", logdir=None)
        f, m = forecast_spec(spec).peak_bytes, measured_peak(spec)
        errors.append((f - m) / m)
        print(f"{target + ' ' + workload + ' b' + str(batch):<40} {f:>14,} {m:>14,} {errors[-1]:>+8.1%}", flush=True)
    print(f"median |error| {statistics.median(abs(e) for e in errors):.1%}, worst {max(abs(e) for e in errors):.1%}")


if __name__ == "__main__":
    main()
