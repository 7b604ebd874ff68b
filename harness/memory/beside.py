"""A run's own forecast, beside what it measured: the meta-device forecast of the very iteration the
run measured (same model structure, inputs, dtype, batch, workload and options), and its error.

The run's model is copied to the meta device (:func:`harness.count.meta_model.meta_copy`: no weight
is copied; a compiled model's copy runs eagerly) and a fresh instance of the run's workload, with the
same options less those that compile part of it (``Workload.eager_options``), is driven over it by :func:`harness.memory.forecast.forecast_prepared`. summary.json
``memory.forecast`` holds ``peak_bytes``, ``at_phase``, ``by_category_at_peak`` and
``error`` = forecast / measured peak − 1, or ``error_text`` when the forecast failed (a model that
reads tensor values cannot run on meta); the run goes on either way.
"""
from __future__ import annotations

from typing import Any


def _meta_prepared(prep: Any) -> Any:
    """The run's :class:`~harness.pipeline.prepare.Prepared` with its model and inputs on the meta device."""
    import dataclasses

    import torch

    from ..core.calls import split_inputs
    from ..count.meta_model import meta_copy, to_meta

    model = meta_copy(prep.model)  # a compiled model's copy is run eagerly (forecast_beside)
    inputs = to_meta(prep.inputs)
    return dataclasses.replace(prep, model=model, call=split_inputs(inputs), device=torch.device("meta"),
                               inputs=inputs, saved=None, compile=None)


def forecast_beside(workload: Any, prep: Any, measured_peak: int | None) -> dict[str, Any]:
    """``memory.forecast`` for a run (module doc)."""
    from ..core.text import short_exc
    from ..pipeline import workloads
    from ..pipeline.compiled import eager
    from .forecast import forecast_prepared

    try:
        wl = workloads.get(workload.name, **workload.eager_options())
        meta = _meta_prepared(prep)
        with eager(meta.model):  # the forecast follows the eager model's allocations
            f = forecast_prepared(meta, wl, target="cuda" if prep.device.type == "cuda" else "cpu")
    except Exception as exc:  # noqa: BLE001 - the forecast is a side note of a run, never its failure
        return {"error_text": short_exc(exc, 200)}
    return {"peak_bytes": int(f.peak_bytes), "at_phase": f.at_phase,
            "by_category_at_peak": {k: int(v) for k, v in f.by_category_at_peak.items()},
            "error": f.peak_bytes / measured_peak - 1 if measured_peak else None}
