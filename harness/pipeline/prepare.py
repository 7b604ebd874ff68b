"""Turn a scenario (or a user's model) into a model and a call ready to run.

Resolves ``--device``/``--dtype``/``--threads`` with one-line errors for what this
machine cannot do and moves the floating-point inputs. A user's model is never changed:
when the run needs another dtype or device it works on a copy; otherwise it runs the
model itself and :func:`restore` puts back train/eval modes and ``requires_grad`` flags.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core import dtypes
from ..core.calls import Call, map_tensors, split_inputs
from ..errors import HarnessError
from . import scenario as scenario_mod


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when available)."""
    text = str(device or "cpu").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise HarnessError(f"unknown device '{device}'; use cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise HarnessError(f"device '{device}' is not supported; use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError("--device cuda was asked for but no CUDA GPU is available here; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise HarnessError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev


def _bf16_supported(device: torch.device) -> bool:
    """bf16 natively on *this* device (compute capability 8.0+), not the current one, no emulation."""
    from ..hardware.cuda_flags import cuda_bf16_supported

    from ..core.devices import cuda_index

    return cuda_bf16_supported(cuda_index(device))


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    name = dtypes.canonical(dtype if dtype is not None else "float32")
    if name not in dtypes.RUN_DTYPES:
        raise HarnessError(f"unknown dtype '{dtype}'; use one of {', '.join(dtypes.RUN_DTYPES)}")
    dt = dtypes.torch_dtype(name)
    if device.type == "cuda" and dt == torch.bfloat16 and not _bf16_supported(device):
        raise HarnessError(f"this GPU ({torch.cuda.get_device_name(device)}) cannot run bfloat16 natively; "
                           "use --dtype float16 or float32")
    return dt


def dtype_name(dt: torch.dtype) -> str:
    return dtypes.name_of(dt)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter or buffer (float32 when none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's first parameter (else buffer) lives; the CPU for a model with neither."""
    from ..count.meta_model import model_device as first_tensor_device

    return first_tensor_device(model) or torch.device("cpu")


def cast_inputs(inputs: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Move tensors to ``device``; floating-point tensors also to ``dtype`` (token ids stay integers)."""
    def move(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device)
        return t.to(dtype) if t.is_floating_point() else t

    return map_tensors(inputs, move)


def set_threads(threads: int | None) -> int:
    if threads is not None:
        if int(threads) < 1:
            raise HarnessError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def check_positive(name: str, value: int, minimum: int = 1) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise HarnessError(f"{name} must be a whole number, got {value!r}") from None
    if v < minimum:
        raise HarnessError(f"{name} must be at least {minimum}, got {v}")
    return v


@dataclass
class ModelState:
    """What a run may change on a model it does not own: modes and ``requires_grad`` flags."""

    training: dict[str, bool]
    requires_grad: dict[str, bool]

    @classmethod
    def of(cls, model: torch.nn.Module) -> "ModelState":
        return cls({n: m.training for n, m in model.named_modules()},
                   {n: p.requires_grad for n, p in model.named_parameters()})

    def restore(self, model: torch.nn.Module) -> None:
        for n, m in model.named_modules():
            if n in self.training:
                m.training = self.training[n]
        for n, p in model.named_parameters():
            if n in self.requires_grad:
                p.requires_grad_(self.requires_grad[n])


@dataclass
class Prepared:
    """A model on its device and dtype and the call to run it with.

    ``call`` is the one normalized call (:mod:`harness.core.calls`) that the timed,
    profiled and counted iterations all make; ``inputs`` keeps the moved inputs as given.
    ``saved`` is the model's state to put back when the model is the caller's own.
    """

    name: str
    model: torch.nn.Module
    call: Call
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    threads: int
    inputs: Any = None
    saved: ModelState | None = None
    module: Any = None  # the scenario file's module (workloads read their hooks from it); None for the API
    config_extra: dict = field(default_factory=dict)  # config-key parts of the model's options (named models)
    compile: dict | None = None  # torch.compile settings when the model runs compiled (harness.pipeline.compiled)

    def restore(self) -> None:
        """Put the caller's model back as it was (modes, requires_grad); a copy needs nothing."""
        if self.saved is not None:
            self.saved.restore(self.model)


def _batch_of(call: Call) -> int:
    first = next((t for t in call.tensors() if t.dim() > 0), None)
    return int(first.shape[0]) if first is not None else 1


def prepare_model(model: torch.nn.Module, inputs: Any, *, name: str | None = None, device: Any = None,
                  dtype: Any = None, batch_size: int | None = None, threads: int | None = None,
                  owned: bool = False) -> Prepared:
    """Place ``model`` on ``device``/``dtype`` (defaults: where the model is, in its own dtype).

    A model the harness does not own (``owned=False``: the Python API) is copied when it
    must move or change dtype, and otherwise run as is and restored afterwards.
    """
    dev = resolve_device(device if device is not None else model_device(model))
    dt = resolve_dtype(dtype if dtype is not None else model_dtype(model), dev)
    n_threads = set_threads(threads)
    needs_move = model_device(model) != dev or model_dtype(model) != dt
    saved = None
    if needs_move:
        model = (model if owned else copy.deepcopy(model)).to(device=dev, dtype=dt)
    elif not owned:
        saved = ModelState.of(model)
    moved = cast_inputs(inputs, dev, dt)
    call = split_inputs(moved)
    bs = int(batch_size) if batch_size is not None else _batch_of(call)
    return Prepared(name or type(model).__name__, model, call, dev, dt, bs, n_threads, moved, saved)


def to_channels_last(model: torch.nn.Module, call: Call) -> tuple[torch.nn.Module, Call]:
    """The model and the call's 4-d tensors in channels_last memory format (``--channels-last``)."""
    model = model.to(memory_format=torch.channels_last)

    def conv(x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

    return model, call.map(conv)


def prepare_scenario(sc: scenario_mod.Scenario, *, batch_size: int | None = None, device: Any = None,
                     dtype: Any = None, threads: int | None = None, channels_last: bool = False) -> Prepared:
    """Build the scenario's model and inputs on the resolved device and dtype.

    Arguments left as ``None`` take the scenario file's defaults.
    """
    bs = check_positive("--batch-size", batch_size if batch_size is not None else sc.batch_size)
    dev = resolve_device(device if device is not None else sc.device)
    dt = resolve_dtype(dtype if dtype is not None else sc.dtype, dev)
    model = scenario_mod.build(sc)
    raw = scenario_mod.inputs(sc, bs, dev)
    prep = prepare_model(model, raw, name=sc.name, device=dev, dtype=dt, batch_size=bs, threads=threads, owned=True)
    prep.module = sc.module
    if channels_last:
        prep.model, prep.call = to_channels_last(prep.model, prep.call)
    return prep
