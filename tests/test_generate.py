"""--workload generate: prefill and decode measured apart (real runs, hand arithmetic).

tiny_llama: vocab V=512, d=128, L=4 layers, H=8 query heads, G=2 KV heads, head dim
hd=16, SwiGLU f=384, untied LM head. Per token, the matmul work of one layer is
  q d*H*hd + k d*G*hd + v d*G*hd + o H*hd*d + MLP 3*d*f
= 16384 + 4096 + 4096 + 16384 + 147456 = 188416 MACs,
and the LM head d*V = 65536 MACs. Attention over a context of c keys is, per layer
and query token, QK^T c*hd*H + PV c*hd*H = 2*c*hd*H MACs (grouped-query attention
counts query heads). The KV cache holds 2 (K and V) x L x G x hd x c x batch values.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import harness
from harness.errors import HarnessError
from harness.hardware import Peak
from harness.pipeline import scenario as scenario_mod
from harness.pipeline import workloads
from harness.pipeline.assemble import Parts
from harness.pipeline.measure import time_workload
from harness.pipeline.prepare import prepare_scenario
from harness.pipeline.workloads.generate import cache_bytes, prompt_ids, render
from harness.core.calls import Call

from conftest import run_cli, write_scenario

V, D, L, H, G, HD, F = 512, 128, 4, 8, 2, 16, 384
F32 = 4
LAYER_PER_TOKEN = D * H * HD + 2 * D * G * HD + H * HD * D + 3 * D * F  # 188416
HEAD_PER_TOKEN = D * V  # 65536


def decode_macs(c: int, batch: int) -> int:
    """One decode step at context c (the cache after the step, the new token included)."""
    return batch * (L * (LAYER_PER_TOKEN + 2 * c * HD * H) + HEAD_PER_TOKEN)


def prefill_macs(p: int, batch: int) -> int:
    """The prompt forward: p tokens, causal attention counted over the full p x p."""
    return batch * (p * (L * LAYER_PER_TOKEN + HEAD_PER_TOKEN) + L * 2 * p * p * HD * H)


def kv_bytes(c: int, batch: int) -> int:
    return 2 * L * G * HD * c * batch * F32


def prepared(scenario: str, batch: int, **options):
    prep = prepare_scenario(scenario_mod.load(scenario), batch_size=batch, threads=1)
    wl = workloads.get("generate", **options)
    wl.setup(prep)
    return prep, wl


def test_hand_numbers():
    assert LAYER_PER_TOKEN == 188416 and decode_macs(33, 1) == 852992 and kv_bytes(33, 1) == 33792


def test_prefill_is_the_prompt_forward_and_decode_steps_follow_the_formula():
    prep, wl = prepared("tiny_llama", batch=2, prompt_len=5, new_tokens=3)
    with wl.grad_mode():
        counts = wl.count(prep)
    by_phase = counts.by_phase.set_index("phase")
    plain = harness.count(prep.model, wl.prompt)  # the prompt forward alone
    assert by_phase.at["prefill", "macs"] == plain.macs == prefill_macs(5, 2) == 2 * (5 * 819200 + 4 * 2 * 25 * 128)
    ev = counts.events
    per_step = ev[ev.step >= 0].groupby("step")["macs"].sum()
    # context after step i: 5 + i + 1
    assert list(per_step) == [decode_macs(6, 2), decode_macs(7, 2), decode_macs(8, 2)]
    # one more key and value per step: batch 2 x L x 2*hd*H = 2048 MACs more each step
    assert per_step.diff().dropna().tolist() == [2 * L * 2 * HD * H] * 2 == [2048, 2048]
    # the per-step phases are merged: one decode phase holding every step, totals unchanged
    assert list(by_phase.index) == ["prefill", "decode"]
    assert by_phase.at["decode", "macs"] == per_step.sum() and counts.macs == plain.macs + per_step.sum()
    dec_modules = counts.by_module[counts.by_module.phase == "decode"]
    assert dec_modules.path.is_unique and dec_modules.set_index("path").at["", "macs"] == per_step.sum()
    assert counts.by_op.groupby("phase")["macs"].sum().to_dict() == {"prefill": plain.macs, "decode": per_step.sum()}


def test_per_step_phases_merge_into_exactly_the_two_phase_count():
    """count() counts each step as its own phase and merges them: the result equals a Counter
    run with plain prefill/decode phases on the same generation, table for table."""
    from harness.count import Counter

    prep, wl = prepared("tiny_llama", batch=1, prompt_len=4, new_tokens=3)
    with wl.grad_mode():
        merged = wl.count(prep)
        counter = Counter(prep.model)
        with counter:
            wl.generate(prep, counter.phase)
    plain = counter.result()
    for table in ("by_op", "by_module", "by_phase"):
        pd.testing.assert_frame_equal(getattr(merged, table).reset_index(drop=True),
                                      getattr(plain, table).reset_index(drop=True))
    pd.testing.assert_frame_equal(merged.events.drop(columns="step"), plain.events)
    assert (merged.macs, merged.bytes) == (plain.macs, plain.bytes)


def test_kv_cache_measured_equals_the_formula_and_the_attention_reads():
    prep, wl = prepared("tiny_llama", batch=2, prompt_len=5, new_tokens=3)
    with wl.grad_mode():
        counts = wl.count(prep)
    # after the prefill (context 5), then after each step (6, 7, 8)
    assert wl.kv_bytes == [kv_bytes(c, 2) for c in (5, 6, 7, 8)] == [10240, 12288, 14336, 16384]
    # the counter's bytes rule: each decode SDPA reads q, K, V and writes its output;
    # q and the output are batch x H x 1 x hd each, so the rest is the whole cache of its layer
    ev = counts.events
    sdpa = ev[(ev.op == "aten::scaled_dot_product_attention") & (ev.step >= 0)]
    q_and_out = 2 * 2 * H * 1 * HD * F32
    read = (sdpa.bytes - q_and_out).groupby(sdpa.step).sum()
    assert list(read) == wl.kv_bytes[1:]


def test_mbu_is_bytes_per_step_over_step_p50_over_bandwidth():
    prep, wl = prepared("tiny_llama", batch=1, prompt_len=4, new_tokens=3)
    with wl.grad_mode():
        timing = time_workload(wl, prep, warmup=1, iters=3)
        counts = wl.count(prep)
    peak = Peak(name="test", dtype="float32", flop_per_s=1e12, bytes_per_s=100e9, source="calibrated", note="test")
    parts = Parts(prep=prep, workload=wl, scenario="tiny_llama", run_id="x", started=None, tag=None, warmup=1, iters=3,
                  config=None, timing=timing, counts=counts, prof=None, joined=None, peak=peak, env={})
    s = wl.summary_extra(parts)
    own = wl.phase_extra(parts)  # the keys the workload adds to the generic phase figures
    assert "phases" not in s and not set(own["decode"]) & set(parts.phases["decode"])
    dec = {**parts.phases["decode"], **own["decode"]}
    pre = {**parts.phases["prefill"], **own["prefill"]}
    steps = wl.tables(parts)["steps"]
    step_p50 = timing.phases.loc[timing.phases.phase == "decode", "latency_s"].median()
    assert dec["time_s"]["p50"] == pytest.approx(step_p50)
    assert dec["bytes_per_step"] == pytest.approx(steps.bytes.mean())
    assert dec["mbu"] == pytest.approx(steps.bytes.mean() / step_p50 / 100e9)
    assert dec["macs_per_step"] == pytest.approx(sum(decode_macs(c, 1) for c in (5, 6, 7)) / 3)
    assert pre["macs"] == prefill_macs(4, 1)
    ttft_p50 = timing.phases.loc[timing.phases.phase == "prefill", "latency_s"].median()
    assert pre["mfu"] == pytest.approx(2 * prefill_macs(4, 1) / ttft_p50 / 1e12)
    assert dec["kv_read_bytes_per_step"] == sum(kv_bytes(c, 1) for c in (5, 6, 7)) / 3
    assert dec["kv_written_bytes_per_step"] == kv_bytes(1, 1) == 1024
    assert s["kv_cache_bytes"] == kv_bytes(4 + 3, 1)
    per_iter = timing.phases[timing.phases.phase == "decode"].groupby("iteration").latency_s.sum().median()
    assert s["decode_tokens_per_s"] == pytest.approx(1 * 3 / per_iter)
    assert s["e2e_tokens_per_s"] == pytest.approx(4 / pd.Series(timing.samples_s).median())
    assert list(steps.context_len) == [5, 6, 7] and list(steps.macs) == [decode_macs(c, 1) for c in (5, 6, 7)]
    assert steps.bandwidth_utilization.tolist() == pytest.approx((steps.bytes / steps.latency_s / 100e9).tolist())
    lines = render({**s, "phases": {"decode": dec, "prefill": pre}, "batch_size": 1,
                    "mem_bandwidth_bytes_per_s": 100e9})
    assert "MBU" in lines and "unknown" not in lines.split("decode rate")[1].splitlines()[0]


def _trace(run_dir: Path) -> dict:
    f = next(run_dir.glob("*.pt.trace.json*"))
    data = f.read_bytes()
    return json.loads(gzip.decompress(data) if f.suffix == ".gz" else data)


def test_a_run_end_to_end(tmp_path: Path):
    proc = run_cli("run", "tiny_llama", "--prompt-len", "6", "--new-tokens", "3", "--batch-size", "2", "--iters", "3",
                   "--warmup", "1", "--active", "2", "--threads", "1", "--logdir", str(tmp_path), "--json",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    d = Path(s["path"])
    assert s["workload"] == "generate" and s["phase_names"] == ["prefill", "decode"]
    assert (s["prompt_len"], s["new_tokens"], s["generated_tokens"]) == (6, 3, 4)
    assert s["config_key"].endswith("|workload=generate|prompt_len=6|new_tokens=3")
    assert s["phases"]["prefill"]["macs"] == prefill_macs(6, 2)
    assert s["macs"] == prefill_macs(6, 2) + sum(decode_macs(c, 2) for c in (7, 8, 9))
    assert s["kv_cache_bytes"] == kv_bytes(9, 2) and s["coverage"]["calls_aligned"] is True
    for key in ("ttft_s", "decode_step_s"):
        assert set(s[key]) >= {"p50", "p90", "p99", "mean", "std", "min", "n"}
    assert s["ttft_s"]["n"] == 3 and s["decode_step_s"]["n"] == 9
    bw = s["mem_bandwidth_bytes_per_s"]
    dec = s["phases"]["decode"]
    assert dec["mbu"] == (pytest.approx(dec["bytes_per_step"] / s["decode_step_s"]["p50"] / bw) if bw else None)
    # phase samples: 1 prefill and 3 decode rows per iteration, indexed 0..2
    ph = pd.read_csv(d / "phase_samples.csv")
    assert ph.groupby("iteration").phase.value_counts().unstack().to_dict("list") == {"decode": [3] * 3,
                                                                                      "prefill": [1] * 3}
    assert sorted(ph[ph.phase == "decode"]["index"].unique()) == [0, 1, 2]
    steps = pd.read_csv(d / "steps.csv")
    assert list(steps.step) == [0, 1, 2] and list(steps.kv_cache_bytes) == [kv_bytes(c, 2) for c in (7, 8, 9)]
    # the trace: one prefill and three decode ranges per profiled iteration (2 active)
    names = [e.get("name") for e in _trace(d)["traceEvents"] if e.get("ph") == "X"]
    assert names.count("prefill") == 2 and names.count("decode") == 6
    hist = pd.read_csv(tmp_path / "history.csv")
    row = hist.iloc[-1]
    assert row.workload == "generate" and row.ttft_p50_s == pytest.approx(s["ttft_s"]["p50"])
    assert row.decode_step_p50_s == pytest.approx(s["decode_step_s"]["p50"])


def test_prompt_is_cut_or_repeated_to_prompt_len():
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert prompt_ids(Call((ids,)), 7).tolist() == [[1, 2, 3, 1, 2, 3, 1], [4, 5, 6, 4, 5, 6, 4]]
    assert prompt_ids(Call((), {"input_ids": ids}), 2).tolist() == [[1, 2], [4, 5]]
    assert prompt_ids(Call((ids,)), None).tolist() == ids.tolist()
    with pytest.raises(HarnessError, match="token ids"):
        prompt_ids(Call((torch.randn(2, 3),)), 4)


def test_cache_bytes_counts_each_tensor_once():
    k = torch.zeros(1, 2, 3, 4)  # 96 B
    v = torch.zeros(1, 2, 3, 4, dtype=torch.float16)  # 48 B
    assert cache_bytes([(k, v), (k, v)]) == 144
    assert cache_bytes({"layers": [type("Layer", (), {})()], "kv": (k,)}) == 96


def test_one_hook_only_and_bad_options_exit_2(tmp_path: Path):
    body = (Path(__file__).resolve().parent.parent / "scenarios" / "tiny_llama.py").read_text()
    p = write_scenario(tmp_path, "half", body.replace("def decode_step(", "def decode_step_renamed("))
    proc = run_cli("run", str(p), "--iters", "1", "--warmup", "0", "--logdir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "defines only one of prefill" in proc.stderr
    with pytest.raises(HarnessError, match="--new-tokens must be at least 1"):
        prepared("tiny_llama", batch=1, new_tokens=0)
    with pytest.raises(HarnessError, match="--prompt-len does not apply to --workload forward"):
        workloads.get("forward", prompt_len=3)


def test_a_state_without_a_cache_gives_unknown_kv_figures(tmp_path: Path):
    body = (Path(__file__).resolve().parent.parent / "scenarios" / "tiny_llama.py").read_text()
    p = write_scenario(tmp_path, "nocache", body.replace('"cache"', '"kv"'))
    prep, wl = prepared(str(p), batch=1, prompt_len=4, new_tokens=2)
    with wl.grad_mode():
        timing = time_workload(wl, prep, warmup=0, iters=1)
        counts = wl.count(prep)
    assert wl.kv_bytes == [None, None, None]
    parts = Parts(prep=prep, workload=wl, scenario="nocache", run_id="x", started=None, tag=None, warmup=0, iters=1,
                  config=None, timing=timing, counts=counts, prof=None, joined=None, env={},
                  peak=Peak(name="t", dtype="float32", flop_per_s=None, bytes_per_s=None, source="unknown", note=""))
    s = wl.summary_extra(parts)
    dec = {**parts.phases["decode"], **wl.phase_extra(parts)["decode"]}
    assert s["kv_cache_bytes"] is None and dec["kv_read_bytes_per_step"] is None and dec["mbu"] is None
    assert dec["macs_per_step"] == (decode_macs(5, 1) + decode_macs(6, 1)) / 2  # the work is still counted
    phases = {"decode": dec, "prefill": {**parts.phases["prefill"], **wl.phase_extra(parts)["prefill"]}}
    assert "MBU unknown" in render({**s, "phases": phases, "batch_size": 1, "mem_bandwidth_bytes_per_s": None})


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                    reason="transformers is not installed: hf_tiny_llama (interface (a)) cannot be built")
def test_transformers_llama_counts_like_the_hand_written_one():
    """Same shapes as tiny_llama: the same formulas hold for LlamaForCausalLM and its DynamicCache."""
    prep, wl = prepared("hf_tiny_llama", batch=2, prompt_len=5, new_tokens=3)
    assert type(wl.driver).__name__ == "CausalLM"
    with wl.grad_mode():
        counts = wl.count(prep)
    by_phase = counts.by_phase.set_index("phase")
    assert by_phase.at["prefill", "macs"] == harness.count(prep.model, wl.prompt).macs == prefill_macs(5, 2)
    ev = counts.events
    assert list(ev[ev.step >= 0].groupby("step")["macs"].sum()) == [decode_macs(c, 2) for c in (6, 7, 8)]
    assert wl.kv_bytes == [kv_bytes(c, 2) for c in (5, 6, 7, 8)]
    # greedy decoding of the same prompt: the hand-written loop with the cache gives the same tokens
    with torch.inference_mode():
        state = wl.generate(prep, workloads.no_scope)
        seq = wl.prompt
        for _ in range(4):
            nxt = prep.model(input_ids=seq).logits[:, -1:].argmax(-1)
            seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(state.token, seq[:, -1:])
