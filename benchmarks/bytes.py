"""colorshare's plans against the quantizers at equal bytes, in one run: perplexity on held-out text from another
source than the calibration text, against bits per weight of the targeted layers (scales and zero points counted).

    python -m benchmarks.bytes [--model smollm2-135m] [--bpw 8 4.5 3.5 3 2.5] [--chunks 16] [--out DIR]

Calibration: the model case's own text (SmolLM2: 32 x 256 tokens of the even pydoc topics). Evaluation: ``--chunks``
x 256 tokens of the prose of installed packages' descriptions (:func:`colorshare.corpus.package_text`), and the
odd pydoc topics (the calibration's own source) for reference. Every method is measured on the same text, its
weights' products exact in float32 (:func:`colorshare.torch.quant.exact_products`):

- dense (16 bits a weight);
- round-to-nearest: 8 bits one scale per row; 4 / 3 / 2 bits in groups of 64 with a scale and a zero point;
- GPTQ 4 / 3 / 2 bits in groups of 64 (colorshare's own, under the same input covariances as the plans: the
  algorithm of the reference implementation, layer by layer on the dense model's statistics);
- HQQ 4 / 3 bits in groups of 64 (calibration-free) where the ``hqq`` package is installed;
- colorshare at each ``--bpw``: one graph built with every bit-width (``build_graph(..., bits=BITS)``), solved
  by HiGHS, applied and measured.

Writes ``bytes.md``, ``bytes.json`` and ``bytes.png`` (perplexity against bits per weight, log axes) into
``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


def _layers(graph: Any, model: Any) -> list[tuple[int, Any]]:
    return [(i, model.get_submodule(name)) for i, name in enumerate(graph.module_names)]


def _measure(case: Any, model: Any) -> dict[str, float]:
    from colorshare.torch.quant import exact_products

    with exact_products():
        return case.metrics(model)


def uniform(case: Any, graph: Any, method: str, bits: int) -> dict[str, Any]:
    """Every targeted layer quantized alike (``rtn``, ``gptq`` or ``hqq``): its perplexity and bytes."""
    import torch

    from colorshare.torch.quant import rtn, stored_bytes

    saved = []
    nbytes = 0
    for i, mod in _layers(graph, case.model):
        W = mod.weight.detach()
        saved.append((mod, W.clone()))
        d_out, d_in = W.shape
        if method == "rtn":
            new = rtn(W, bits).dequantize(torch.float32)
        elif method == "gptq":
            new = graph.quantize(i, bits).dequantize(torch.float32)
        else:
            new = _hqq(W, bits)
        with torch.no_grad():
            mod.weight.copy_(new.to(W.dtype))
        nbytes += stored_bytes(d_out, d_in, bits)
    try:
        metric = _measure(case, case.model)
    finally:
        with torch.no_grad():
            for mod, W in saved:
                mod.weight.copy_(W)
    return {"method": f"{method} int{bits}", "bytes": nbytes, **metric}


def _hqq(W: Any, bits: int) -> Any:
    """HQQ's dequantized weight at ``bits`` in groups of 64 (its own optimizer, no calibration)."""
    import torch
    from hqq.core.quantize import BaseQuantizeConfig, HQQBackend, HQQLinear

    HQQLinear.set_backend(HQQBackend.PYTORCH)
    lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(W)
    q = HQQLinear(lin, quant_config=BaseQuantizeConfig(nbits=bits, group_size=64, axis=1),
                  compute_dtype=torch.float32, device="cpu")
    return q.dequantize().reshape(W.shape).float()


