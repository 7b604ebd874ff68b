"""The run summary's shape, defined once: keys with their units, and the two keys
history and compare group runs by.

``summary.json`` (and :attr:`harness.Run.summary`) is a :class:`Summary`. Names carry
their unit: ``_s`` seconds, ``_bytes`` bytes, ``_per_s`` per second, ``macs``
multiply-accumulates, ``flops`` floating-point operations; SI prefixes everywhere.
history.csv, compare, sweep, the report and the README table read these names.
"""
from __future__ import annotations

from typing import Any, TypedDict

SUMMARY_SCHEMA_VERSION = 3


class LatencyStats(TypedDict):
    """Seconds over the un-profiled samples (std: sample, ddof=1)."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    n: int


class PhaseSummary(TypedDict, total=False):
    """One phase of a workload (``forward``; ``prefill``/``decode``; ``forward``/``backward``/``optimizer``)."""

    time_s: LatencyStats          # un-profiled, synchronized samples of this phase
    macs: int
    flops: int                    # 2 x macs
    other_flops: int
    bytes: int
    achieved_flop_per_s: float | None
    achieved_bytes_per_s: float | None
    utilization: float | None
    bandwidth_utilization: float | None
    profiled_time_s: float        # profiled op time of the phase, per iteration
    # train: each phase's p50 beside its statistics
    time_s_p50: float | None
    # generate: prefill
    mfu: float | None
    # generate: decode (means over steps)
    macs_per_step: float
    flops_per_step: float
    other_flops_per_step: float
    bytes_per_step: float
    weights_bytes: int            # parameters and buffers, each once (as the top-level key)
    kv_read_bytes_per_step: float | None
    kv_written_bytes_per_step: float | None
    mbu: float | None


class TrainMemory(TypedDict, total=False):
    """A train run's memory split (bytes, measured after a step)."""

    weights_bytes: int            # parameters and buffers, each once (schema <= 2: parameters only)
    parameters_bytes: int
    buffers_bytes: int
    gradients_bytes: int
    optimizer_state_bytes: int
    activations_bytes: int        # distinct tensors saved for backward in a forward
    peak_activation_bytes: int | None


class MeasuredMemory(TypedDict, total=False):
    """Every run's measured memory by category over one profiled iteration (harness.memory.measured)."""

    peak_bytes: int               # largest sum of live bytes over all categories (memory.csv's peak)
    at_phase: str                 # the phase open at that moment ("(none)" between phases)
    at_s: float                   # its time from the iteration's start (profiled clock)
    baseline_bytes: int           # live at the iteration's start
    by_category_at_peak: dict[str, int]   # every category of harness.memory.categories, zeros included
    by_module_at_peak: dict[str, int]     # the 10 modules holding the most live bytes at the peak
    source: str
    cuda: dict                    # CUDA: allocated_at_start_bytes, max_allocated_bytes, max_reserved_bytes, fragmentation_bytes
    rank: int                     # multi-rank job: the rank whose memory this is (the largest peak)
    peak_bytes_by_rank: list[int | None]
    imbalance: float | None       # largest / smallest rank peak


class Memory(TrainMemory, MeasuredMemory, total=False):
    """summary.json ``memory``: the measured keys, and on a train run its split beside them."""


class Estimate6N(TypedDict):
    params: int                   # trainable
    tokens: int                   # per step
    flops: int                    # 6 N T
    counted_over_estimate: float | None


class GraphBreak(TypedDict):
    reason: str
    count: int


class VersusEager(TypedDict, total=False):
    """``compile.vs_eager``: eager (baseline) vs compiled (candidate) in alternating blocks (README)."""

    judged: str                   # what one judged value is: forward, training step, decode step
    iteration_word: str | None    # what one iteration is (the medians' unit): forward, generation, training step
    ratio: float                  # compiled / eager time, Hodges-Lehmann estimate over block pairs
    low: float
    high: float
    level: float                  # 0.98
    speedup: float | None         # eager / compiled = 1 / ratio
    speedup_low: float | None
    speedup_high: float | None
    verdict: str                  # faster | slower | no significant change | inconclusive (for the compiled model)
    threshold: float
    inconclusive_reason: str | None
    eager_median_s: float | None  # median whole iteration of each side
    compiled_median_s: float | None
    phases: dict[str, dict[str, float]]  # iteration and each phase: {ratio, low, high}
    pairs: int
    block_iterations: int
    budget_s: float
    elapsed_s: float
    disturbed: bool
    skipped: str                  # why it was not timed (then the only key)


class CompileRecord(TypedDict, total=False):
    """``--compile``: settings and what compiling cost (README "torch.compile")."""

    mode: str                     # default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs
    backend: str
    dynamic: bool | None
    compile_s: float              # wall time of the first (compiling) iteration
    settle_iterations: int        # iterations after it until one compiled nothing
    frames_compiled: int
    graphs: int
    graph_breaks: list[GraphBreak]
    recompiles: int               # frames compiled after the first iteration
    compiled_in: list[dict]       # {iteration, phase, index, at, frames}: each phase occurrence that compiled
    cache: str                    # warm | cold | partly warm | not used (Inductor FX graph cache)
    recompiles_while_timed: int
    steady: bool                  # nothing compiled while timed
    vs_eager: VersusEager         # the same model timed eagerly against compiled, interleaved


