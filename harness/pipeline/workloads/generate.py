"""``generate``: LLM generation, the prefill and each decode step measured apart.

One iteration is one whole greedy generation, driven by the harness, ignoring EOS:

- ``prefill`` (one phase): one forward over the prompt, which returns the first token
  (argmax of the last position's logits) and the KV cache;
- ``decode`` (``new_tokens`` phases): one forward of one token per sequence with the
  cache, and its argmax. The cache is created anew by every prefill, so every iteration
  dispatches the same ops (the join aligns profiled and counted calls one to one).

A generation yields ``new_tokens + 1`` tokens per sequence (the prefill's, then one per
decode step); after decode step ``i`` (from 0) the cache holds ``prompt_len + i + 1``
positions, all of which that step's attention read.

Two ways a model takes part:

(a) a causal LM with transformers' interface: ``model(input_ids=..., past_key_values=...,
    use_cache=True)`` returning ``.logits`` and ``.past_key_values`` (a ``DynamicCache``
    or nested tuples of tensors); ``cache`` instead of ``past_key_values`` when the
    forward takes that keyword (transformers 5.2x renamed it);
(b) the scenario file defines ``prefill(model, inputs) -> state`` and
    ``decode_step(model, state) -> state``; ``state["cache"]`` (or ``state.cache``) is the
    KV cache, the rest is the scenario's own.

The prompt is the call's token ids (``input_ids`` keyword, else the first tensor),
``(batch, length)``, resized to ``prompt_len``: cut, or repeated along the sequence.
``prompt_len`` and ``new_tokens`` come from ``--prompt-len``/``--new-tokens``, else the
scenario file's constants, else the prompt's own length and :data:`DEFAULT_NEW_TOKENS`.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ...core.samples import rate, ratio, sample_stats
from ...core.units import percent, seconds, si
from ...errors import HarnessError
from .base import Figure, Option, PhaseScope, Workload, figure_lines

if TYPE_CHECKING:
    import pandas as pd
    import torch

DEFAULT_NEW_TOKENS = 16
STEP_PHASE = "decode.{}"  # the counter's phase of one decode step, merged into ``decode`` afterwards
STEP_COLUMNS = ["step", "context_len", "latency_s", "macs", "flops", "other_flops", "bytes", "kv_cache_bytes",
                "kv_written_bytes", "achieved_bytes_per_s", "bandwidth_utilization"]
WORK = ["macs", "flops", "other_flops", "bytes"]


# ----------------------------------------------------------------- the two interfaces

def cache_bytes(cache: Any) -> int:
    """Bytes of the distinct tensors reachable from a KV cache: tensors, lists, tuples, dicts
    and plain objects' attributes (transformers' ``DynamicCache`` and its layers)."""
    from ...core.tensors import distinct_bytes

    return distinct_bytes(cache, modules=False)


@dataclasses.dataclass
class LMState:
    """Interface (a)'s state: the next input token per sequence and the model's cache."""

    token: torch.Tensor
    cache: Any


class CausalLM:
    """Interface (a): a transformers-style causal LM. The cache goes in and comes out under
    ``cache`` when the forward takes that keyword (transformers >= 5.2x, where
    ``past_key_values`` is deprecated), else under ``past_key_values``."""

    def __init__(self, model: torch.nn.Module):
        params: Mapping[str, inspect.Parameter]
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):  # no signature to read: the classic name
            params = {}
        self.key = "cache" if "cache" in params else "past_key_values"

    def prefill(self, model: torch.nn.Module, prompt: torch.Tensor) -> LMState:
        return self._next(model(input_ids=prompt, use_cache=True))

    def decode(self, model: torch.nn.Module, state: LMState) -> LMState:
        return self._next(model(input_ids=state.token, use_cache=True, **{self.key: state.cache}))

    def _next(self, out: Any) -> LMState:
        return LMState(out.logits[:, -1:].argmax(-1), getattr(out, self.key))

    @staticmethod
    def cache(state: LMState) -> Any:
        return state.cache


class ScenarioHooks:
    """Interface (b): the scenario file's ``prefill`` and ``decode_step``."""

    def __init__(self, module: Any):
        self.prefill_fn, self.decode_fn = module.prefill, module.decode_step

    def prefill(self, model: torch.nn.Module, prompt: torch.Tensor) -> Any:
        return self.prefill_fn(model, prompt)

    def decode(self, model: torch.nn.Module, state: Any) -> Any:
        return self.decode_fn(model, state)

    @staticmethod
    def cache(state: Any) -> Any:
        return state.get("cache") if isinstance(state, dict) else getattr(state, "cache", None)


