"""Out of memory: one line with the forecast split at the batch and the largest batch that fits.

Two ways in. :func:`check_budget` (``run --memory-budget``) refuses a run up front when the
forecast peak is over the budget: nothing runs, nothing is written. :func:`reraise` turns a run
that did run out of memory (``torch.OutOfMemoryError``, ``MemoryError``, the CPU allocator's
``RuntimeError: ... can't allocate memory``, or the harness's own "ran out of memory" error) into
a :class:`~harness.errors.HarnessError` (exit 2) whose line says where, the forecast at that batch
and the largest batch whose forecast fits the device's memory (:mod:`harness.memory.plan`). The run
directory was never committed (the pipeline aborts it), and history is untouched.
"""
from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import HarnessError

if TYPE_CHECKING:
    from ..pipeline.spec import RunSpec
    from .result import MemoryForecast

_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA or CPU allocation failure, raw or as the harness's one-line error."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    if isinstance(exc, (RuntimeError, HarnessError)):
        text = str(exc).lower()
        return any(m in text for m in _MARKERS)
    return False


def reraise(spec: RunSpec, exc: BaseException) -> NoReturn:
    """Raise ``exc`` again, or for an out-of-memory one the one-line error of the module docstring."""
    if not is_out_of_memory(exc):
        raise exc
    from ..core.text import first_line, short_exc

    traceback.clear_frames(exc.__traceback__)  # the failed run's tensors go before the forecast
    cause = first_line(exc.__cause__ if isinstance(exc, HarnessError) and exc.__cause__ else exc)[:200]
    name = spec.target
    try:
        from ..pipeline import scenario as scenarios

        sc = scenarios.load(spec.target, spec.model_options())
        name = sc.name
        forecast, advice = _forecast_and_advice(spec, None, sc)
    except Exception as err:  # the model cannot be forecast: the plain message, and why
        why = err.message if isinstance(err, HarnessError) else short_exc(err)
        raise HarnessError(f"scenario '{name}' ran out of memory ({cause}); no forecast: {why}") from exc
    raise HarnessError(f"scenario '{name}' ran out of memory at batch {forecast.batch_size} ({cause}); "
                       f"{_split(forecast)}; {advice}") from exc


def check_budget(spec: RunSpec, budget_bytes: int) -> MemoryForecast:
    """The forecast of ``spec``; a HarnessError (exit 2) when its peak is over ``budget_bytes``."""
    from ..pipeline import scenario as scenarios

    sc = scenarios.load(spec.target, spec.model_options())
    forecast, advice = _forecast_and_advice(spec, budget_bytes, sc)
    if forecast.peak_bytes > budget_bytes:
        from ..core.units import si

        raise HarnessError(f"scenario '{sc.name}' would run out of --memory-budget {si(budget_bytes, 'B')} at batch "
                           f"{forecast.batch_size}, nothing was run; {_split(forecast)}; {advice}")
    return forecast


def _forecast_and_advice(spec: RunSpec, budget_bytes: int | None, sc: Any) -> tuple[MemoryForecast, str]:
    """The forecast at the spec's batch, and the largest batch that fits (the budget, else the device's memory)."""
    from ..core.units import si
    from .budget import device_budget
    from .forecast import forecast_spec, target_device
    from .plan import plan_spec

    forecast = forecast_spec(spec, scenario=sc)
    if budget_bytes is not None and forecast.peak_bytes <= budget_bytes:
        return forecast, "it fits"
    if budget_bytes is None:
        budget_bytes, source = device_budget(target_device(spec.device or sc.device))
    else:
        source = "--memory-budget"
    plan = plan_spec(spec, budget_bytes, source, max_batch=max(1, forecast.batch_size))
    within = f"{si(budget_bytes, 'B')} ({source})"
    if plan.batch_size is None:
        return forecast, f"not even batch 1 fits {within}: it needs {si(plan.over.peak_bytes, 'B') if plan.over else '?'}"
    if plan.batch_size >= forecast.batch_size:
        return forecast, (f"the forecast peak fits {within}: the rest went to what it does not count (allocator "
                          f"cache and fragmentation, CUDA context and workspaces, other processes)")
    return forecast, (f"the largest batch that fits {within} is {plan.batch_size} (peak "
                      f"{si(plan.fits.peak_bytes, 'B') if plan.fits else '?'}); try --batch-size {plan.batch_size}")


def _split(f: MemoryForecast) -> str:
    from ..core.units import si

    parts = ", ".join(f"{k.replace('_', ' ')} {si(v, 'B')}" for k, v in f.by_category_at_peak.items() if v)
    return f"forecast peak {si(f.peak_bytes, 'B')} in {f.at_phase} ({parts})"
