"""Linear(256, 256) + ReLU applied 50 times to a batch of 32 (shared weights): chain_51 / chain_50
= 1.02 units of work, the 2 % pair of benchmarks/regression_power.py (forward and train)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chainlib import Chain, features, seeded  # noqa: E402

APPLICATIONS = 50
description = f"Linear(256, 256) + ReLU applied {APPLICATIONS} times, batch 32 (benchmark workload)"
batch_size = 32
make_inputs = features


def build_model():
    return seeded(Chain, APPLICATIONS)
