"""The two sides of an A/B: ``SCENARIO[:key=value,...]`` parsed into a :class:`SideSpec`.

A side is a :class:`harness.pipeline.spec.RunSpec` (what to build and how to drive it: every
run option, model options and the workload with its options included) plus ``ab``'s own
fields, ``label`` and ``python``. Nothing here imports torch until a scenario is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from ...errors import HarnessError
from ...pipeline import workloads
from ...pipeline.spec import RunSpec

SIDE_KEYS = {"batch_size": "batch_size", "bs": "batch_size", "dtype": "dtype", "device": "device",
             "threads": "threads", "channels_last": "channels_last", "label": "label", "python": "python",
             "compile": "compile"}
OWN_FIELDS = ("label", "python")  # ab's own fields of a side; everything else is the run spec's
MODEL_KEYS = ("attn_implementation",)  # a side's named-model options (RunSpec.model), hf: models only


@dataclass(frozen=True)
class SideSpec:
    """One side of an A/B: the run spec it times (``logdir`` unused) and ab's own ``label`` and ``python``."""

    spec: RunSpec
    label: str | None = None
    python: str | None = None

    @classmethod
    def of(cls, target: str, *, label: str | None = None, python: str | None = None, **run: Any) -> "SideSpec":
        """A side from a scenario and :class:`RunSpec` fields (``SideSpec.of("vgg16", threads=1)``)."""
        return cls(RunSpec(target=str(target), **{"logdir": None, **run}), label, python)

    @property
    def scenario(self) -> str:
        """The side's target: a built-in scenario, a file or a model by name."""
        return self.spec.target

    def load(self):
        """The side's scenario (a named model gets its options)."""
        from ...pipeline import scenario

        return scenario.load(self.spec.target, self.spec.model_options())

    def to_json(self) -> dict:
        """``{"run": <the RunSpec dict>, "label": ..., "python": ...}`` (what ``--isolate`` workers receive)."""
        return {"run": self.spec.to_dict(), "label": self.label, "python": self.python}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SideSpec":
        """The side :meth:`to_json` wrote (an unknown run-spec field is an error, exit 2)."""
        return cls(RunSpec.from_dict(data["run"]), data.get("label"), data.get("python"))


def defaults_of(spec: RunSpec) -> dict[str, Any]:
    """The shared command-line spec as :func:`parse_side` defaults: every run field but the target."""
    return {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in ("target", "logdir")}


def parse_side(text: str, **defaults: Any) -> SideSpec:
    """``SCENARIO[:key=value,...]`` with keys batch_size (bs), dtype, device, threads, channels_last,
    compile (bare: torch.compile's default mode; ``compile=max-autotune``), label, ``attn_implementation``
    (``eager``/``sdpa``: the side's model option, ``hf:`` models only), ``workload`` and each workload option by name (``prompt_len=64``, ``optimizer=sgd``: checked
    by the option's :meth:`~harness.pipeline.workloads.Option.parse`); ``defaults`` (RunSpec fields,
    ``label``, ``python``: the shared command-line options) apply where the side says nothing, and a
    side's workload options are added to the shared ones. A model by name keeps its source:
    ``timm:resnet50:channels_last`` is ``timm:resnet50`` with ``channels_last``
    (:func:`harness.models.split_variant`)."""
    from ...models import split_variant

    text = str(text)
    scen, opts = split_variant(text)
    if not scen:
        raise HarnessError(f"side {text!r}: give a scenario name or file before the options")
    run: dict[str, Any] = {k: v for k, v in defaults.items() if v is not None}
    own = {k: run.pop(k, None) for k in OWN_FIELDS}
    options = dict(run.pop("workload_options", None) or {})
    model = dict(run.pop("model", None) or {})
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key in SIDE_KEYS:
            key = SIDE_KEYS[key]
            (own if key in OWN_FIELDS else run)[key] = _option_value(text, key, value)
        elif key in MODEL_KEYS:
            model[key] = _model_value(text, scen, key, value)
        elif key == "workload":
            run["workload"] = _workload_name(text, value)
        elif key in workloads.declared_options():
            options[key] = _side_error(text, workloads.declared_options()[key].parse, value.strip())
        else:
            raise HarnessError(f"side {text!r}: unknown option {key!r}; use batch_size (bs), dtype, device, threads, "
                               f"channels_last, compile, label, attn_implementation, workload or a workload option "
                               f"({', '.join(workloads.declared_options())})")
    spec = _side_error(text, lambda: RunSpec(target=scen, **{**run, "workload_options": options, "model": model,
                                                                   "logdir": None}))
    if spec.workload is not None:
        _side_error(text, workloads.get, spec.workload, **spec.workload_options)
    return SideSpec(spec, **own)


