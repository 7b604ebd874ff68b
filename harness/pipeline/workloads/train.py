"""``train``: one training step per iteration, in phases ``forward``, ``backward``, ``optimizer``.

One step is ``zero_grad``; ``forward`` (the model's call and the loss); ``backward``
(``loss.backward()``); ``optimizer`` (``opt.step()``; absent with ``--optimizer none``).
Each phase is counted by its own dispatched ops (backward is not assumed to be 2 x
forward) and timed on its own.

A scenario file may define (all optional):

* ``make_optimizer(params) -> torch.optim.Optimizer`` (else ``--optimizer``: ``adamw``, the
  default, ``AdamW(lr=1e-4)`` with torch's ``foreach`` default; ``sgd``, ``SGD(lr=1e-2,
  momentum=0.9)``; ``none``). An explicit ``--optimizer`` wins over the scenario's.
  ``--optimizer-impl for_loop|foreach|fused`` forces the implementation (``foreach=False``,
  ``foreach=True``, ``fused=True``; a scenario's optimizer is rebuilt with it:
  :func:`harness.core.training.with_impl`); ``default`` leaves torch's choice.
* ``make_targets(batch_size, device)`` and ``loss_fn(output, targets) -> Tensor``; else the
  loss is :func:`default_loss` (the mean of the output's floating-point tensors).
* ``tokens_per_sample``: tokens in one sample, for ``tokens_per_s`` and the 6N estimate.

Recomputation (activation checkpointing): an op dispatched while the autograd engine runs
a backward node with grad mode on is a forward re-run inside backward
(:meth:`harness.count.Counter.recomputed`). ``hardware_flops`` is every counted FLOP;
``model_flops`` leaves out that recomputed forward and the scores QK^T that a fused
attention backward recomputes (:func:`harness.count.formulas_backward.attention_recompute_macs`).

Parameters: the timed, counted and profiled iterations are real steps that update the
parameters in place; a caller's own model gets its weights, buffers and gradients back
afterwards (:meth:`Train.teardown`).
"""
from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any, Callable

from ...core.training import OPTIMIZER_IMPLS, OPTIMIZERS, default_loss, make_optimizer, train_step, with_impl
from .base import Figure, Option, PhaseScope, Workload, figure_lines

if TYPE_CHECKING:
    import torch

# OPTIMIZERS, default_loss, make_optimizer and train_step live in harness.core.training, below both this
# workload and the counter (which counts the same step); they stay importable from here
__all__ = ["OPTIMIZERS", "PHASES", "Train", "default_loss", "estimate_6n", "make_optimizer", "memory_split",
           "render", "split_work", "train_step"]

PHASES = ("forward", "backward", "optimizer")
# summary["memory"] keys of the split (:func:`memory_split`); the measured ones beside them are the run's
SPLIT_KEYS = ("weights_bytes", "parameters_bytes", "buffers_bytes", "gradients_bytes", "optimizer_state_bytes",
              "activations_bytes", "peak_activation_bytes")


