"""A 7B decoder's training step counted on the meta device: exact FLOPs beside 6N x tokens, under 2 GiB."""
import json
import subprocess
import sys
from pathlib import Path

from test_count_meta import SEVEN_B

ROOT = Path(__file__).resolve().parents[1]

TRAIN_7B = SEVEN_B.replace('''c = count(model, torch.zeros(1, SEQ, dtype=torch.long, device="meta"))''', '''model.train()
c = count(model, torch.zeros(1, SEQ, dtype=torch.long, device="meta"), train=True, optimizer="none")''').replace(
    '''"coverage": c.coverage["share_of_calls"],''', '''"coverage": c.coverage["share_of_calls"],
                      "by_phase": {r["phase"]: r["macs"] for r in c.by_phase.to_dict("records")},
                      "attention_ops": sorted(set(c.events[c.events.op.str.contains("attention")].op)),
                      "attention_backward_macs": int(c.events[c.events.op.str.contains("attention") & (c.events.phase == "backward")
                                                              ].macs.sum()),''')


def test_7b_decoder_training_step_on_meta():
    assert "train=True" in TRAIN_7B and "attention_backward_macs" in TRAIN_7B
    out = subprocess.run([sys.executable, "-c", TRAIN_7B, str(ROOT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    n, layers, t, d, f, v = 6_738_415_616, 32, 2048, 4096, 11008, 32000
    assert r["params"] == n
    linear = layers * (4 * t * d * d + 3 * t * d * f) + t * d * v  # the forward's linear MACs
    attention = layers * 2 * t * t * d  # QK^T and PV, causal counted in full
    assert r["by_phase"]["forward"] == linear + attention == 14_630_806_093_824
    # backward: every linear computes grad input and grad weight (the embedding's output requires grad).
    # On meta, SDPA in training takes the math path (bmm, softmax): no fused kernel, nothing recomputed,
    # so the backward is exactly 2 x the forward (on CPU the flash kernel adds the recomputed QK^T)
    assert r["attention_ops"] == [] and r["attention_backward_macs"] == 0
    assert r["by_phase"]["backward"] == 2 * (linear + attention)
    model = 2 * r["macs"]
    assert model == 3 * 2 * r["by_phase"]["forward"]
    six_n = 6 * n * t
    attention_term = 12 * layers * d * t * t  # PaLM's per-token 12 L d T, times T tokens
    assert model == 6 * linear + attention_term
    print(f"\n7B training step (seq {t}): counted fwd+bwd {model:,} FLOPs; "
          f"6N x tokens {six_n:,}; + attention {attention_term:,} = {six_n + attention_term:,}; "
          f"counted / (6N x T) = {model / six_n:.4f}; counted / (6N x T + attention) = "
          f"{model / (six_n + attention_term):.4f}; {r['seconds']:.1f} s, {r['maxrss_kib'] / 1024:.0f} MiB")
    assert r["coverage"] == 1.0
    assert r["maxrss_kib"] < 2 * 1024 * 1024, r