class Summary(TypedDict, total=False):
    """Every key of summary.json; README "summary.json" documents each."""

    schema_version: int
    scenario: str
    run_id: str
    started_at: str               # ISO 8601 UTC
    finished_at: str
    tag: str | None
    workload: str                 # forward | generate | train
    phase_names: list[str]
    device: str
    device_name: str
    dtype: str
    batch_size: int
    threads: int
    warmup: int
    iters: int
    params: int
    trainable_params: int
    buffers: int
    macs: int
    flops: int
    other_flops: int
    bytes: int
    latency_s: LatencyStats
    throughput_samples_per_s: float | None
    achieved_flop_per_s: float | None
    peak_flop_per_s: float | None
    peak_source: str
    peak_note: str
    utilization: float | None
    mem_bandwidth_bytes_per_s: float | None
    achieved_bytes_per_s: float | None
    arithmetic_intensity: float | None
    peak_memory_bytes: int | None
    peak_activation_bytes: int | None
    weights_bytes: int
    peak_rss_bytes: int
    coverage: dict
    profiled: dict
    phases: dict[str, PhaseSummary]
    peak_exceeded: list[dict]
    warnings: list[str]
    calibrate_hint: str | None
    contention: dict
    trace_files: list[str]
    trace_bytes: int | None
    torch_version: str
    harness_version: str
    git_commit: str
    config_key: str
    env_key: str
    stage_times_s: dict[str, float]
    path: str | None
    model_options: dict           # a model by name: its ModelOptions fields ({} for defaults)
    compile: CompileRecord        # only when the model ran under torch.compile
    # generate (README "LLM generation")
    prompt_len: int
    new_tokens: int
    generated_tokens: int
    ttft_s: LatencyStats
    decode_step_s: LatencyStats
    decode_tokens_per_s: float | None
    e2e_tokens_per_s: float | None
    kv_cache_bytes: int | None
    # train (README "Training step")
    optimizer: str
    optimizer_impl: str           # --optimizer-impl: default, for_loop, foreach or fused
    optimizer_param_groups: int   # the optimizer's param groups (a fused step runs one kernel per group)
    step_s: LatencyStats
    model_flops: int
    hardware_flops: int
    recomputed_flops: int
    mfu: float | None
    hfu: float | None
    samples_per_s: float | None
    tokens_per_s: float | None
    memory: Memory                # every run: measured by category; train: + the split (TrainMemory)
    estimate_6n: Estimate6N
    # multi-rank jobs only (harness.distributed)
    world_size: int
    backend: str
    ranks: list[dict]
    slowest_rank: int
    fastest_rank: int
    imbalance: float | None
    comm_time_s: float | None
    comm_share: float | None


def config_key(scenario: str, batch_size: Any, dtype: Any, device: Any, threads: Any, tag: Any,
               extra: dict[str, Any] | None = None) -> str:
    """``scenario|bs=N|dtype|device|threads=T|tag=X`` then ``|k=v`` for each ``extra`` item
    (a workload other than forward adds ``workload=...`` and its shape, e.g. ``prompt_len``)."""
    key = f"{scenario}|bs={batch_size}|{dtype}|{device}|threads={threads}|tag={tag or ''}"
    for k, v in (extra or {}).items():
        key += f"|{k}={v}"
    return key


def parse_config_key(key: str) -> dict[str, Any]:
    """The inverse of :func:`config_key` (numbers come back as ints)."""
    parts = str(key).split("|")
    out: dict[str, Any] = {"scenario": parts[0] if parts else None}
    positional = []
    for p in parts[1:]:
        name, eq, value = p.partition("=")
        if not eq:
            positional.append(p)
        elif name == "bs":
            out["batch_size"] = _int_or_none(value)
        elif name == "tag":
            out["tag"] = value or None
        else:
            out[name] = _int_or_none(value) if value.isdigit() else value
    if positional:
        out["dtype"] = positional[0]
    if len(positional) > 1:
        out["device"] = positional[1]
    return out


def config_label(key: str) -> str:
    """The config key without the scenario: ``bs=1|float32|cpu|threads=2|tag=``."""
    return str(key).split("|", 1)[1] if "|" in str(key) else ""


def env_key(torch_version: str, device_name: str, git_commit: str) -> str:
    """``torch=V|device name|commit``: what must match for two runs' timings to compare."""
    return f"torch={torch_version}|{device_name}|{git_commit}"


def parse_env_key(key: str) -> dict[str, Any]:
    parts = str(key).split("|")
    out: dict[str, Any] = {}
    if parts and parts[0].startswith("torch="):
        out["torch_version"] = parts[0][6:]
        rest = parts[1:]
    else:
        rest = parts
    if len(rest) >= 2:
        out["device_name"] = "|".join(rest[:-1])
        out["git_commit"] = rest[-1]
    elif rest:
        out["device_name"] = rest[0]
    return out


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
