"""Live storages by category over one iteration: the bookkeeping under the memory forecast.

:class:`StorageTracker` is a ``TorchDispatchMode``. Every tensor an op returns has its storage
looked at once: a storage not seen before is an **allocation** (an event of ``+nbytes``), and a
weak reference on the storage's Python object (PyTorch keeps that object alive as long as the
storage lives) records its **free** (``-nbytes``) when the last tensor on it goes. Views share
their base's storage and in-place ops return it, so neither allocates. It works on any device; on
the meta device nothing is allocated for real, so a 7B model's step is tracked in seconds.

Each storage has **one category** (:mod:`harness.memory.categories`), its last and strongest
classification over its life, so that a live byte belongs to exactly one category at every
instant and the timeline is the sum over live storages:

- ``parameters``, ``buffers``, ``inputs``: storages alive when tracking starts (:meth:`track_existing`);
  they keep that category whatever happens to them.
- ``gradients``: ``p.grad`` once accumulated (a post-accumulate-grad hook on every parameter; a
  gradient often *is* an op's output that ``AccumulateGrad`` stole, so it is reclassified).
- ``optimizer_state``: the tensors of ``optimizer.state`` (:meth:`mark`).
- ``activations``: tensors autograd saves for backward (a ``saved_tensors_hooks`` pack hook),
  and anything the forward allocated that is still alive when a gradient-computing forward phase
  ends (what autograd or a checkpoint keeps for backward: a checkpointed segment's inputs).
- ``kv_cache``: a generation's cache after each step (:meth:`mark`).
- ``outputs``: the root module's outputs and the loss (:meth:`mark`).
- ``temporaries``: everything else.

A storage classified twice keeps the stronger of the two (:data:`RANK`): a model output that
autograd saves is an activation; a temporary that becomes a parameter's ``.grad`` is a gradient.

Each storage also has an **owner**: the module whose forward was running when it was allocated
(parameters, buffers, gradients and optimizer state: the parameter's module), else ``(<phase>)``.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from . import categories as C

#: Classification strength: a storage moves only to a stronger category. The categories of storages
#: alive at the start (parameters, buffers, inputs) are fixed.
RANK = {C.TEMPORARIES: 0, C.OUTPUTS: 1, C.ACTIVATIONS: 2, C.KV_CACHE: 3, C.OPTIMIZER_STATE: 4, C.GRADIENTS: 5}
FIXED = frozenset({C.PARAMETERS, C.BUFFERS, C.INPUTS})


@dataclass
class Storage:
    """One tracked storage: its bytes (rounded to the allocator's granularity), category, owner and the
    events that allocated and freed it (``freed`` None while alive)."""

    nbytes: int
    category: str
    owner: str
    born: int
    freed: int | None = None


@dataclass
class Events:
    """The event log: per event the storage index, the signed bytes and the phase index."""

    storage: list[int] = field(default_factory=list)
    delta: list[int] = field(default_factory=list)
    phase: list[int] = field(default_factory=list)


class StorageTracker(TorchDispatchMode):
    """Tracks every storage an op allocates, by category and owner module (module docstring).

    ``granularity``: the allocator's rounding of each allocation in bytes (512 for CUDA's caching
    allocator, 1 for the CPU). Use: ``track_existing`` the model, its inputs and the optimizer; then
    run the iteration inside the tracker, each phase in :meth:`phase`; ``result`` is read afterwards.
    """

    def __init__(self, model: torch.nn.Module, granularity: int = 1, grad_phase: str | None = "forward"):
        super().__init__()
        self.granularity = max(1, int(granularity))
        self.storages: list[Storage] = []
        self.events = Events()
        self.phases: list[str] = []
        self.marks: list[tuple[str, int]] = []  # (label, event count when marked)
        self._index: dict[int, int] = {}  # id(untyped storage) -> index into storages
        self._refs: dict[int, weakref.ref] = {}
        self._phase = self._phase_index("setup")
        self._grad_phase = grad_phase  # the phase whose survivors are activations (None: no such rule)
        self._modules = {id(m): name for name, m in model.named_modules()}
        self._owner = {id(p): name.rpartition(".")[0] for name, p in model.named_parameters(remove_duplicate=False)}
        self._stack: list[str] = []
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._handles: list[Any] = []
        self._saved = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    # ------------------------------------------------------------ phases and classification

    def _phase_index(self, name: str) -> int:
        if name not in self.phases:
            self.phases.append(name)
        return self.phases.index(name)

    def phase(self, name: str):
        """A workload scope: events from its start to the next phase's are tagged ``name``; a
        gradient-computing forward's survivors become activations when it ends."""
        import contextlib

        @contextlib.contextmanager
        def scope():
            first = len(self.events.delta)
            self._phase = self._phase_index(name)
            try:
                yield
            finally:  # events up to the next phase (frees as the scope unwinds) stay in this one
                if name == self._grad_phase:
                    self._survivors_to_activations(first)

        return scope()

    def begin(self, phase: str) -> None:
        """The iteration starts: events before its first scope (``zero_grad``) belong to ``phase``."""
        self._phase = self._phase_index(phase)

    def _survivors_to_activations(self, first_event: int) -> None:
        ev = self.events
        for i in range(first_event, len(ev.delta)):
            s = self.storages[ev.storage[i]]
            if ev.delta[i] > 0 and s.freed is None and s.category == C.TEMPORARIES:
                s.category = C.ACTIVATIONS

    def mark(self, obj: Any, category: str, label: str | None = None) -> None:
        """Classify the storages of the tensors reachable from ``obj`` (tracking those not seen yet)."""
        from ..core.tensors import walk_tensors

        for t in walk_tensors(obj, modules=False):
            self._classify(t, category)
        if label is not None:
            self.marks.append((label, len(self.events.delta)))

    def _classify(self, t: torch.Tensor, category: str, owner: str | None = None) -> None:
        i = self._track(t, category, owner)
        if i is None:
            return
        s = self.storages[i]
        if s.category not in FIXED and RANK.get(category, -1) > RANK.get(s.category, -1):
            s.category = category
            if owner is not None:
                s.owner = owner

    def track_existing(self, model: torch.nn.Module, inputs: Any, optimizer: Any = None) -> None:
        """The storages alive before the iteration: parameters, buffers, gradients left by an earlier step,
        inputs (and targets, prompts) and the optimizer's state; one event each, in the ``setup`` phase."""
        from ..core.tensors import walk_tensors

        for name, p in model.named_parameters(remove_duplicate=False):
            self._track(p, C.PARAMETERS, name.rpartition(".")[0])
            if p.grad is not None:
                self._classify(p.grad, C.GRADIENTS, name.rpartition(".")[0])
        for name, b in model.named_buffers(remove_duplicate=False):
            self._track(b, C.BUFFERS, name.rpartition(".")[0])
        for t in walk_tensors(inputs, modules=False):
            self._track(t, C.INPUTS, "(inputs)")
        self.mark_optimizer(optimizer)

    def mark_optimizer(self, optimizer: Any) -> None:
        """``optimizer.state``'s tensors as optimizer state, owned by their parameter's module."""
        if optimizer is None:
            return
        from ..core.tensors import walk_tensors

        for p, state in optimizer.state.items():
            for t in walk_tensors(state, modules=False):
                self._classify(t, C.OPTIMIZER_STATE, self._owner.get(id(p), ""))

    # ------------------------------------------------------------ storages

    def _track(self, t: torch.Tensor, category: str, owner: str | None = None) -> int | None:
        """The storage's index, tracking it (an allocation event) the first time it is seen."""
        if not isinstance(t, torch.Tensor) or t.is_sparse or t.layout != torch.strided:
            return None
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # tensors without storage (nested, functional wrappers)
            return None
        key = id(st)
        i = self._index.get(key)
        size = self._rounded(st.nbytes())
        if i is not None:
            s = self.storages[i]
            if s.nbytes != size:  # resized in place (resize_, out= ops)
                self._event(i, size - s.nbytes)
                s.nbytes = size
            return i
        i = len(self.storages)
        self.storages.append(Storage(size, category, owner if owner is not None else self._here(), len(self.events.delta)))
        self._index[key] = i
        self._refs[key] = weakref.ref(st, self._finalizer(key))
        self._event(i, size)
        return i

    def _rounded(self, n: int) -> int:
        g = self.granularity
        return n if g == 1 else math.ceil(n / g) * g

    def _here(self) -> str:
        return self._stack[-1] if self._stack else f"({self.phases[self._phase]})"

    def _event(self, i: int, delta: int) -> None:
        ev = self.events
        ev.storage.append(i)
        ev.delta.append(delta)
        ev.phase.append(self._phase)

    def _finalizer(self, key: int) -> Any:
        return lambda _ref: self._free(key)

    def _free(self, key: int) -> None:
        i = self._index.pop(key, None)
        self._refs.pop(key, None)
        if i is not None:
            s = self.storages[i]
            s.freed = len(self.events.delta)
            self._event(i, -s.nbytes)

    # ------------------------------------------------------------ hooks

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t, C.TEMPORARIES)
        return out

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self._classify(t, C.ACTIVATIONS)
        return t

    def _push(self, module, args) -> None:
        name = self._modules.get(id(module))
        if name is not None:
            self._stack.append(name)

    def _pop(self, module, args, out) -> None:
        if id(module) in self._modules and self._stack:
            self._stack.pop()

    def _grad_hook(self, p: torch.Tensor) -> None:
        if p.grad is not None:
            self._classify(p.grad, C.GRADIENTS, self._owner.get(id(p), ""))

    def __enter__(self):
        from torch.nn.modules import module as M

        self._handles = [M.register_module_forward_pre_hook(self._push), M.register_module_forward_hook(self._pop)]
        self._handles += [p.register_post_accumulate_grad_hook(self._grad_hook) for p in self._params]
        self._saved.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._saved.__exit__(*exc)
            for h in self._handles:
                h.remove()
            self._handles = []

    def close(self) -> None:
        """Stop listening for frees (storages freed later are not this iteration's)."""
        self._index.clear()
        self._refs.clear()

    def live_bytes(self, categories: Iterable[str] | None = None) -> int:
        """Bytes alive now (in ``categories`` when given)."""
        wanted = set(categories) if categories is not None else None
        return sum(s.nbytes for s in self.storages if s.freed is None and (wanted is None or s.category in wanted))


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t
