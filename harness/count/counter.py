"""``Counter``: count whatever a workload runs, tagged by named phases.

    counter = Counter(model)                 # nothing installed yet
    with counter:                            # dispatch mode + module tracking installed
        with counter.phase("prefill"):
            out = model(ids)
        with counter.phase("decode"):
            model(next_ids, cache)
    counts = counter.result()                # Counts, with by_phase

The caller decides grad mode (training needs autograd; ``count()`` runs its forward
under ``torch.inference_mode()``).  While counting, every dispatched op is charged to
the innermost open ``phase(...)`` block, or to ``default_phase`` outside any.  On
exit the counter leaves the model and torch as it found them: hooks and the mode
removed, train/eval flags, buffers (any buffer the work updated in place, such as
BatchNorm statistics, is restored) and RNG state restored, also when the work raises.
Parameters changed in place (an optimizer step) are not undone; a note says so.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
from torch import nn

from ..errors import HarnessError
from .build import build_counts
from .counts import Counts
from .meta_model import is_meta_model, model_device
from .mode import CountingMode, ModuleTracker


class Counter:
    """Counts a model's work over one or more ``with counter:`` blocks, phase by phase.

    ``default_phase`` names the phase of ops dispatched outside any ``phase()`` block.
    Phases are listed in order of first use (entering ``phase()`` or, for the default
    phase, its first op); a phase entered without ops gets a row of zeros, the default
    phase is listed only when ops ran in it or no phase was entered.  ``phase()``
    blocks nest: the innermost wins.
    """

    def __init__(self, model: nn.Module, *, default_phase: str = "forward", rng_devices: Iterable[int] = ()):
        if not isinstance(model, nn.Module):
            raise HarnessError(f"Counter needs a torch.nn.Module, got {type(model).__name__}")
        _check_phase_name(default_phase, "default_phase")
        self.model = model
        self.default_phase = default_phase
        self.rng_devices = sorted(set(rng_devices))  # CUDA devices (besides the model's) whose RNG a run may draw from
        self._named = list(model.named_modules(remove_duplicate=False))
        self._on_meta = is_meta_model(model)
        self._tracker = ModuleTracker(None)
        for name, mod in self._named:
            self._tracker.paths.setdefault(id(mod), name)
        self._mode = CountingMode(self._tracker, fast_meta=self._on_meta)
        self._names: list[str] = [default_phase]
        self._index: dict[str, int] = {default_phase: 0}
        self._entered_at: dict[int, int] = {}  # phase -> events before its first phase() entry
        self._stack: list[int] = [0]
        self._exit: contextlib.ExitStack | None = None
        self._training: bool | None = None

    # ------------------------------------------------------------ phases

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Charge the ops dispatched inside this block to phase ``name``."""
        _check_phase_name(name, "phase")
        idx = self._index.get(name)
        if idx is None:
            idx = self._index[name] = len(self._names)
            self._names.append(name)
        self._entered_at.setdefault(idx, len(self._mode.ev_op))
        self._stack.append(idx)
        self._set_phase(idx)
        try:
            yield
        finally:
            self._stack.pop()
            self._set_phase(self._stack[-1])

    def _set_phase(self, idx: int) -> None:
        self._mode.phase = idx
        self._tracker.phase = idx

    def _order(self) -> list[int]:
        """Phase indices in order of first use (see the class docstring)."""
        first: dict[int, tuple[int, int]] = {p: (at, 0) for p, at in self._entered_at.items()}
        for seq, p in enumerate(self._mode.ev_phase):
            if p not in first:
                first[p] = (seq, 1)
        if not first:
            first[0] = (0, 0)
        return sorted(first, key=lambda p: (first[p], p))

    # ------------------------------------------------------------ counting

    def __enter__(self) -> "Counter":
        if self._exit is not None:
            raise HarnessError("this Counter is already counting; `with counter:` blocks cannot nest")
        model = self.model
        training_flags = [(m, m.training) for _, m in self._named]
        if self._training is None:
            self._training = any(t for _, t in training_flags)
        # A workload may update buffers in place (BatchNorm statistics in training, caches;
        # kernels update BatchNorm's statistics without bumping version counters): keep a
        # copy of every buffer and write back those that changed (only those: a write
        # bumps the version counter, which autograd checks for tensors it saved).
        saved_buffers = [] if self._on_meta else [(b, b.detach().clone()) for b in model.buffers()]
        param_versions = [] if self._on_meta else [(p, _version(p)) for p in model.parameters()]
        stack = contextlib.ExitStack()
        stack.callback(self._note_changed_params, param_versions)
        stack.callback(_restore, training_flags, saved_buffers)
        try:
            stack.enter_context(torch.random.fork_rng(devices=self._rng_devices()))
            stack.enter_context(self._tracker)
            stack.enter_context(self._mode)
        except BaseException:
            stack.close()
            raise
        self._exit = stack
        return self

    def __exit__(self, *exc: object) -> None:  # exceptions propagate
        stack, self._exit = self._exit, None
        assert stack is not None, "Counter.__exit__ without __enter__"
        self._tracker.stack[1:] = []  # calls left open by an exception are closed
        stack.close()

    def _rng_devices(self) -> list[int]:
        """The model's CUDA device and ``rng_devices`` (the inputs'): their RNG is forked, so counting
        leaves every generator it may touch as it was."""
        from ..core.devices import cuda_index

        dev = model_device(self.model)
        own = [cuda_index(dev)] if dev is not None and dev.type == "cuda" else []
        return sorted(set(own) | set(self.rng_devices))

    def _note_changed_params(self, param_versions: list) -> None:
        changed = [p for p, v in param_versions if v is not None and _version(p) != v]
        if changed:
            names = {id(p): n for n, p in self.model.named_parameters()}
            self._mode.notes.append("the counted work modified parameters in place (" + ", ".join(
                names.get(id(p), "?") for p in changed[:5]) + "); counting does not undo that")

    def result(self) -> Counts:
        """The counts so far (read after the ``with counter:`` block)."""
        if self._exit is not None:
            raise HarnessError("Counter.result() is read after the `with counter:` block, not inside it")
        totals = _param_totals(self.model)
        device = "meta" if self._on_meta else str(model_device(self.model) or "cpu")
        return build_counts(self._named, self._tracker, self._mode, self._names, self._order(), totals,
                            device=device, training=bool(self._training))


    def recomputed(self) -> list[int]:
        """``seq`` of the events that re-ran forward work inside a backward: an op dispatched while
        the autograd engine runs a node with grad mode on (activation checkpointing recomputes so;
        a plain backward runs with grad mode off). Assumes ``backward()`` without ``create_graph``."""
        return list(self._mode.recomputed)