def _snapshot(model: torch.nn.Module) -> tuple[dict, dict]:
    """Copies of the model's state (weights, buffers) and of its gradients."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return state, grads


class Train(Workload):
    name = "train"
    phases: tuple[str, ...] = PHASES
    word, plural = "training step", "training steps"
    label = "train_step"
    computes_gradients = True
    options_declared = (
        Option("optimizer", type=str, choices=OPTIMIZERS, plural="optimizers",
               help="train: the optimizer (default: the scenario's make_optimizer, else adamw)"),
        Option("optimizer_impl", type=str, choices=OPTIMIZER_IMPLS,
               help="train: the optimizer's implementation: default (torch's choice: the for-loop on CPU, foreach "
                    "on CUDA), for_loop (foreach=False), foreach (foreach=True) or fused (fused=True)"),
        Option("optimizer_step", type=str, choices=("eager", "compiled"),
               help="train: the optimizer step run eagerly (default) or compiled with the run's --compile "
                    "settings (needs --compile)"),
    )

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.optimizer_flag: str | None = self.options.get("optimizer")
        self.optimizer: torch.optim.Optimizer | None = None
        self.optimizer_name = self.optimizer_flag or "adamw"
        self.optimizer_impl: str = self.options.get("optimizer_impl") or "default"
        self.loss_fn: Callable = default_loss
        self.targets: Any = None
        self.recomputed: list[int] = []
        self.memory: dict[str, int] = {}
        self.step_fn: Callable | None = None  # the compiled optimizer step (--optimizer-step compiled)
        if self.optimizer_flag == "none":
            self.phases = PHASES[:2]

    # ------------------------------------------------------------ the step

    def setup(self, prep: Any) -> None:
        """Train mode; optimizer, targets and loss; one untimed step (so optimizer state exists), its
        saved activations measured."""
        self._kept: tuple[dict, dict] | None = _snapshot(prep.model) if prep.saved is not None else None  # the caller's own model
        prep.model.train()
        module = prep.module
        params = [p for p in prep.model.parameters() if p.requires_grad]
        if self.optimizer_flag is None and callable(getattr(module, "make_optimizer", None)):
            self.optimizer = with_impl(module.make_optimizer(params), self.optimizer_impl)
            self.optimizer_name = type(self.optimizer).__name__.lower() if self.optimizer is not None else "none"
        else:
            self.optimizer = make_optimizer(self.optimizer_name, params, impl=self.optimizer_impl)
        if self.optimizer is None:
            self.phases = PHASES[:2]
        self.step_fn = self._compiled_step(prep) if self.options.get("optimizer_step") == "compiled" else None
        if callable(getattr(module, "make_targets", None)):
            self.targets = module.make_targets(prep.batch_size, prep.device)
        if callable(getattr(module, "loss_fn", None)):
            self.loss_fn = module.loss_fn
        import torch

        saved = SavedBytes(prep.model)
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
            self.iteration(prep, _first_phase_only(saved))
        self.memory = memory_split(prep.model, self.optimizer, saved.bytes)

    def _compiled_step(self, prep: Any) -> Callable:
        """``optimizer.step`` under torch.compile with the model's settings (mode, backend, dynamic)."""
        from ...errors import HarnessError

        settings = getattr(prep, "compile", None)
        if settings is None:
            raise HarnessError("--optimizer-step compiled needs --compile [MODE] (its mode and backend)")
        if self.optimizer is None:
            raise HarnessError("--optimizer-step compiled: there is no optimizer (--optimizer none)")
        import torch

        mode = None if settings["mode"] == "default" or settings["backend"] != "inductor" else settings["mode"]
        opt = self.optimizer

        def step() -> None:
            opt.step()

        return torch.compile(step, backend=settings["backend"], mode=mode, dynamic=settings["dynamic"])

    def eager_options(self) -> dict[str, Any]:
        """Without ``optimizer_step`` (compiling the step needs the run's ``--compile`` settings)."""
        return {k: v for k, v in self.options.items() if k != "optimizer_step"}

    def eagerly(self):
        """The optimizer step run eagerly inside the block (counting, and the eager side of ``vs_eager``)."""
        import contextlib

        @contextlib.contextmanager
        def block():
            kept, self.step_fn = self.step_fn, None
            try:
                yield
            finally:
                self.step_fn = kept

        return block()

    def teardown(self, prep: Any) -> None:
        """A caller's model gets back its weights, buffers and gradients (the steps trained it)."""
        kept = getattr(self, "_kept", None)
        if kept is not None:
            import torch

            state, grads = kept
            with torch.no_grad():
                prep.model.load_state_dict(state)
            for name, p in prep.model.named_parameters():
                p.grad = grads.get(name)
            self._kept = None

    def grad_mode(self):
        import contextlib

        return contextlib.nullcontext()

    def iteration(self, prep: Any, scope: PhaseScope) -> None:
        train_step(prep.model, prep.call, self.optimizer, self.loss_fn, self.targets, scope, self.step_fn)

    def count(self, prep: Any) -> Any:
        from ...count import Counter

        counter = Counter(prep.model, default_phase="forward")
        with counter:
            self.iteration(prep, counter.phase)
        self.recomputed = counter.recomputed()
        counts = counter.result()
        # which events re-ran forward work inside backward (the recompute finding reads it)
        counts.events["recomputed"] = counts.events["seq"].isin(self.recomputed)
        return counts

    def config_extra(self) -> dict[str, Any]:
        """``workload=train|optimizer=NAME``, then ``optimizer_impl`` (not ``default``) and ``optimizer_step``
        (``compiled``) when given."""
        impl = {"optimizer_impl": self.optimizer_impl} if self.optimizer_impl != "default" else {}
        compiled = {"optimizer_step": "compiled"} if self.options.get("optimizer_step") == "compiled" else {}
        return {"workload": self.name, "optimizer": self.optimizer_name, **impl, **compiled}

    @classmethod
    def summary_config_extra(cls, s: dict) -> dict[str, Any]:
        """As :meth:`config_extra` leaves them out: ``optimizer_impl`` when ``default`` (summary.json always
        records it), ``optimizer_step`` unless ``compiled``."""
        extra = super().summary_config_extra(s)
        if extra.get("optimizer_impl") == "default":
            del extra["optimizer_impl"]
        if extra.get("optimizer_step") != "compiled":
            extra.pop("optimizer_step", None)
        return extra

    @classmethod
    def figures(cls, summary: dict) -> list[Figure]:
        return figures(summary)

    # ------------------------------------------------------------ the summary

    def phase_extra(self, parts: Any) -> dict[str, dict[str, Any]]:
        """``time_s_p50`` beside each phase's sample statistics."""
        return {name: {"time_s_p50": ph["time_s"]["p50"] if ph["time_s"] else None}
                for name, ph in parts.phases.items()}

    def summary_extra(self, parts: Any) -> dict[str, Any]:
        from ...core.samples import sample_stats

        step = sample_stats(parts.timing.samples_s)
        work = split_work(parts.counts, self.recomputed)
        peak = parts.peak.flop_per_s
        p50 = step["p50"]
        samples_per_s = parts.prep.batch_size / p50 if p50 else None
        out = {
            "optimizer": self.optimizer_name, "optimizer_impl": self.optimizer_impl,
            "optimizer_param_groups": len(self.optimizer.param_groups) if self.optimizer is not None else 0,
            **({"optimizer_step": "compiled"} if self.step_fn else {}),
            "step_s": step, **work,
            "mfu": _ratio(work["model_flops"], p50, peak), "hfu": _ratio(work["hardware_flops"], p50, peak),
            "samples_per_s": samples_per_s, "memory": {**self.memory,
                                                       "peak_activation_bytes": parts.prof.peak_activation_bytes},
        }
        tokens = getattr(parts.prep.module, "tokens_per_sample", None)
        if tokens:
            out["tokens_per_s"] = samples_per_s * int(tokens) if samples_per_s else None
            out["estimate_6n"] = estimate_6n(parts.counts.trainable_params, int(tokens) * parts.prep.batch_size,
                                             work["model_flops"])
        return out


