"""Time and peak memory of every compress step on LLaMA-shaped models, and how the solve grows with the layers.

    python -m benchmarks.scaling [--shapes tinyllama] [--depths 6 22] [--device cpu] [--out DIR]

Random-initialised ``LlamaForCausalLM`` of real shapes (no download): TinyLlama-1.1B (22 x 2048 / 5632) on the CPU,
LLaMA-7B (32 x 4096 / 11008) where a GPU is lent (``--shapes llama7b --device cuda``). Each shape runs the default
compress pipeline at keep 50 % through ``colorshare.compress``'s own stages (``plan``, ``write``, ``verify``), step
by step: statistics (K-FAC: forward + output-gradient pass, and the probes), solve (the singleton and input-scope
spectra, the proven solve over per-layer options and shared input factors, and the measurement loop: 2 rounds),
apply, save the folder, load it back (``load_compressed``). Calibration: random tokens, ``--batches`` x
``--batch-size`` x ``--seq`` (default 8 x 1 x 256 on the CPU: a 1.1B model's statistics take minutes there); probes as
compress runs them. Peak memory per step, in GiB (2^30 bytes; the json's ``*_gb`` too): resident-set high-water
mark of the step alone (Linux: reset through ``/proc/self/clear_refs``), and on CUDA the allocator's peak.
``--depths``: the same shape at fewer layers too, so that solve seconds per layer can be compared across depths in
one run. Writes ``scaling.md`` and ``scaling.json`` into ``--out``."""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

from benchmarks.gpu_scaling import SHAPES, tokens

SHAPES = {**SHAPES, "llama7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                    num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)}


def llama(cfg: dict[str, Any], device: str, seed: int = 0) -> Any:
    """A random-initialised LlamaForCausalLM of the given shape, on ``device``, in float32."""
    import torch
    import transformers

    torch.manual_seed(seed)
    with torch.device(device):
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg, max_position_embeddings=512)).eval()


def run_shape(shape: str, depth: int | None, device: str, batches: int, batch_size: int, seq: int) -> dict[str, Any]:
    """Compress one random model of ``shape`` (at ``depth`` blocks) with compress's own stages, step by step."""
    import torch

    from colorshare.compress import CompressOptions, plan, verify, write
    from colorshare.timing import Steps
    from colorshare.torch.memory import release
    from colorshare.torch.models import ModelCase

    cuda = device.startswith("cuda")
    gc.collect()  # what an earlier shape left (a model with hooks holds cycles) must not count against this one
    cuda_peaks: dict[str, float | None] = {}

    def before(name: str) -> None:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def after(name: str) -> None:
        release()  # as compress does after its statistics, solve and apply (here after each step: ~0.3 s)
        if cuda:
            torch.cuda.synchronize()
        cuda_peaks[name] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    steps = Steps(per_step=True, before=before, after=after,
                  on_end=lambda name, sec: print(f"  {shape}@{depth}: {name} {sec:.1f} s", flush=True))
    cfg = dict(SHAPES[shape])
    if depth is not None:
        cfg["num_hidden_layers"] = depth
    with steps("build model"):
        model = llama(cfg, device)
    parameters = sum(p.numel() for p in model.parameters())
    data = tokens(cfg["vocab_size"], device, batches=batches, bs=batch_size, seq=seq)
    case = ModelCase(f"{shape}@{depth}", model, data, [r".*_proj"], None, lambda m: {}, lambda m: 0.0, {})
    opts = CompressOptions(measure_rounds=2, time_limit=600, device=device, dtype="bfloat16")
    p = plan(case, "50%", opts, steps, echo=lambda *_: None)
    assert p is not None
    with tempfile.TemporaryDirectory() as tmp:
        w = write(p, Path(tmp), opts, steps, echo=lambda *_: None)
        verify(p, w, Path(tmp), opts, steps, echo=lambda *_: None)  # load_compressed from the folder alone
    sol, m = p.solution, p.solution.facts.get("measured") or {}
    return {"shape": shape, "layers": p.graph.n, "dense_size": p.graph.dense_size, "blocks": cfg["num_hidden_layers"],
            "device": device, "parameters": parameters,
            "steps": {n: {"seconds": sec, "peak_rss_gb": steps.peaks[n], "peak_cuda_gb": cuda_peaks.get(n)}
                      for n, sec in steps.seconds.items()},
            "peak_rss_gb": max(steps.peaks.values()),
            "status": sol.status.value, "gap": sol.gap, "measured_seconds": m.get("seconds"),
            "solve_seconds_per_layer": steps.seconds["solve"] / p.graph.n,
            "folder_bytes": sum(w.files.values()), "calibration": f"{batches} x {batch_size} x {seq} random tokens"}


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="*", default=["tinyllama"])
    p.add_argument("--depths", nargs="*", type=int, default=[6, 22])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--out", default="benchmarks/results/scaling")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    from colorshare.bench.report import machine_line

    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else machine_line()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in args.shapes:
        for d in args.depths or [None]:
            rows.append(run_shape(s, d, args.device, args.batches, args.batch_size, args.seq))
            write(out, machine, args.device, rows)  # each row as soon as it is measured
    return 0


def write(out: Path, machine: str, device: str, rows: list[dict[str, Any]]) -> None:
    """``scaling.json`` and ``scaling.md`` of the rows measured so far, shallow depths first."""
    rows = sorted(rows, key=lambda r: (r["shape"], r["blocks"]))
    (out / "scaling.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    names = list(rows[0]["steps"])
    lines = [f"# compress steps by model shape and depth ({machine}, {device})", "",
             f"Random weights; calibration {rows[0]['calibration']}; keep 50 %; seconds (peak resident GiB of the "
             "step alone" + (", peak CUDA GiB" if device.startswith("cuda") else "") + ").", "",
             "| shape | blocks | layers | parameters | " + " | ".join(names) + " | solve s / layer | peak GiB |",
             "|---|---|---|---|" + "---|" * len(names) + "---|---|"]
    for r in rows:
        cells = []
        for n in names:
            s = r["steps"][n]
            mem = "" if s["peak_rss_gb"] is None else f" ({s['peak_rss_gb']:.1f} GiB"
            mem += "" if s["peak_cuda_gb"] is None else f", {s['peak_cuda_gb']:.1f} GiB CUDA"
            cells.append(f"{s['seconds']:.1f}{mem}{')' if mem else ''}")
        lines.append(f"| {r['shape']} | {r['blocks']} | {r['layers']} | {r['parameters'] / 1e9:.2f} B | "
                     + " | ".join(cells) + f" | {r['solve_seconds_per_layer']:.3f} | {r['peak_rss_gb']:.1f} |")
    (out / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
