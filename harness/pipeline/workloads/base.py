"""What a workload is: how the model is driven, in named phases, with its own options and figures.

A workload's :meth:`Workload.iteration` runs one iteration (one forward; one generation;
one training step) and wraps each phase in ``scope(phase_name)``. Every stage passes its
own scope, so the timed, profiled and counted iterations are the same code:

- measure: a scope that synchronizes and reads the clock around the phase;
- profile: ``torch.profiler.record_function(phase)`` inside the iteration's label;
- count: the counter's ``phase(name)``, which tags every dispatched op with the phase.

**Adding a workload** is one file and one registry line (``workloads.register(MyWorkload)``):
the class declares its ``name``, ``phases``, ``word`` (what one iteration is called in every
output), its :class:`Option` s (which become flags of every verb that runs a scenario and
keys of the run spec's ``workload_options``), and may add summary keys
(:meth:`Workload.summary_extra`, :meth:`Workload.phase_extra`), terminal/report rows
(:meth:`Workload.figures`), tables (:meth:`Workload.tables`), history columns
(:meth:`Workload.history_columns`) and config-key parts (:meth:`Workload.config_extra`).
``tests/test_workload_plugin.py`` is the recipe, end to end.

Workload modules import torch and pandas inside their methods: the command line reads the
declarations (options, words) before anything heavy is loaded.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, NamedTuple

PhaseScope = Callable[[str], ContextManager]


def no_scope(phase: str) -> ContextManager:
    """A scope that does nothing (warm-up iterations)."""
    return contextlib.nullcontext()


@dataclass(frozen=True)
class Option:
    """One option of a workload: ``prompt_len`` is the flag ``--prompt-len`` of every verb that runs a
    scenario, and the key ``prompt_len`` of the run spec's ``workload_options``.

    ``type``: ``int`` (at least ``minimum``) or ``str`` (one of ``choices`` when given);
    ``plural``: the sweep flag that takes a comma-separated list of values (``--prompt-lens``);
    None when the option cannot be swept; ``label``: what a value is, in a sweep's table and plot
    (default: the name with spaces)."""

    name: str
    type: type = int
    help: str = ""
    choices: tuple[str, ...] | None = None
    minimum: int = 1
    plural: str | None = None
    label: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def caption(self) -> str:
        """The label, else the name with spaces (``new tokens``)."""
        return self.label or self.name.replace("_", " ")

    @property
    def plural_flag(self) -> str | None:
        return "--" + self.plural.replace("_", "-") if self.plural else None

    def parse(self, value: Any) -> Any:
        """The checked value (HarnessError, exit 2, with the flag's name otherwise)."""
        from ...errors import HarnessError

        if self.type is int:
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise HarnessError(f"{self.flag} must be a whole number, got {value!r}") from None
            if isinstance(value, float) and value != number:
                raise HarnessError(f"{self.flag} must be a whole number, got {value!r}")
            if number < self.minimum:
                raise HarnessError(f"{self.flag} must be at least {self.minimum}, got {number}")
            return number
        text = str(value).strip().lower() if self.choices else str(value)
        if self.choices and text not in self.choices:
            raise HarnessError(f"unknown {self.flag} '{value}'; use one of {', '.join(self.choices)}")
        return text


class Figure(NamedTuple):
    """One row of a workload's own figures: a label and its text (``("TTFT", "p50 2.67 ms ...")``).
    The terminal, report.html, TensorBoard's text and the multi-rank printout render the same rows."""

    label: str
    text: str


LABEL_WIDTH = 14


def figure_lines(rows: list[Figure]) -> str:
    """Figure rows as aligned terminal lines (``"  TTFT          p50 2.67 ms ..."``): the one text
    rendering of a workload's rows (the run summary and the multi-rank printout both use it)."""
    return "\n".join(f"  {f.label:<{LABEL_WIDTH}}{f.text}" for f in rows)


class Workload:
    """The forward-only base: subclasses set ``name``/``phases`` and override :meth:`iteration`."""

    name: str = "forward"
    phases: tuple[str, ...] = ("forward",)
    word: str = "forward"  # one iteration, in every output ("forward", "generation", "training step")
    plural: str = "forwards"
    label: str = "model_inference"  # record_function range around each profiled iteration
    options_declared: tuple[Option, ...] = ()  # this workload's own options
    computes_gradients: bool = False  # multi-rank runs wrap the model in DistributedDataParallel when True
    #: The phase whose per-occurrence samples ``ab`` judges (None: the whole iteration). A generation is
    #: judged by its decode step; the other phases' ratios are reported beside the verdict.
    verdict_phase: str | None = None
    #: What one occurrence of a phase is called where it is not the phase's own name (``ab``'s output).
    phase_words: dict[str, str] = {}

    def __init__(self, **options: Any):
        from ...errors import HarnessError

        declared = {o.name: o for o in self.options_declared}
        given = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            flags = ", ".join("--" + o.replace("_", "-") for o in unknown)
            raise HarnessError(f"{flags} does not apply to --workload {self.name}")
        self.options: dict[str, Any] = {k: declared[k].parse(v) for k, v in given.items()}

    @classmethod
    def phase_word(cls, phase: str | None) -> str:
        """What one occurrence of ``phase`` is called (``None``: the whole iteration, :attr:`word`)."""
        return cls.word if phase is None else cls.phase_words.get(phase, phase)

    def eagerly(self) -> ContextManager:
        """A block in which whatever the workload itself compiled runs eagerly (the model is switched
        apart: :func:`harness.pipeline.compiled.eager`); nothing here."""
        return contextlib.nullcontext()

    def eager_options(self) -> dict[str, Any]:
        """The options of this workload's iteration run eagerly (a meta-device forecast of a compiled run):
        its own, less any that compile part of the iteration itself."""
        return dict(self.options)

    def occurrence(self, phase: str, index: int) -> str:
        """One occurrence of a phase in words, for what happened there (``decode step 3 (context 36)``)."""
        return self.phase_word(phase) if index == 0 else f"{self.phase_word(phase)} {index + 1}"

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(o.name for o in cls.options_declared)

    def option(self, name: str, prep: Any = None, default: Any = None) -> Any:
        """An option's value: given, else the scenario file's constant of that name, else ``default``."""
        if name in self.options:
            return self.options[name]
        value = getattr(getattr(prep, "module", None), name, None)
        if value is not None:
            return {o.name: o for o in self.options_declared}[name].parse(value)
        return default

    # ------------------------------------------------------------ the iteration

    def setup(self, prep: Any) -> None:
        """Put the model in the mode this workload needs (eval for inference)."""
        prep.model.eval()

    def teardown(self, prep: Any) -> None:
        """Undo what the iterations did to a model the caller owns (nothing for inference)."""

    def grad_mode(self) -> ContextManager:
        """The autograd mode every stage runs the iteration in."""
        import torch

        return torch.inference_mode()

    def iteration(self, prep: Any, scope: PhaseScope) -> None:
        raise NotImplementedError

    def count(self, prep: Any) -> Any:
        """Counted work of one iteration: the same :meth:`iteration` with the counter's phase scope
        (:class:`harness.count.Counts`; every op tagged with its phase)."""
        from ...count import Counter

        counter = Counter(prep.model, default_phase=self.phases[0])
        with counter, self.grad_mode():
            self.iteration(prep, counter.phase)
        return counter.result()

    def items_per_iteration(self, prep: Any) -> int:
        """Samples an iteration processes (throughput = items / p50)."""
        return prep.batch_size

    # ------------------------------------------------------------ what the run record holds

    def summary_extra(self, parts: Any) -> dict[str, Any]:
        """This workload's own summary.json keys (``parts``: :class:`harness.pipeline.assemble.Parts`).
        They may not replace a generic key (the assembler refuses)."""
        return {}

    def phase_extra(self, parts: Any) -> dict[str, dict[str, Any]]:
        """Keys this workload adds to ``summary["phases"][phase]`` (new keys only)."""
        return {}

    def tables(self, parts: Any) -> dict[str, Any]:
        """Workload-specific tables, written as ``<name>.csv`` in the run directory."""
        return {}

    def config_extra(self) -> dict[str, Any]:
        """Config-key parts: ``workload=NAME`` and the options given (empty for forward, whose key is unchanged)."""
        if self.name == "forward":
            return {}
        return {"workload": self.name, **{k: self.options[k] for k in self.option_names() if k in self.options}}

    @classmethod
    def summary_config_extra(cls, s: dict) -> dict[str, Any]:
        """:meth:`config_extra` rebuilt from a summary.json that has no config key: ``workload=NAME`` and the
        summary's values of this workload's options."""
        return {"workload": cls.name, **{k: s[k] for k in cls.option_names() if k in s}}

    @classmethod
    def history_columns(cls) -> dict[str, str]:
        """history.csv columns of this workload: column -> phase whose un-profiled p50 it holds."""
        return {f"{p}_p50_s": p for p in cls.phases} if len(cls.phases) > 1 else {}

    @classmethod
    def figures(cls, summary: dict) -> list[Figure]:
        """This workload's own rows (label, text) for the terminal, report.html, TensorBoard and the
        multi-rank printout ([] for forward)."""
        return []