def driver_for(module: Any, model: torch.nn.Module) -> CausalLM | ScenarioHooks:
    """(b) when the scenario file defines both hooks, else (a)."""
    hooks = [callable(getattr(module, n, None)) for n in ("prefill", "decode_step")]
    if all(hooks):
        return ScenarioHooks(module)
    if any(hooks):
        raise HarnessError("the scenario defines only one of prefill(model, inputs) and decode_step(model, state); "
                           "define both, or neither to drive the model as a causal LM (input_ids, past_key_values)")
    return CausalLM(model)


def prompt_ids(call: Any, length: int | None) -> torch.Tensor:
    """The call's token ids ``(batch, n)`` resized to ``(batch, length)``: cut, or repeated."""
    import torch

    ids = call.kwargs.get("input_ids") if "input_ids" in call.kwargs else next(iter(call.tensors()), None)
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point() or ids.shape[1] == 0:
        raise HarnessError("--workload generate needs token ids of shape (batch, length) as the inputs "
                           "(make_inputs returning an integer tensor, or a dict with input_ids)")
    length = ids.shape[1] if length is None else length
    reps = math.ceil(length / ids.shape[1])
    return ids.repeat(1, reps)[:, :length].contiguous()


# ----------------------------------------------------------------- counting, step by step

def _regroup(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows of the per-step phases ``decode.N`` summed into ``decode`` (calls and work summed,
    other columns taken from the first row), first-seen order and columns kept."""
    df = df.assign(phase=df["phase"].str.replace(r"^decode\.\d+$", "decode", regex=True))
    agg = {c: "sum" if c in ("calls", *WORK) else "first" for c in df.columns if c not in keys}
    return df.groupby(keys, sort=False, as_index=False, dropna=False).agg(agg)[list(df.columns)]


def merge_steps(counts: Any) -> Any:
    """``counts`` with its ``decode.N`` phases merged into one ``decode`` phase; ``events`` keep
    a ``step`` column (the decode step of each call, -1 in the prefill)."""
    import pandas as pd

    events = counts.events.copy()
    step = events["phase"].str.extract(r"^decode\.(\d+)$", expand=False)
    events["step"] = pd.to_numeric(step).fillna(-1).astype(int)
    events.loc[events.step >= 0, "phase"] = "decode"
    keys = {"by_op": ["op", "input_shapes", "dtype", "module", "phase"], "by_module": ["phase", "path"],
            "by_phase": ["phase"]}
    return dataclasses.replace(counts, events=events, **{k: _regroup(getattr(counts, k), v) for k, v in keys.items()})


def _p50(values: list[float]) -> float | None:
    return sample_stats(values)["p50"] if values else None


def _mean_or_none(values: pd.Series) -> float | None:
    """The mean, or None when any value is unknown (a state without a cache to measure)."""
    return None if values.isna().any() else float(values.mean())


class Generate(Workload):
    """Prefill and ``new_tokens`` decode steps per iteration (module docstring)."""

    name = "generate"
    phases = ("prefill", "decode")
    word, plural = "generation", "generations"
    verdict_phase = "decode"
    phase_words = {"prefill": "TTFT", "decode": "decode step"}
    options_declared = (
        Option("prompt_len", help="generate: prompt tokens (default: the scenario's)", plural="prompt_lens",
               label="prompt length"),
        Option("new_tokens", help="generate: tokens to generate (default: the scenario's, else 16)",
               plural="new_tokens_list"),
    )

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.prompt_len: int | None = None
        self.new_tokens: int = DEFAULT_NEW_TOKENS
        self.kv_bytes: list[int | None] = []  # measured by count(): after the prefill, then after each decode step

    def setup(self, prep: Any) -> None:
        """Eval mode; resolve the options, the interface and the prompt."""
        super().setup(prep)
        self.new_tokens = self.option("new_tokens", prep, DEFAULT_NEW_TOKENS)
        self.driver = driver_for(prep.module, prep.model)
        self.prompt = prompt_ids(prep.call, self.option("prompt_len", prep))
        self.prompt_len = int(self.prompt.shape[1])

    def generate(self, prep: Any, scope: PhaseScope, after: Callable[[Any], None] | None = None) -> Any:
        """One greedy generation; ``after(state)`` sees the state after the prefill and each step."""
        model = prep.model
        with scope("prefill"):
            state = self.driver.prefill(model, self.prompt)
        if after:
            after(state)
        for _ in range(self.new_tokens):
            with scope("decode"):
                state = self.driver.decode(model, state)
            if after:
                after(state)
        return state

    def iteration(self, prep: Any, scope: PhaseScope) -> None:
        self.generate(prep, scope)

    def count(self, prep: Any) -> Any:
        """One generation under :class:`harness.count.Counter`, each decode step its own phase
        (``decode.N``) then merged into ``decode`` (:func:`merge_steps`); the KV cache is
        measured from its tensors after the prefill and after every step."""
        from ...count import Counter

        counter, steps = Counter(prep.model), iter(range(self.new_tokens))
        self.kv_bytes = []

        def scope(phase: str):
            return counter.phase(phase if phase == "prefill" else STEP_PHASE.format(next(steps)))

        def measure(state: Any) -> None:
            cache = self.driver.cache(state)
            self.kv_bytes.append(None if cache is None else cache_bytes(cache))

        with counter:
            self.generate(prep, scope, after=measure)
        return merge_steps(counter.result())

    def occurrence(self, phase: str, index: int) -> str:
        """``decode step 1 (context 33)``: a decode step's index and the context length it runs at."""
        if phase != "decode":
            return phase  # the prefill (its phase word is TTFT, a time)
        return f"decode step {index + 1} (context {int(self.prompt_len or 0) + index + 1})"

    def config_extra(self) -> dict[str, Any]:
        return {"workload": self.name, "prompt_len": self.prompt_len, "new_tokens": self.new_tokens}

    @classmethod
    def history_columns(cls) -> dict[str, str]:
        return {"ttft_p50_s": "prefill", "decode_step_p50_s": "decode"}

    # ------------------------------------------------------------- figures

    def step_table(self, parts: Any) -> pd.DataFrame:
        """steps.csv: one row per decode step (README's "LLM generation"); built once per run."""
        import pandas as pd

        cached = getattr(parts, "_steps", None)
        if cached is not None:
            return cached
        ev = parts.counts.events
        work = ev[ev.step >= 0].groupby("step")[WORK].sum().reindex(range(self.new_tokens), fill_value=0)
        ph = parts.timing.phases
        dec = ph[ph.phase == "decode"]
        lat = [_p50(list(dec.loc[dec["index"] == i, "latency_s"])) for i in range(self.new_tokens)]
        kv, prompt_len = self.kv_bytes, int(self.prompt_len or 0)  # set by setup(), before any table
        written = [None if a is None or b is None else b - a for a, b in zip(kv, kv[1:])]
        df = pd.DataFrame({"step": range(self.new_tokens),
                           "context_len": [prompt_len + i + 1 for i in range(self.new_tokens)],
                           "latency_s": lat, **{c: work[c].astype("int64").values for c in WORK},
                           "kv_cache_bytes": kv[1:], "kv_written_bytes": written})
        df["achieved_bytes_per_s"] = [rate(b, t) for b, t in zip(df["bytes"], df["latency_s"])]
        df["bandwidth_utilization"] = [ratio(r, parts.peak.bytes_per_s) for r in df["achieved_bytes_per_s"]]
        parts._steps = df[STEP_COLUMNS]
        return parts._steps

    def tables(self, parts: Any) -> dict[str, Any]:
        return {"steps": self.step_table(parts)}

    def _timing_keys(self, parts: Any) -> dict[str, Any]:
        """TTFT, decode step latency and tokens/s from the un-profiled samples."""
        ph, batch = parts.timing.phases, parts.prep.batch_size
        dec = ph[ph.phase == "decode"]
        decode_total = _p50(list(dec.groupby("iteration")["latency_s"].sum()))
        e2e = _p50(parts.timing.samples_s)
        return {"ttft_s": sample_stats(parts.timing.phase_samples("prefill")),
                "decode_step_s": sample_stats(list(dec.latency_s)),
                "decode_tokens_per_s": rate(batch * self.new_tokens, decode_total),
                "e2e_tokens_per_s": rate(batch * (self.new_tokens + 1), e2e)}

    def phase_extra(self, parts: Any) -> dict[str, dict[str, Any]]:
        """``phases.prefill.mfu``; ``phases.decode``: work per step, weights and KV bytes, MBU."""
        from ...core.tensors import distinct_bytes

        prefill, decode = parts.phases["prefill"], parts.phases["decode"]
        steps = self.step_table(parts)
        per_step = {f"{k}_per_step": decode[k] for k in ("macs", "flops", "other_flops", "bytes")}
        achieved = decode["achieved_bytes_per_s"]  # the generic phase key: bytes per step / the step's p50
        return {"prefill": {"mfu": prefill["utilization"]},
                "decode": {**per_step, "weights_bytes": distinct_bytes(parts.prep.model),
                           "kv_read_bytes_per_step": _mean_or_none(steps.kv_cache_bytes),
                           "kv_written_bytes_per_step": _mean_or_none(steps.kv_written_bytes),
                           "mbu": ratio(achieved, parts.peak.bytes_per_s)}}

    def summary_extra(self, parts: Any) -> dict[str, Any]:
        """The generate keys of summary.json (README's "LLM generation")."""
        return {"prompt_len": self.prompt_len, "new_tokens": self.new_tokens,
                "generated_tokens": self.new_tokens + 1, **self._timing_keys(parts),
                "kv_cache_bytes": self.kv_bytes[-1] if self.kv_bytes else None}

    @classmethod
    def figures(cls, summary: dict) -> list[Figure]:
        return figures(summary)


# ----------------------------------------------------------------- terminal

def figures(s: dict) -> list[Figure]:
    """A generate run's own rows (under the generic ones): generation, TTFT, decode step, tokens/s, bytes."""
    pre, dec = s["phases"]["prefill"], s["phases"]["decode"]
    ttft, step = s["ttft_s"], s["decode_step_s"]
    bw = s.get("mem_bandwidth_bytes_per_s")
    lines: list[Figure] = []
    row = lambda k, v: lines.append(Figure(k, v))  # noqa: E731
    row("generation", f"prompt {s['prompt_len']} + {s['new_tokens']} decode steps, batch {s['batch_size']}"
                      f" ({s['generated_tokens']} tokens per sequence, greedy)")
    row("TTFT", f"p50 {seconds(ttft['p50'])}   p90 {seconds(ttft['p90'])}   · prefill {si(pre['flops'], 'FLOP')}"
                f" → {si(pre['achieved_flop_per_s'], 'FLOP/s')}, MFU {_known(pre['mfu'], percent)}")
    row("decode step", f"p50 {seconds(step['p50'])}   p90 {seconds(step['p90'])}   p99 {seconds(step['p99'])}")
    row("tokens/s", f"decode {si(s['decode_tokens_per_s'])}   end to end {si(s['e2e_tokens_per_s'])}")
    row("decode bytes", f"{si(dec['bytes_per_step'], 'B')}/step (weights {si(dec['weights_bytes'], 'B')}, "
                        f"KV read {si(dec['kv_read_bytes_per_step'], 'B')}, "
                        f"KV written {si(dec['kv_written_bytes_per_step'], 'B')})")
    row("decode rate", f"{si(dec['achieved_bytes_per_s'], 'B/s')} of "
                       + (f"{si(bw, 'B/s')} → MBU {_known(dec['mbu'], percent)}" if bw else
                          "unknown bandwidth → MBU unknown (measure it: "
                          + (s.get("calibrate_hint") or "python -m harness calibrate") + ")"))
    row("KV cache", f"{si(s['kv_cache_bytes'], 'B')} at the end (context {s['prompt_len'] + s['new_tokens']})")
    return lines


def render(s: dict) -> str:
    """The terminal lines of a generate run's own figures."""
    return figure_lines(figures(s))


def _known(value: float | None, fmt: Callable[[float], str]) -> str:
    return "unknown" if value is None else fmt(value)
