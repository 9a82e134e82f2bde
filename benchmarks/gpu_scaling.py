"""The adapter on a GPU: time and memory of each step on LLaMA-architecture models, and CPU = CUDA colorings.

    python -m benchmarks.gpu_scaling [--models smollm2 tinyllama] [--device cuda]

Random-initialised ``LlamaForCausalLM`` of two real shapes (no download): SmolLM2-135M (30 x 576 / 1536)
and TinyLlama-1.1B (22 x 2048 / 5632), calibrated on random tokens (8 batches of 4 x 256). Steps timed:
statistics (kfac: forward + output-gradient pass), singleton spectra, solve at keep 50 % (HiGHS, generated
columns), apply. Then a small LLaMA is built on the CPU and on the device with the same weights and data:
the colorings must be equal.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152),
    "tinyllama": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                      num_key_value_heads=4, vocab_size=32000),
    "small": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=512),
}


def llama(shape: str, device: str, seed: int = 0):
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(**SHAPES[shape], max_position_embeddings=512)
    model: Any = transformers.LlamaForCausalLM(cfg)  # initialised on the CPU: the same weights on every device
    return model.to(device).eval()


def tokens(vocab: int, device: str, batches: int = 8, bs: int = 4, seq: int = 256, seed: int = 1):
    import torch

    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, vocab, (bs, seq), generator=g).to(device)} for _ in range(batches)]


def run_shape(shape: str, device: str, time_limit: float) -> dict:
    import torch

    from colorshare import solve
    from colorshare.torch import apply_coloring, build_graph, stored_parameters

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    out: dict = {"shape": shape}
    model = llama(shape, device)
    data = tokens(SHAPES[shape]["vocab_size"], device)
    t = time.perf_counter()
    g = build_graph(model, data, [r".*_proj"], progress=False)
    sync()
    out["statistics_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(g.n):
        g.options((i,))
    sync()
    out["singletons_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sol = solve(g, 0.5 * g.dense_size, backend="highs", time_limit=time_limit)
    out["solve_s"] = time.perf_counter() - t
    out["status"] = sol.status.value
    assert sol.memory is not None, f"no plan at half the parameters: {sol.status.value}"
    out["columns"] = sol.facts.get("columns")
    out["groups"] = sum(len(c.members) > 1 for c in sol.classes)
    t = time.perf_counter()
    shared = apply_coloring(model, g, sol)
    sync()
    out["apply_s"] = time.perf_counter() - t
    out["identity"] = stored_parameters(shared) == stored_parameters(model) - g.dense_size + sol.memory
    if device.startswith("cuda"):
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    out["layers"] = g.n
    return out


def same_coloring(device: str) -> dict:
    from colorshare import solve
    from colorshare.torch import build_graph

    res = {}
    for cur in ("layerwise", "kfac"):
        sols = []
        for dev in ("cpu", device):
            model = llama("small", dev)
            g = build_graph(model, tokens(512, dev, batches=4, bs=2, seq=64), [r".*_proj"], curvature=cur,
                            progress=False)
            sols.append(solve(g, 0.5 * g.dense_size, backend="highs", time_limit=60))
        res[cur] = {"same_colors": sols[0].colors == sols[1].colors,
                    "same_ranks": [c.params for c in sols[0].classes] == [c.params for c in sols[1].classes],
                    "objective_cpu": sols[0].objective, "objective_dev": sols[1].objective}
    return res


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["smollm2", "tinyllama"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--time-limit", type=float, default=120.0)
    args = p.parse_args(argv)
    if args.device.startswith("cuda"):
        print("device:", torch.cuda.get_device_name(), flush=True)
    print("cpu vs", args.device, same_coloring(args.device), flush=True)
    for shape in args.models:
        print(run_shape(shape, args.device, args.time_limit), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
