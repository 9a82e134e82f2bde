"""Inference of SmolLM2-135M, dense against colorshare-compressed at keep 80 / 50 / 30 %, side by side in one run.

    python -m benchmarks.inference [--out benchmarks/results/inference/smollm2-135m] [--repeats 2]

The compressed models are the default pipeline's optimum on the K-FAC surrogate (statistics once, one solve
per budget; the probes and the measurement loop change the ranks, not what a forward costs), written as
folders by ``save_compressed`` and loaded back with ``load_compressed``; every figure is measured in float32
on this machine's CPU (see benchmarks.speed). The weights' file sizes are given in bfloat16 (the
default written dtype for this GGUF source) and float32.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from benchmarks.speed import load_memory, speed_rows, write
from colorshare import solve
from colorshare.bench.report import machine_line
from colorshare.torch import apply_coloring, build_graph, load_compressed, save_compressed
from colorshare.torch.models import smollm2_135m
from colorshare.torch.quant import BITS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/inference/smollm2-135m")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keeps", type=float, nargs="*", default=[0.8, 0.5, 0.3])
    ap.add_argument("--bpw", type=float, nargs="*", default=[4.5, 3.5],
                    help="packed plans at these bits per weight (a graph built with every bit-width)")
    ap.add_argument("--time-limit", type=float, default=120.0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(torch.get_num_threads())
    t0 = time.perf_counter()
    case = smollm2_135m()
    dense: Any = case.model  # a transformers LlamaForCausalLM
    vocab = int(dense.config.vocab_size)
    graph = build_graph(case.model, case.batches, case.targets, "kfac")  # the graph compress builds
    stats_s = time.perf_counter() - t0
    notes: list[str] = []
    extra: dict[str, dict] = {"dense": {"perplexity float32": case.metrics(case.model)["perplexity"]}}
    with tempfile.TemporaryDirectory() as tmp:
        dense_dir = Path(tmp) / "dense"
        # float32 (a GGUF-loaded model has no save_pretrained); a plain transformers folder that from_pretrained loads
        save_compressed(case.model, dense_dir, dtype="float32")
        models, kinds_of = {"dense": case.model}, {"dense": False}
        folders: dict[str, str | Path] = {"dense": dense_dir}
        extra["dense"]["weights_bytes bfloat16"] = (dense_dir / "model.safetensors").stat().st_size // 2
        for keep in args.keeps:
            name = f"keep {keep:.0%}"
            sol = solve(graph, keep * graph.dense_size, backend="highs", time_limit=args.time_limit)
            shared = apply_coloring(case.model, graph, sol)
            folder = Path(tmp) / f"keep{int(keep * 100)}"
            save_compressed(shared, folder, case.tokenizer, dtype="bfloat16")
            del shared
            model = load_compressed(folder)  # the bfloat16 folder as written, in its own dtype
            extra[name] = {"weights_bytes bfloat16": (folder / "model.safetensors").stat().st_size,
                           "perplexity bfloat16": case.metrics(model)["perplexity"],
                           "load_raise_bytes bfloat16": load_memory(folder, compressed=True)["load_raise"]}
            del model
            model = load_compressed(folder, dtype="float32")  # what is timed: the folder alone, in float32
            extra[name]["perplexity float32"] = case.metrics(model)["perplexity"]
            f32 = Path(tmp) / f"keep{int(keep * 100)}-f32"
            save_compressed(model, f32, dtype="float32")
            models[name], folders[name], kinds_of[name] = model, f32, True
            kinds: dict[str, int] = {}
            for c in sol.classes:
                kinds[c.action] = kinds.get(c.action, 0) + 1
            gap = "-" if sol.gap is None else f"{sol.gap:.1e}"
            notes.append(f"- {name}: {sol.status.value} (gap {gap}), classes {kinds}")
        if args.bpw:
            bytes_graph = build_graph(case.model, case.batches, case.targets, "kfac", bits=BITS)
            for bpw in args.bpw:
                name = f"{bpw:g} bpw"
                sol = solve(bytes_graph, bpw / 8 * bytes_graph.dense_parameters, backend="highs",
                            time_limit=args.time_limit)
                assert sol.memory is not None, f"no plan at {name}: {sol.status.value}"
                shared = apply_coloring(case.model, bytes_graph, sol)
                folder = Path(tmp) / f"bpw{bpw:g}"
                save_compressed(shared, folder, case.tokenizer, dtype="bfloat16")
                del shared
                # packed layers run on the bfloat16 weight-only kernels; the rest in float32, as dense
                model = load_compressed(folder, dtype="float32")
                rest = sum(p.numel() for p in case.model.parameters()) - bytes_graph.dense_parameters
                planned = int(sol.memory) + 2 * rest  # the plan's bytes and the untouched tensors in bfloat16
                extra[name] = {"weights_bytes bfloat16": (folder / "model.safetensors").stat().st_size,
                               "planned_bytes": planned,
                               "perplexity float32": case.metrics(model)["perplexity"],
                               "load_raise_bytes bfloat16": load_memory(folder, compressed=True)["load_raise"]}
                models[name], folders[name], kinds_of[name] = model, folder, True
                gap = "-" if sol.gap is None else f"{sol.gap:.1e}"
                bpw_got = 8 * sol.memory / bytes_graph.dense_parameters
                on_disk = extra[name]["weights_bytes bfloat16"]
                notes.append(f"- {name}: {sol.status.value} (gap {gap}), {bpw_got:.3f} bits per weight of the block "
                             f"projections, packed (QuantLinear); model.safetensors {on_disk:,} bytes, "
                             f"{on_disk / planned:.3f}x the plan's bytes plus the untouched tensors in bfloat16 "
                             f"({planned:,})")
        rows = speed_rows(models, vocab, folders, kinds_of, repeats=args.repeats)
    for r in rows:
        r.update(extra[r["model"]])
    header = (f"# Inference: SmolLM2-135M dense against compressed (measured in one run)\n\n"
              f"Machine: {machine_line()}, torch {torch.__version__}, {torch.get_num_threads()} threads, float32 "
              "on CPU; "
              f"best of {args.repeats} after a warm-up, the models taking turns. Statistics (K-FAC and pair "
              f"statistics) {stats_s:.0f} s; total "
              f"{time.perf_counter() - t0:.0f} s. Ratios in parentheses are to dense. The LM head "
              f"({dense.lm_head.weight.numel():,} parameters, tied to the embedding) and the embedding are "
              f"not compressed. Memory: peak resident memory of a fresh process after loading the folder "
              f"(load_raise) and after one 1 x 256 prefill (run_raise), above its peak before loading (torch, "
              f"transformers and colorshare imported, the architecture built on meta); dense loads "
              f"with from_pretrained, compressed with load_compressed (float32 folder; 'bfloat16': the bfloat16 "
              f"folder in its own dtype). Perplexity: held-out prose; 'bfloat16' runs the bfloat16 folder as "
              f"loaded.\n\n" + "\n".join(notes) + "\n")
    write(rows, args.out, "dense", header)
    print(header)
    print(Path(args.out).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
