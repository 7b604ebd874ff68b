"""One input convention for every forward the harness makes (timed, profiled, counted).

A scenario's ``make_inputs`` (or a user's ``inputs``) is turned into ``(args, kwargs)``
once, by :func:`split_inputs`:

- a ``tuple`` is the positional arguments: ``model(*inputs)``;
- a ``dict`` is the keyword arguments: ``model(**inputs)``;
- ``None`` is no argument: ``model()``;
- anything else (a tensor, a **list**, a namedtuple such as a ``PackedSequence``, a custom
  object) is the single argument: ``model(inputs)`` (detection models take a list of images
  this way).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Call:
    """The arguments of one forward: ``model(*args, **kwargs)``."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __call__(self, model: Callable) -> Any:
        return model(*self.args, **self.kwargs)

    def map(self, fn: Callable[[Any], Any]) -> "Call":
        """A new Call with ``fn`` applied to every tensor inside (nested lists/tuples/dicts too)."""
        return Call(tuple(map_tensors(a, fn) for a in self.args), {k: map_tensors(v, fn) for k, v in self.kwargs.items()})

    def tensors(self) -> list:
        """Every tensor inside, in argument order."""
        out: list = []

        def collect(t: Any) -> Any:
            out.append(t)
            return t

        self.map(collect)
        return out


def split_inputs(inputs: Any) -> Call:
    """Normalize ``inputs`` to a :class:`Call` by the rule in this module's docstring."""
    if isinstance(inputs, Call):
        return inputs
    if inputs is None:
        return Call()
    if type(inputs) is tuple:  # a namedtuple (PackedSequence) is one argument, not several
        return Call(tuple(inputs), {})
    if isinstance(inputs, dict):
        return Call((), dict(inputs))
    return Call((inputs,), {})


def map_tensors(obj: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every tensor in ``obj`` (lists, tuples, dicts walked; other objects kept)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, torch.nn.utils.rnn.PackedSequence):  # batch_sizes stays on the CPU, as torch wants it
        data = fn(obj.data)
        idx = {k: getattr(obj, k).to(data.device) for k in ("sorted_indices", "unsorted_indices")
               if getattr(obj, k) is not None}
        return obj._replace(data=data, **idx)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # other namedtuples: rebuilt field by field
        return type(obj)(*(map_tensors(v, fn) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


def tensor_bytes(call: Call) -> int:
    """Bytes held by the call's tensors (each counted once: :func:`harness.core.tensors.distinct_bytes`)."""
    from .tensors import distinct_bytes

    return distinct_bytes((call.args, call.kwargs), modules=False)
