"""Memory forecast without running: one iteration of the run's own workload on the meta device.

:func:`forecast_spec` (a :class:`~harness.pipeline.spec.RunSpec`, the spec ``run`` takes) builds
the scenario or model by name on the meta device (no weights are materialized, any size), in the
spec's dtype and batch size, and drives the **same workload plug-in** a run drives (forward,
generate, train, or a registered one): its ``setup`` (a training step's warm-up step, so the
optimizer state exists as in a steady-state step), then one iteration under a
:class:`~harness.memory.tracker.StorageTracker` with the workload's phase scopes. The result is a
:class:`~harness.memory.result.MemoryForecast`: the peak, its phase, the split by category at the
peak, the top modules then, and the timeline.

What is forecast is what the allocator is asked for: every storage's bytes (``numel x element
size`` of its storage), rounded to 512 bytes for a CUDA target (the caching allocator's block).
Not forecast: the allocator's cache and fragmentation (reserved minus allocated), the CUDA
context and library workspaces (cuBLAS, cuDNN), memory a kernel allocates outside PyTorch's
allocator, and the Python process itself. On meta, attention runs the fused kernel's allocations
(:mod:`harness.memory.attention`); a CUDA target's optimizer takes torch's CUDA default
(``foreach``: its temporaries span all parameters at once).

``torch.distributed._tools.mem_tracker.MemTracker`` was considered and not used: it has no
category for tensors saved for backward apart from other forward allocations (its ``ACT`` is
everything the forward allocates), none for a KV cache, inputs or outputs, keeps no timeline (only
per-module peak snapshots), and walks every module's snapshot on every op. Its mechanism, a weak
reference on each storage's Python object, is the one :mod:`harness.memory.tracker` uses.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import categories as C
from .result import MemoryForecast, from_tracker

if TYPE_CHECKING:
    from ..pipeline.prepare import Prepared
    from ..pipeline.spec import RunSpec
    from ..pipeline.workloads import Workload

__all__ = ["MemoryForecast", "forecast_spec", "forecast_prepared", "meta_prepared", "target_device"]

KV_MARK = "kv_cache"
CUDA_BLOCK_BYTES = 512  # the CUDA caching allocator rounds every allocation up to this


def target_device(device: str | None) -> str:
    """The device type a forecast stands for: ``cuda`` (also ``cuda:N``, and ``auto`` with a GPU) or ``cpu``."""
    text = str(device or "cpu").strip().lower()
    if text == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if text.startswith("cuda") else "cpu"


def forecast_spec(spec: RunSpec, scenario: Any = None) -> MemoryForecast:
    """The memory of one iteration of ``spec`` (its scenario, workload and options, batch size, dtype,
    channels_last), forecast on the meta device for ``spec.device`` (default: the scenario's).
    ``scenario``: an already loaded :class:`~harness.core.scenario.Scenario` of ``spec.target``."""
    from ..pipeline import scenario as scenarios
    from ..pipeline import workloads

    sc = scenario if scenario is not None else scenarios.load(spec.target, spec.model_options())
    wl = workloads.get(spec.workload or sc.workload, **spec.workload_options)
    prep = meta_prepared(sc, spec)
    return forecast_prepared(prep, wl, target=target_device(spec.device or sc.device))


def meta_prepared(sc: Any, spec: RunSpec, model: Any = None) -> Prepared:
    """The scenario's model (or ``model``, already on meta) and inputs on the meta device, in the spec's
    dtype (default: the scenario's) and batch size: what ``prepare_scenario`` makes, without memory."""
    import torch

    from ..core.calls import split_inputs
    from ..core.dtypes import RUN_DTYPES, canonical, torch_dtype
    from ..errors import HarnessError
    from ..pipeline import scenario as scenarios
    from ..pipeline.prepare import Prepared, check_positive, to_channels_last

    batch = check_positive("--batch-size", spec.batch_size or sc.batch_size)
    name = canonical(spec.dtype or sc.dtype)
    if name not in RUN_DTYPES:
        raise HarnessError(f"unknown dtype {spec.dtype or sc.dtype!r}; use one of {', '.join(RUN_DTYPES)}")
    dt = torch_dtype(name)
    if model is None:
        with torch.device("meta"):  # nothing is materialized
            model = scenarios.build(sc)
        model = model.to(dt)
    inputs = _meta_inputs(sc, batch, dt)
    prep = Prepared(sc.name, model, split_inputs(inputs), torch.device("meta"), dt, batch,
                    torch.get_num_threads(), inputs, module=sc.module)
    if spec.channels_last:
        prep.model, prep.call = to_channels_last(prep.model, prep.call)
    return prep


def _meta_inputs(sc: Any, batch: int, dt: Any) -> Any:
    """The scenario's inputs as meta tensors: made under ``FakeTensorMode`` (shapes without memory: a plan
    probes batches of thousands), else on the CPU and copied."""
    import torch

    from ..core.calls import map_tensors
    from ..core.tensors import walk_tensors
    from ..count.meta_model import to_meta
    from ..pipeline import scenario as scenarios
    from ..pipeline.prepare import cast_inputs

    meta = torch.device("meta")
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode():
            fake = sc.make_inputs(batch, torch.device("cpu"))
        out = map_tensors(fake, lambda t: torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=meta))
        if all(t.device.type == "meta" for t in walk_tensors(out, modules=False)):
            return cast_inputs(out, meta, dt)
    except Exception:
        pass
    raw = scenarios.inputs(sc, batch, torch.device("cpu"))
    return to_meta(cast_inputs(raw, meta, dt))


def forecast_prepared(prep: Prepared, wl: Workload, target: str = "cpu") -> MemoryForecast:
    """Forecast one iteration of ``wl`` on a meta :class:`Prepared` (:func:`meta_prepared`): the
    workload's ``setup``, then one tracked iteration (module docstring), then its ``teardown``."""
    from ..core.text import short_exc
    from ..errors import HarnessError

    try:
        wl.setup(prep)
        if target == "cuda":
            _cuda_optimizer_defaults(getattr(wl, "optimizer", None))
        return _tracked(prep, wl, target)
    except HarnessError:
        raise
    except Exception as exc:
        raise HarnessError(f"scenario '{prep.name}' raised during the forecast {wl.word} on the meta device "
                           f"({short_exc(exc)}); a model that reads tensor values cannot be forecast") from exc
    finally:
        wl.teardown(prep)


def _tracked(prep: Prepared, wl: Workload, target: str) -> MemoryForecast:
    from ..core.dtypes import name_of
    from .attention import fused_attention
    from .inputs import iteration_inputs
    from .tracker import StorageTracker

    optimizer = getattr(wl, "optimizer", None)
    tracker = StorageTracker(prep.model, granularity=CUDA_BLOCK_BYTES if target == "cuda" else 1,
                             grad_phase="forward" if wl.computes_gradients else None)
    tracker.track_existing(prep.model, iteration_inputs(wl, prep), optimizer)
    hook = prep.model.register_forward_hook(lambda m, a, out: tracker.mark(out, C.OUTPUTS))
    try:
        tracker.begin(wl.phases[0])
        with fused_attention(), tracker, wl.grad_mode():
            _iteration(prep, wl, tracker)
        tracker.mark_optimizer(optimizer)  # state a first step created (no warm-up step)
    finally:
        hook.remove()
        tracker.close()
    return from_tracker(tracker, kv_mark=KV_MARK, scenario=prep.name, workload=wl.name, batch_size=prep.batch_size,
                        dtype=name_of(prep.dtype), device=target, options=_options(wl))


def _iteration(prep: Prepared, wl: Workload, tracker: Any) -> None:
    """One iteration of the workload, in the tracker's phase scopes: a generation marks its KV cache after
    every step (``Generate.generate``'s ``after``); a training step marks its loss as an output."""
    from ..pipeline.workloads.generate import Generate

    if isinstance(wl, Generate):
        wl.generate(prep, tracker.phase, after=lambda state: tracker.mark(wl.driver.cache(state), C.KV_CACHE,
                                                                          label=KV_MARK))
        return
    loss_fn = getattr(wl, "loss_fn", None)
    if callable(loss_fn):
        def marked(output: Any, targets: Any) -> Any:
            loss = loss_fn(output, targets)
            tracker.mark(loss, C.OUTPUTS)
            return loss

        wl.loss_fn = marked  # type: ignore[attr-defined]
        try:
            wl.iteration(prep, tracker.phase)
        finally:
            wl.loss_fn = loss_fn  # type: ignore[attr-defined]
        return
    wl.iteration(prep, tracker.phase)


def _cuda_optimizer_defaults(optimizer: Any) -> None:
    """``foreach`` where the optimizer left it to torch: on CUDA torch picks it (on meta it would not)."""
    if optimizer is None:
        return
    for group in optimizer.param_groups:
        if group.get("foreach", False) is None and not group.get("fused"):
            group["foreach"] = True


def _options(wl: Workload) -> dict[str, Any]:
    """The workload options the forecast ran with (resolved: a generation's prompt length and new tokens)."""
    out = dict(wl.options)
    for key, attr in (("optimizer", "optimizer_name"), ("prompt_len", "prompt_len"), ("new_tokens", "new_tokens")):
        value = getattr(wl, attr, None)
        if value is not None:
            out[key] = value
    return out