def plan(case: Any, graph: Any, bpw: float, time_limit: float) -> dict[str, Any]:
    """colorshare's plan at ``bpw`` bits per weight: its perplexity, bytes and what it chose."""
    from colorshare import solve
    from colorshare.torch import apply_coloring

    sol = solve(graph, bpw / 8 * graph.dense_parameters, backend="highs", time_limit=time_limit)
    if sol.colors is None:
        return {"method": f"colorshare {bpw:g}bpw", "bytes": None, "status": sol.status.value}
    shared = apply_coloring(case.model, graph, sol)
    chosen: dict[str, int] = {}
    for c in sol.classes:
        p = c.params or {}
        key = f"{c.action}{' low-rank' if 'rank' in p else ''} {p.get('bits', 16)}b"
        chosen[key] = chosen.get(key, 0) + len(c.members)
    out = {"method": f"colorshare {bpw:g}bpw", "bytes": int(sol.memory), "status": sol.status.value,
           "gap": sol.gap, "solve_seconds": sol.wall_time, "layers": chosen, **_measure(case, shared)}
    del shared
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--bpw", type=float, nargs="*", default=[8.0, 4.5, 3.5, 3.0, 2.5])
    p.add_argument("--chunks", type=int, default=16, help="256-token chunks of held-out text")
    p.add_argument("--curvature", default="probed")
    p.add_argument("--time-limit", type=float, default=300.0)
    p.add_argument("--out", default="benchmarks/results/bytes")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import importlib.util

    from colorshare.bench.report import machine_info
    from colorshare.corpus import package_text
    from colorshare.torch import build_graph
    from colorshare.torch.models import MODEL_CASES
    from colorshare.torch.quant import BITS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text, used = package_text()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        held = Path(tmp) / "packages.txt"
        held.write_text(text)
        case = MODEL_CASES[args.model](evaluation_text=held, evaluation=args.chunks)
        same = MODEL_CASES[args.model](evaluation=args.chunks)  # the odd pydoc topics
    graph = build_graph(case.model, case.batches, case.targets, args.curvature, bits=BITS)
    build_s = time.perf_counter() - t0
    weights = graph.dense_parameters
    rows = [{"method": "dense bf16", "bytes": 2 * weights, **_measure(case, case.model)}]
    print(rows[-1], flush=True)
    for method, widths in (("rtn", (8, 4, 3, 2)), ("gptq", (4, 3, 2)), ("hqq", (4, 3))):
        if method == "hqq" and importlib.util.find_spec("hqq") is None:
            continue
        for b in widths:
            rows.append(uniform(case, graph, method, b))
            print(rows[-1], flush=True)
    for bpw in args.bpw:
        rows.append(plan(case, graph, bpw, args.time_limit))
        print(rows[-1], flush=True)
    dense_same = same.metrics(same.model)
    for r in rows:
        if r.get("bytes"):
            r["bits_per_weight"] = 8 * r["bytes"] / weights
            r["bytes_vs_bf16"] = r["bytes"] / (2 * weights)
    res = {"machine": machine_info(), "model": args.model, "curvature": args.curvature,
           "calibration": case.info.get("calibration"), "evaluation": case.info.get("evaluation"),
           "evaluation_sources": used, "dense_same_source": dense_same, "graph_build_seconds": build_s,
           "graph_steps": graph.preparation, "weights": weights, "rows": rows}
    (out / "bytes.json").write_text(json.dumps(res, indent=2, default=str))
    write(out, res)
    return 0


def write(out: Path, res: dict[str, Any]) -> None:
    """``bytes.md`` and ``bytes.png`` of a run."""
    rows = [r for r in res["rows"] if r.get("bytes")]
    lines = [f"# {res['model']}: perplexity at equal bytes", "",
             f"Machine: {res['machine']}. One run. Calibration: {res['calibration']}. Evaluation (token "
             f"perplexity): {res['evaluation']} of installed packages' descriptions (prose lines), a source the "
             "calibration never saw; the dense model on the calibration's own source (odd pydoc topics): "
             f"{res['dense_same_source']['perplexity']:.2f}. Bytes: the {res['weights']:,} weights of the targeted "
             "layers, scales and zero points included.", "",
             "| method | bytes vs bf16 | bits per weight | perplexity |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["bytes"]):
        lines.append(f"| {r['method']} | {r['bytes_vs_bf16']:.3f} | {r['bits_per_weight']:.2f} | "
                     f"{r['perplexity']:.2f} |")
    plans = [r for r in rows if r["method"].startswith("colorshare")]
    if plans:
        lines += ["", "What each plan chose (layers per option):", ""]
        lines += [f"- {r['method']}: " + ", ".join(f"{k} x{v}" for k, v in sorted(r["layers"].items()))
                  + f" ({r['status']}, solve {r['solve_seconds']:.0f} s)" for r in plans]
    (out / "bytes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    families: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        fam = r["method"].split(" ")[0]
        families.setdefault(fam, []).append((r["bits_per_weight"], r["perplexity"]))
    for fam, pts in families.items():
        pts.sort()
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=fam)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight of the targeted layers (scales included)")
    ax.set_ylabel("perplexity on held-out text (tokens)")
    ax.set_title(f"{res['model']}: quality at equal bytes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bytes.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
