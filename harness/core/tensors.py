"""One read-only walk over the tensors an object holds, and one way to count their bytes.

``weights_bytes`` in every output means **parameters and buffers, each tensor once** (tied
weights once): :func:`distinct_bytes` of the model. A KV cache's bytes, an input's bytes and a
train run's parameter/gradient split use the same helper, so "bytes of these tensors" has one
meaning: ``numel x element_size`` of each distinct tensor (by identity).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator

_LEAVES = (str, bytes, int, float, bool, complex, type(None))


def walk_tensors(obj: Any, modules: bool = True) -> Iterator[Any]:
    """Every distinct tensor reachable from ``obj``: tensors, lists, tuples, dicts, dataclasses and
    plain objects' attributes (a ``DynamicCache`` and its layers), each yielded once; modules are
    walked through their parameters and buffers (skipped with ``modules=False``). Nothing is changed."""
    import torch

    seen: set[int] = set()
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, _LEAVES) or isinstance(cur, type) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, torch.Tensor):
            yield cur
        elif isinstance(cur, torch.nn.Module):
            if modules:
                stack.extend(reversed([*cur.parameters(), *cur.buffers()]))
        elif isinstance(cur, dict):
            stack.extend(reversed(list(cur.values())))
        elif isinstance(cur, (list, tuple, set, frozenset)):
            stack.extend(reversed(list(cur)))
        elif dataclasses.is_dataclass(cur):
            stack.extend(reversed([getattr(cur, f.name) for f in dataclasses.fields(cur)]))
        elif hasattr(cur, "__dict__"):
            stack.extend(reversed(list(vars(cur).values())))


def nbytes(tensors: Iterable[Any]) -> int:
    """``numel x element_size`` summed over ``tensors`` (the caller passes distinct ones)."""
    return sum(t.numel() * t.element_size() for t in tensors)


def distinct_bytes(obj: Any, modules: bool = True) -> int:
    """Bytes of the distinct tensors reachable from ``obj`` (:func:`walk_tensors`); of a model: its
    parameters and buffers, each once — the meaning of ``weights_bytes``."""
    return nbytes(walk_tensors(obj, modules))