def _side_error(text: str, fn, *args: Any, **kwargs: Any) -> Any:
    """``fn(...)``, its one-line error prefixed with the side."""
    try:
        return fn(*args, **kwargs)
    except HarnessError as exc:
        raise HarnessError(f"side {text!r}: {exc.message}") from None


def _model_value(text: str, scen: str, key: str, value: str) -> str:
    """A side's ``attn_implementation=eager|sdpa``: one of :data:`harness.models.ATTN_IMPLEMENTATIONS`, for an
    ``hf:`` model (the only source that reads it: a built-in scenario, a file, timm and torchvision would
    ignore it, and the A/B would compare two equal sides)."""
    from ...models import ATTN_IMPLEMENTATIONS

    name = value.strip().lower()
    if name not in ATTN_IMPLEMENTATIONS:
        raise HarnessError(f"side {text!r}: {key} must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, got {value!r}")
    if not scen.startswith("hf:"):
        raise HarnessError(f"side {text!r}: {key} applies to hf: models only ({scen!r} would ignore it)")
    return name


def _workload_name(text: str, value: str) -> str:
    """A side's ``workload=NAME``: a registered workload, lower case."""
    name = value.strip().lower()
    if not name or workloads.cls_for(name) is None:
        raise HarnessError(f"side {text!r}: unknown workload {value!r}; use one of {', '.join(workloads.names())}")
    return name


def _option_value(text: str, key: str, value: str) -> Any:
    """A side's generic ``key=value``, checked (a bare ``channels_last`` means true)."""
    if key == "channels_last":
        return value.strip().lower() not in ("0", "false", "no", "off") if value else True
    if key == "compile":  # a bare ``compile`` is torch.compile's default mode
        return value.strip() or "default"
    if key in ("batch_size", "threads"):
        try:
            number = int(value)
        except ValueError:
            raise HarnessError(f"side {text!r}: {key} must be a whole number, got {value!r}") from None
        if number < 1:
            raise HarnessError(f"side {text!r}: {key} must be at least 1")
        return number
    if not value:
        raise HarnessError(f"side {text!r}: {key} needs a value ({key}=...)")
    return value.strip()


def check_sides(baseline: SideSpec, candidate: SideSpec) -> str:
    """The workload both sides run, once each side's scenario default is resolved and its options are
    checked against it; exit 2 (one line) when the two differ."""
    resolved = []
    for role, side in (("baseline", baseline), ("candidate", candidate)):
        sc = side.load()  # an unknown scenario fails here, before any model is built
        name = side.spec.workload or sc.workload
        try:
            workloads.get(name, **side.spec.workload_options)
        except HarnessError as exc:
            raise HarnessError(f"{role} {side.scenario}: {exc.message}") from None
        origin = "asked" if side.spec.workload else "the scenario's"
        resolved.append((workloads.cls_for(name).name, f"{role} {side.scenario} runs {name} ({origin})"))
    if resolved[0][0] != resolved[1][0]:
        raise HarnessError(f"both sides must run the same workload: {resolved[0][1]}, {resolved[1][1]}; "
                           f"pass --workload NAME to drive both the same way")
    return resolved[0][0]