def _param_totals(model: nn.Module) -> tuple[int, int, int]:
    """(parameters, trainable parameters, buffers): elements of the unique tensors, as
    ``model.parameters()`` and ``model.buffers()`` list them, in one walk of the modules."""
    params = trainable = buffers = 0
    seen_p: set[int] = set()
    seen_b: set[int] = set()
    for mod in model.modules():
        for p in mod._parameters.values():
            if p is not None and id(p) not in seen_p:
                seen_p.add(id(p))
                n = p.numel()
                params += n
                trainable += n if p.requires_grad else 0
        for b in mod._buffers.values():
            if b is not None and id(b) not in seen_b:
                seen_b.add(id(b))
                buffers += b.numel()
    return params, trainable, buffers


def _check_phase_name(name, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise HarnessError(f"{what} must be a non-empty string, got {name!r}")


def _restore(training_flags: list, saved_buffers: list) -> None:
    for m, flag in training_flags:
        if m.training != flag:
            m.training = flag
    if saved_buffers:
        with torch.inference_mode():  # also valid for buffers that are inference tensors
            for b, saved in saved_buffers:
                if not torch.equal(b, saved):
                    b.copy_(saved)


def _version(t: torch.Tensor):
    try:
        return t._version
    except RuntimeError:  # inference tensors have no version counter
        return None
