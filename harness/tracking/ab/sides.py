"""The two sides of an A/B: ``SCENARIO[:key=value,...]`` parsed into a :class:`SideSpec`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...errors import HarnessError

SIDE_KEYS = {"batch_size": "batch_size", "bs": "batch_size", "dtype": "dtype", "device": "device",
             "threads": "threads", "channels_last": "channels_last", "label": "label", "python": "python"}


@dataclass
class SideSpec:
    """One side of an A/B: a scenario and its options (``None`` = the scenario's default)."""

    scenario: str
    batch_size: int | None = None
    dtype: str | None = None
    device: str | None = None
    threads: int | None = None
    channels_last: bool = False
    label: str | None = None
    python: str | None = None
    model_options: dict = field(default_factory=dict)  # harness.models.ModelOptions fields, for named models

    def load(self):
        """The side's scenario (a named model gets its options)."""
        from ...models import ModelOptions
        from ...pipeline import scenario

        return scenario.load(self.scenario, ModelOptions(**self.model_options) if self.model_options else None)

    def options(self) -> dict:
        return {k: getattr(self, k) for k in ("batch_size", "dtype", "device", "threads", "channels_last")}

    def to_json(self) -> dict:
        return {"scenario": self.scenario, **self.options(), "label": self.label, "python": self.python,
                "model_options": self.model_options}


def parse_side(text: str, **defaults: Any) -> SideSpec:
    """``SCENARIO[:key=value,...]`` with keys batch_size (bs), dtype, device, threads, channels_last,
    label; ``defaults`` (the shared command-line options) apply where the spec says nothing.
    A model by name keeps its source: ``timm:resnet50:channels_last`` is ``timm:resnet50`` with
    ``channels_last`` (:func:`harness.models.split_variant`)."""
    from ...models import split_variant

    text = str(text)
    scen, opts = split_variant(text)
    if not scen:
        raise HarnessError(f"side {text!r}: give a scenario name or file before the options")
    vals: dict[str, Any] = {k: v for k, v in defaults.items() if v is not None}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in SIDE_KEYS:
            raise HarnessError(f"side {text!r}: unknown option {key!r}; use batch_size (bs), dtype, device, threads, "
                               f"channels_last, label")
        key = SIDE_KEYS[key]
        vals[key] = _option_value(text, key, value)
    return SideSpec(scenario=scen, **vals)


def _option_value(text: str, key: str, value: str) -> Any:
    if key == "channels_last":
        return value.strip().lower() not in ("0", "false", "no", "off") if value else True
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