def _ratio(flops: int, seconds: float | None, peak: float | None) -> float | None:
    return flops / seconds / peak if seconds and peak else None


def _first_phase_only(saved: "SavedBytes") -> PhaseScope:
    """A scope that measures saved activations during the forward phase only."""
    import contextlib

    @contextlib.contextmanager
    def scope(phase: str):
        saved.active = phase == "forward"
        try:
            yield
        finally:
            saved.active = False

    return scope


class SavedBytes:
    """Bytes of the distinct tensors autograd saves for backward during a forward (activations), parameters
    excluded: a pack hook for ``torch.autograd.graph.saved_tensors_hooks``."""

    def __init__(self, model: torch.nn.Module):
        self._params = {p.untyped_storage().data_ptr() for p in model.parameters() if p.device.type != "meta"}
        self._seen: set = set()
        self.bytes = 0
        self.active = False

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if self.active and t.device.type != "meta":
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key not in self._params and key not in self._seen:
                self._seen.add(key)
                self.bytes += storage.nbytes()
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t


def memory_split(model: torch.nn.Module, optimizer: Any, activations_bytes: int) -> dict[str, int]:
    """Bytes measured after a step: weights (parameters and buffers, each once: the meaning of
    ``weights_bytes`` everywhere), parameters and buffers apart, gradients (``p.grad``), optimizer
    state (its tensors) and the activations a forward saves for backward."""
    from ...core.tensors import distinct_bytes, nbytes, walk_tensors

    params = list(model.parameters())
    state = distinct_bytes(list(optimizer.state.values())) if optimizer is not None else 0
    return {
        "weights_bytes": distinct_bytes(model),
        "parameters_bytes": nbytes({id(p): p for p in params}.values()),
        "buffers_bytes": nbytes(walk_tensors(list(model.buffers()))),
        "gradients_bytes": nbytes(p.grad for p in params if p.grad is not None),
        "optimizer_state_bytes": state,
        "activations_bytes": int(activations_bytes),
    }


