"""The run spec: one frozen, typed description of a run, built in one place.

Every verb that runs a scenario consumes a :class:`RunSpec`: ``run`` (and the Python API),
each rank of a multi-rank job (the job's spec is a run spec plus rank fields), every sweep
point (one replaced field per point) and each side of an ``ab``. It is built from the
command line by :func:`harness.commands.options.spec_from_args` and from Python by
:func:`harness.pipeline.run.run_scenario`; it travels between processes as JSON
(:meth:`RunSpec.to_dict` / :meth:`RunSpec.from_dict`), so an option added here reaches every
verb, or fails loudly where one cannot take it.

This module imports neither torch nor pandas: the command line validates a spec before
anything heavy is loaded.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import HarnessError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
DEFAULT_COMPILE_BACKEND = "inductor"
DEFAULT_WARMUP = 5
DEFAULT_ITERS = 20
DEFAULT_VS_EAGER_S = 5.0  # a compiled run's eager-vs-compiled timing budget (harness.pipeline.versus_eager)


@dataclass(frozen=True)
class ProfileConfig:
    """Profiler options. ``active`` iterations are recorded after ``wait`` + ``warmup`` steps."""

    wait: int = 1
    warmup: int = 1
    active: int = 3
    record_shapes: bool = True
    profile_memory: bool = True
    with_stack: bool = False
    with_modules: bool = False
    gzip: bool = False


@dataclass(frozen=True)
class RunSpec:
    """What to run, and how. ``None`` means "the scenario's own default".

    ``target``: a built-in scenario, a scenario file or a model by name (``timm:resnet50``);
    ``model``: :class:`harness.models.ModelOptions` fields for a model by name (as a dict);
    ``workload`` and ``workload_options``: how the model is driven and that workload's own
    options (``{"prompt_len": 128}``), checked against the workload's declared options;
    ``channels_last``: the model and its 4-d inputs in channels_last memory format;
    ``compile``: a ``torch.compile`` mode (``default``, ``reduce-overhead``, ``max-autotune``,
    ``max-autotune-no-cudagraphs``) or None for eager, with ``compile_backend`` (default
    ``inductor``) and ``dynamic`` (None: dynamo decides) (:mod:`harness.pipeline.compiled`);
    ``vs_eager_s``: seconds a compiled run spends timing itself against its eager model, interleaved
    (None: 5 s; 0: not timed) (:mod:`harness.pipeline.versus_eager`).
    """

    target: str
    workload: str | None = None
    workload_options: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    device: str | None = None
    dtype: str | None = None
    threads: int | None = None
    channels_last: bool = False
    compile: str | None = None
    compile_backend: str | None = None
    dynamic: bool | None = None
    vs_eager_s: float | None = None
    warmup: int | None = None
    iters: int | None = None
    retry_disturbed: int = 0
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    logdir: str | None = "logs"
    tag: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", str(self.target))
        object.__setattr__(self, "workload_options", dict(self.workload_options or {}))
        object.__setattr__(self, "model", dict(self.model or {}))
        if isinstance(self.profile, Mapping):
            object.__setattr__(self, "profile", ProfileConfig(**self.profile))
        self.check()

    # ------------------------------------------------------------ checks

    def check(self) -> None:
        """One-line errors (exit 2) for values no run can take; the scenario's are checked when built."""
        for name, value, minimum in (("--batch-size", self.batch_size, 1), ("--threads", self.threads, 1),
                                     ("--warmup", self.warmup, 0), ("--iters", self.iters, 1),
                                     ("--retry-disturbed", self.retry_disturbed, 0),
                                     ("--active", self.profile.active, 1)):
            if value is None:
                continue
            if isinstance(value, bool) or not hasattr(value, "__index__"):
                raise HarnessError(f"{name} must be a whole number, got {value!r}")
            value = value.__index__()
            if value < minimum:
                raise HarnessError(f"{name} must be at least {minimum}, got {value}")
        self._check_compile()
        if not self.target:
            raise HarnessError("give a scenario: a built-in name, a .py file or a model by name (timm:NAME, ...)")

    def _check_compile(self) -> None:
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise HarnessError(f"--compile {self.compile!r}: use one of {', '.join(COMPILE_MODES)}")
        if self.compile is None and (self.compile_backend is not None or self.dynamic is not None):
            flag = "--compile-backend" if self.compile_backend is not None else "--dynamic/--no-dynamic"
            raise HarnessError(f"{flag} needs --compile [MODE]")
        if self.vs_eager_s is not None:
            if self.compile is None:
                raise HarnessError("--vs-eager-s needs --compile [MODE]")
            if isinstance(self.vs_eager_s, bool) or not isinstance(self.vs_eager_s, (int, float)) \
                    or not self.vs_eager_s >= 0:
                raise HarnessError(f"--vs-eager-s must be 0 (not timed) or a number of seconds, got {self.vs_eager_s!r}")

    def compile_config_extra(self) -> dict[str, str]:
        """The config-key part of compilation: eager and compiled runs are never one config."""
        if self.compile is None:
            return {}
        dyn = {None: "", True: "+dynamic", False: "+static"}[self.dynamic]
        return {"compile": f"{self.compile}/{self.compile_backend or DEFAULT_COMPILE_BACKEND}{dyn}"}

    # ------------------------------------------------------------ derived

    @property
    def warmup_or_default(self) -> int:
        return DEFAULT_WARMUP if self.warmup is None else self.warmup

    @property
    def vs_eager_budget_s(self) -> float:
        """Seconds of eager-vs-compiled timing (0 for an eager run or when turned off)."""
        if self.compile is None:
            return 0.0
        return DEFAULT_VS_EAGER_S if self.vs_eager_s is None else float(self.vs_eager_s)

    @property
    def iters_or_default(self) -> int:
        return DEFAULT_ITERS if self.iters is None else self.iters

    def model_options(self) -> Any:
        """:class:`harness.models.ModelOptions` for a model by name, None when nothing was given."""
        if not self.model:
            return None
        from ..models import ModelOptions

        return ModelOptions(**self.model)

    def replace(self, **changes: Any) -> "RunSpec":
        """A copy with some fields replaced (a sweep point, an ab side); unknown fields are an error."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise HarnessError(f"a run spec has no field {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ codec

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ranks, sweep jobs and ab workers)."""
        out = dataclasses.asdict(self)
        out["workload_options"] = dict(self.workload_options)
        out["model"] = dict(self.model)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HarnessError(f"a run spec has no field {', '.join(unknown)} (written by another harness version?)")
        return cls(**dict(data))


def model_config_extra(model: Mapping[str, Any]) -> dict[str, str]:
    """``{"model": <hash>}`` when a named model was built with non-default options (``--model-kwargs``,
    ``--input-size``, ...), so that two configurations of ``hf:llama`` are two configs in history."""
    import hashlib
    import json

    from ..models import ModelOptions

    values = dataclasses.asdict(ModelOptions(**model)) if model else None
    if values is None or values == dataclasses.asdict(ModelOptions()):
        return {}
    return {"model": hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]}
