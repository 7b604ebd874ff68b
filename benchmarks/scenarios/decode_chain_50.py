"""A decoder without attention: embedding, then Linear(256, 256) + ReLU applied 50 times per
token, generated through prefill/decode_step; decode_chain_51's decode step does 1.02 x
decode_chain_50's work (benchmarks/regression_power.py --workload generate --effect 0.02)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chainlib import TokenChain, decode_step, prefill, seeded, tokens  # noqa: E402,F401

APPLICATIONS = 50
description = f"token chain of {APPLICATIONS} Linear(256, 256) + ReLU, batch 32, greedy decode (benchmark)"
workload = "generate"
batch_size = 32
prompt_len = 8
new_tokens = 8
make_inputs = tokens


def build_model():
    return seeded(TokenChain, APPLICATIONS)
