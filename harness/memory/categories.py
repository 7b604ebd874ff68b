"""The memory categories every forecast and measurement speaks of, in one place.

A live byte belongs to exactly one category. The names are the `category` column of memory.csv
and the keys of summary.json `memory.by_category_at_peak`; they are a public contract.
"""
from __future__ import annotations

PARAMETERS = "parameters"            # nn.Parameter storages (numel x element size)
BUFFERS = "buffers"                  # registered buffers (BatchNorm running stats, rotary tables, ...)
GRADIENTS = "gradients"              # .grad of parameters
OPTIMIZER_STATE = "optimizer_state"  # optimizer.state tensors (AdamW: exp_avg, exp_avg_sq, step)
ACTIVATIONS = "activations"          # tensors saved for backward, alive from forward to backward
TEMPORARIES = "temporaries"          # everything else an op allocates and frees within the iteration
KV_CACHE = "kv_cache"                # generate: key/value cache tensors
INPUTS = "inputs"                    # the iteration's inputs (and training targets)
OUTPUTS = "outputs"                  # what the iteration returns (logits, loss)

CATEGORIES: tuple[str, ...] = (PARAMETERS, BUFFERS, GRADIENTS, OPTIMIZER_STATE, ACTIVATIONS,
                               TEMPORARIES, KV_CACHE, INPUTS, OUTPUTS)
