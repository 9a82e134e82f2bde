"""How long ``colorshare compress`` takes, against the floor of its work, measured side by side in one run.

    python -m benchmarks.compress_time [--model smollm2-135m] [--budget 50%] [--out benchmarks/results/compress-time]

The floor: 8 forward-and-backward passes of 4 x 256 tokens (the default calibration set) through the model
in plain transformers (its own next-token loss), timed first; then ``python -m colorshare compress MODEL
--budget B`` with the defaults runs in a fresh process, as a user runs it, and its wall time (imports and
loading included) and its report's per-step seconds are divided by the floor. Then the uniform whitened SVD
baseline (SVD-LLM style, on a layerwise graph) at the same budget is applied to the same model and its
held-out perplexity measured, so the compressed model's perplexity is compared at equal stored parameters.
Writes ``<model>.md`` and ``<model>.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from colorshare.bench.report import machine_line


def floor_seconds(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """Seconds of one forward and backward pass per batch (the model's own next-token loss), plain transformers."""
    model.zero_grad(set_to_none=True)
    t = time.perf_counter()
    for b in batches:
        out = model(input_ids=b["input_ids"], labels=b["input_ids"], use_cache=False)
        out.loss.backward()
    s = time.perf_counter() - t
    model.zero_grad(set_to_none=True)
    return s


def svd_uniform_perplexity(case: Any, keep: float) -> tuple[float, int]:
    """Held-out perplexity and stored parameters of the uniform whitened SVD baseline at ``keep``."""
    from colorshare.torch import apply_coloring, build_graph
    from colorshare.torch.baselines import baseline

    graph = build_graph(case.model, case.batches, case.targets, "layerwise", progress=False)
    sol = baseline(graph, "svd-uniform", keep)
    assert sol.memory is not None
    return case.metrics(apply_coloring(case.model, graph, sol))["perplexity"], int(sol.memory)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--budget", default="50%")
    ap.add_argument("--out", default="benchmarks/results/compress-time")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from colorshare.torch.models import MODEL_CASES

    case = MODEL_CASES[args.model]()
    batches = case.batches[:8]
    floor_seconds(case.model, batches[:1])  # warm-up
    floor = floor_seconds(case.model, batches)
    tokens = sum(int(b["input_ids"].numel()) for b in batches)
    print(f"floor: {len(batches)} forward+backward passes of {tuple(batches[0]['input_ids'].shape)} tokens: "
          f"{floor:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "colorshare", "compress", args.model, "--budget", args.budget,
                              "--out", tmp], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t
        if run.returncode != 0:
            raise SystemExit(f"compress failed ({run.returncode}):\n{run.stderr[-4000:]}")
        report = json.loads((Path(tmp) / "report.json").read_text())
    keep = report["budget_fraction"]
    svd_ppl, svd_stored = svd_uniform_perplexity(case, keep)
    ppl = (report.get("metric_after_reload") or report["metric_after"])["perplexity"]
    res = {
        "model": args.model, "budget": args.budget, "machine": machine_line(), "torch_threads": torch.get_num_threads(),
        "floor_seconds": floor, "floor_tokens": tokens, "floor_passes": len(batches),
        "compress_seconds": wall, "ratio": wall / floor, "steps": report["seconds"],
        "peak_memory_gib": report["peak_memory_gib"], "stored_parameters": report["stored_parameters"],
        "perplexity_dense": report["metric_before"]["perplexity"], "perplexity": ppl,
        "perplexity_in_memory": report["metric_after"]["perplexity"],
        "svd_uniform_perplexity": svd_ppl, "svd_uniform_stored": svd_stored, "vs_svd_uniform": ppl / svd_ppl,
        "solution": {k: report["solution"].get(k) for k in ("status", "objective", "bound", "gap")},
        "measured": {k: (report["solution"].get("measured") or {}).get(k) for k in ("rounds", "seconds", "stopped")},
    }
    sol = res["solution"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.model}.json").write_text(json.dumps(res, indent=2))
    lines = [f"# colorshare compress {args.model} --budget {args.budget}: time against the floor", "",
             f"Machine: {res['machine']}, torch threads {res['torch_threads']}. One run; every figure below from it.",
             "",
             f"- floor: {len(batches)} forward+backward passes of {tokens // len(batches)} tokens each (plain "
             f"transformers, next-token loss): {floor:.1f} s",
             f"- compress (fresh process, defaults, imports and loading included): {wall:.1f} s = "
             f"**{wall / floor:.2f}x the floor**; peak resident memory {res['peak_memory_gib']:.2f} GiB",
             f"- held-out perplexity: dense {res['perplexity_dense']:.2f}; compressed {ppl:.2f} (as written and "
             f"reloaded; in memory {res['perplexity_in_memory']:.2f}); uniform whitened SVD at the same budget "
             f"{svd_ppl:.2f} ({svd_stored:,} parameters vs {res['stored_parameters']:,}): "
             f"**{ppl / svd_ppl:.2f}x**",
             f"- solve: {sol['status']}, objective {sol['objective']:.6g}, bound "
             f"{'-' if sol['bound'] is None else format(sol['bound'], '.6g')}, gap "
             f"{'-' if sol['gap'] is None else format(sol['gap'], '.2%')}",
             "", "| step | seconds | x floor |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {v / floor:.2f} |" for k, v in report["seconds"].items()]
    lines += [f"| total (wall, with imports) | {wall:.1f} | {wall / floor:.2f} |"]
    (out / f"{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