def split_work(counts: Any, recomputed: list[int]) -> dict[str, int]:
    """``hardware_flops`` (every counted FLOP: what executes), ``recomputed_flops`` (the forward re-run
    inside backward, plus the scores fused attention backward recomputes) and ``model_flops`` (the rest)."""
    from ...count.formulas_backward import RECOMPUTING_ATTENTION, attention_recompute_macs

    ev = counts.events
    rerun = int(ev.loc[ev.seq.isin(recomputed), "macs"].sum()) if recomputed else 0
    attention = 0
    for op, shapes in ev.loc[ev.op.isin(RECOMPUTING_ATTENTION), ["op", "input_shapes"]].itertuples(index=False):
        attention += attention_recompute_macs(op, ast.literal_eval(shapes))
    recomputed_flops = 2 * (rerun + attention)
    return {"model_flops": int(counts.flops) - recomputed_flops, "hardware_flops": int(counts.flops),
            "recomputed_flops": recomputed_flops}


def estimate_6n(params: int, tokens: int, model_flops: int) -> dict[str, Any]:
    """The ``6 N`` per token estimate (N = trainable parameters) beside the counted model FLOPs."""
    flops = 6 * params * tokens
    return {"params": params, "tokens": tokens, "flops": flops,
            "counted_over_estimate": model_flops / flops if flops else None}


def figures(summary: dict) -> list[Figure]:
    """A train run's own rows: step time, MFU/HFU with the model/hardware FLOPs, the memory split, 6N.
    (Per-phase time and work are the generic phase table's.)"""
    from ...core.units import percent, seconds, si

    s = summary
    rows = [Figure("training step", f"p50 {seconds(s['step_s']['p50'])} ({s['step_s']['n']} steps)   "
                                    f"{si(s.get('samples_per_s'), 'samples/s')}"
                   + (f"   {si(s['tokens_per_s'], 'tokens/s')}" if s.get("tokens_per_s") else "")
                   + f"   optimizer {s.get('optimizer')}"
                   + (f" ({s['optimizer_impl']})" if s.get("optimizer_impl", "default") != "default" else "")),
            Figure("MFU / HFU", f"MFU {percent(s.get('mfu'))}   HFU {percent(s.get('hfu'))}   (model "
                                f"{si(s['model_flops'], 'FLOP')}, hardware {si(s['hardware_flops'], 'FLOP')}, "
                                f"recomputed {si(s['recomputed_flops'], 'FLOP')} per step)")]
    m = s.get("memory", {})
    rows.append(Figure("memory split", "   ".join(f"{k.replace('_bytes', '').replace('_', ' ')} {si(v, 'B')}"
                                                   for k, v in m.items() if v is not None and k in SPLIT_KEYS)))
    est = s.get("estimate_6n")
    if est:
        rows.append(Figure("6N estimate", f"{si(est['flops'], 'FLOP')} per step; counted/6N = "
                                          f"{est['counted_over_estimate']:.3f}"))
    return rows


def render(summary: dict) -> str:
    """The terminal lines of a train run's own figures."""
    return figure_lines(figures(summary))
