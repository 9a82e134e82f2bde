"""colorshare's plans against the quantizers at equal bytes, in one run: perplexity on held-out text from another
source than the calibration text, against bits per weight of the targeted layers (scales and zero points counted).

    python -m benchmarks.bytes [--model smollm2-135m] [--bpw 8 4.5 3.5 3 2.5] [--chunks 16] [--out DIR]

Calibration: the model case's own text (SmolLM2: 32 x 256 tokens of the even pydoc topics). Evaluation: ``--chunks``
x 256 tokens of the prose of installed packages' descriptions (:func:`colorshare.corpus.package_text`), and the
odd pydoc topics (the calibration's own source) for reference. Every method is measured on the same text, its
weights' products exact in float32 (:func:`colorshare.torch.quant.exact_products`):

- dense (16 bits a weight);
- round-to-nearest: 8 bits one scale per row; 4 / 3 / 2 bits in groups of 64 with a scale and a zero point;
- GPTQ 4 / 3 / 2 bits in groups of 64 (colorshare's own, :func:`colorshare.torch.quant.gptq`, under the same
  input covariances as the plans: static groups and act-order, as llm-compressor's defaults, layer by layer on
  the dense model's statistics);
- HQQ 4 / 3 bits in groups of 64 (calibration-free) where the ``hqq`` package is installed;
- GPTQ 4 / 3 bits from a maintained library (llm-compressor) with ``--peer-python PEER/bin/python``: the
  dense model, the calibration tokens and the evaluation tokens are written to a scratch folder and
  ``benchmarks/peer_llmcompressor.py`` runs in that environment (llm-compressor pins another transformers);
- colorshare at each ``--bpw``: one graph built with every bit-width (``build_graph(..., bits=BITS)``), solved
  by HiGHS, applied and measured.

For MiniLM (``--model minilm-l6``) the metric is the mean cosine of held-out sentences' embeddings to the dense
model's (its plot: ``1 - cosine``). Writes ``<model>.md``, ``<model>.json`` and ``<model>.png`` (the metric against
bits per weight, log axes) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from colorshare.bench.plots import pyplot
from colorshare.bench.report import machine_line


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


def plan(case: Any, graph: Any, bpw: float, time_limit: float, backends: list[str]) -> dict[str, Any]:
    """colorshare's plan at ``bpw`` bits per weight: its perplexity, bytes and what it chose (HiGHS's solution),
    and every exact backend's status, gap and seconds on the same graph and budget."""
    from colorshare import solve
    from colorshare.torch import apply_coloring

    budget = bpw / 8 * graph.dense_parameters
    sol = solve(graph, budget, backend="highs", time_limit=time_limit)
    proofs = {"highs": {"status": sol.status.value, "gap": sol.gap, "seconds": sol.wall_time,
                        "objective": sol.objective}}
    for b in backends:
        if b != "highs":
            try:
                other = solve(graph, budget, backend=b, time_limit=time_limit)
            except Exception as e:  # a backend's failure is a result of the run, not its end
                proofs[b] = {"status": f"error: {e}"[:200]}
                continue
            proofs[b] = {"status": other.status.value, "gap": other.gap, "seconds": other.wall_time,
                         "objective": other.objective}
            print(f"{bpw:g} bpw {b}: {proofs[b]}", flush=True)
    if sol.colors is None:
        return {"method": f"colorshare {bpw:g}bpw", "bytes": None, "status": sol.status.value, "backends": proofs}
    assert sol.memory is not None
    shared = apply_coloring(case.model, graph, sol)
    chosen: dict[str, int] = {}
    for c in sol.classes:
        p = c.params or {}
        key = f"{c.action}{' low-rank' if 'rank' in p else ''} {p.get('bits', 16)}b"
        chosen[key] = chosen.get(key, 0) + len(c.members)
    out = {"method": f"colorshare {bpw:g}bpw", "bytes": int(sol.memory), "status": sol.status.value,
           "gap": sol.gap, "solve_seconds": sol.wall_time, "layers": chosen, "backends": proofs,
           **_measure(case, shared)}
    del shared
    return out


def peer(case: Any, held: Path, chunks: int, python: str, tmp: Path) -> Callable[[], list[dict[str, Any]]]:
    """llm-compressor's GPTQ rows: the dense model, calibration and evaluation tokens handed to
    ``peer_llmcompressor.py`` under ``python`` (its own environment), started in the background; the returned
    function waits for its rows."""
    import subprocess

    import torch
    from safetensors.torch import save_model

    from colorshare.torch.models import text_tokens

    folder = tmp / "dense"  # written by hand: transformers will not re-save a model it read from GGUF
    folder.mkdir()
    save_model(case.model, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = case.model.config.to_dict()
    config.pop("quantization_config", None)  # the GGUF reading's record, not a property of these float weights
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    case.tokenizer.save_pretrained(folder)
    torch.save(torch.cat([b["input_ids"] for b in case.batches]).cpu(), tmp / "calib.pt")
    torch.save(text_tokens(case.tokenizer, held, chunks, 256), tmp / "held.pt")
    script = Path(__file__).with_name("peer_llmcompressor.py")
    cmd = [python, str(script), "--model", str(folder), "--calibration", str(tmp / "calib.pt"),
           "--evaluation", str(tmp / "held.pt"), "--bits", "4", "3", "--out", str(tmp / "peer.json")]
    log = open(tmp / "peer.log", "w")
    run = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)

    def rows() -> list[dict[str, Any]]:
        code = run.wait()
        log.close()
        if code != 0:
            print(f"llm-compressor peer failed (exit {code}):\n{(tmp / 'peer.log').read_text()[-3000:]}", flush=True)
            return []
        return list(json.loads((tmp / "peer.json").read_text()))

    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--bpw", type=float, nargs="*", default=[8.0, 4.5, 3.5, 3.0, 2.5])
    p.add_argument("--chunks", type=int, default=16, help="256-token chunks of held-out text")
    p.add_argument("--curvature", default="probed")
    p.add_argument("--time-limit", type=float, default=300.0)
    p.add_argument("--out", default="benchmarks/results/bytes")
    p.add_argument("--backends", nargs="*", default=["highs", "cpsat", "pulp"],
                   help="exact backends whose status and gap are reported at each budget (the plan is HiGHS's)")
    p.add_argument("--peer-python", default=None,
                   help="python of an environment with llm-compressor: adds its GPTQ int4 / int3 rows")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import importlib.util

    from colorshare.bench.report import machine_info
    from colorshare.corpus import package_text
    from colorshare.solvers.registry import get_backend
    from colorshare.torch import build_graph
    from colorshare.torch.models import MODEL_CASES
    from colorshare.torch.quant import BITS

    for b in args.backends:  # a misspelt backend fails here, not after the graph is built
        get_backend(b)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    peers: Callable[[], list[dict[str, Any]]] = list
    lm = "smollm2" in args.model
    used: list[str] = []
    tmp = tempfile.TemporaryDirectory()
    if lm:  # held-out text from another source than the calibration
        text, used = package_text()
        held = Path(tmp.name) / "packages.txt"
        held.write_text(text)
        case = MODEL_CASES[args.model](evaluation_text=held, evaluation=args.chunks)
        if args.peer_python:  # runs in the background while the graph is built
            peers = peer(case, held, args.chunks, args.peer_python, Path(tmp.name))
    else:  # MiniLM: its held-out sentences (the standard library's docstrings not calibrated on)
        case = MODEL_CASES[args.model]()
    graph = build_graph(case.model, case.batches, case.targets, args.curvature, bits=BITS)
    build_s = time.perf_counter() - t0
    weights = graph.dense_parameters
    rows: list[dict[str, Any]] = [{"method": "dense bf16", "bytes": 2 * weights, **_measure(case, case.model)}]
    print(rows[-1], flush=True)
    for method, widths in (("rtn", (8, 4, 3, 2)), ("gptq", (4, 3, 2)), ("hqq", (4, 3))):
        if method == "hqq" and importlib.util.find_spec("hqq") is None:
            continue
        for b in widths:
            rows.append(uniform(case, graph, method, b))
            print(rows[-1], flush=True)
    rows += peers()
    tmp.cleanup()
    for bpw in args.bpw:
        rows.append(plan(case, graph, bpw, args.time_limit, args.backends))
        print(rows[-1], flush=True)
    if lm:  # the dense model on the calibration's own source (the odd pydoc topics), for reference
        same = MODEL_CASES[args.model](evaluation=args.chunks)
        same_source = same.metrics(same.model)
    for r in rows:
        if r.get("bytes"):
            r["bits_per_weight"] = 8 * r["bytes"] / weights
            r["bytes_vs_bf16"] = r["bytes"] / (2 * weights)
    metric = next(iter(case.higher))
    res = {"machine": machine_info(), "model": args.model, "curvature": args.curvature, "metric": metric,
           "higher_is_better": case.higher[metric], "calibration": case.info.get("calibration"),
           "evaluation": case.info.get("evaluation", f"{case.info.get('held_out')} held-out sentences"),
           "evaluation_sources": used, "dense_same_source": same_source if lm else None,
           "graph_build_seconds": build_s, "graph_steps": graph.preparation, "weights": weights, "rows": rows}
    (out / f"{args.model}.json").write_text(json.dumps(res, indent=2, default=str))
    write(out, res)
    return 0


def _calibration(text: Any) -> str:
    """The case's calibration as a phrase (MiniLM's is a count of sentences)."""
    return f"{text} sentences" if str(text).isdigit() else str(text)


def write(out: Path, res: dict[str, Any]) -> None:
    """``<model>.md`` and ``<model>.png`` of a run."""
    rows = [r for r in res["rows"] if r.get("bytes")]
    metric, model = res.get("metric", "perplexity"), res["model"]
    lm = metric == "perplexity"
    if lm:
        about = (f"Evaluation (token perplexity): {res['evaluation'].split(' (')[0]} of installed packages' "
                 "descriptions (prose lines), a source the calibration never saw; the dense model on the "
                 f"calibration's own source (odd pydoc topics): {res['dense_same_source']['perplexity']:.2f}.")
    else:
        about = f"Evaluation: {metric} to the dense model's embeddings on {res['evaluation']}."
    lines = [f"# {model}: {metric} at equal bytes", "",
             f"Machine: {machine_line(res['machine'])}, torch {res['machine'].get('torch')}. One run. "
             f"Calibration: {_calibration(res['calibration'])}. {about} Bytes: the {res['weights']:,} weights of the "
             "targeted layers, scales and zero points included.", "",
             f"| method | bytes vs bf16 | bits per weight | {metric} |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["bytes"]):
        lines.append(f"| {r['method']} | {r['bytes_vs_bf16']:.3f} | {r['bits_per_weight']:.2f} | "
                     f"{r[metric]:.{2 if lm else 4}f} |")
    plans = [r for r in rows if r["method"].startswith("colorshare")]
    if plans:
        lines += ["", "What each plan chose (layers per option):", ""]
        lines += [f"- {r['method']}: " + ", ".join(f"{k} x{v}" for k, v in sorted(r["layers"].items()))
                  + f" ({r['status']}, solve {r['solve_seconds']:.0f} s)" for r in plans]
    proved = [r for r in res["rows"] if r.get("backends")]
    if proved:
        names = list(proved[0]["backends"])
        lines += ["", "Every exact backend on the same graph and budget (status, gap, seconds; the default time "
                  "limit):", "", "| budget | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for r in proved:
            cells = []
            for b in names:
                x = r["backends"].get(b, {})
                gap = "-" if x.get("gap") is None else f"{x['gap']:.1e}"
                cells.append(f"{x.get('status', '-')}, gap {gap}, {x.get('seconds', 0):.1f} s")
            lines.append(f"| {r['method'].split(' ', 1)[1]} | " + " | ".join(cells) + " |")
    (out / f"{model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    families: dict[str, list[tuple[float, float]]] = {}
    for r in rows:  # 1 - cosine for an encoder: both axes span decades
        if not r["method"].startswith("dense"):
            families.setdefault(r["method"].split(" ")[0], []).append(
                (r["bits_per_weight"], r[metric] if lm else 1.0 - r[metric]))
    for fam, pts in families.items():
        pts.sort()
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=fam)
    dense = next((r for r in rows if r["method"].startswith("dense")), None)
    if lm and dense is not None:
        ax.axhline(dense[metric], color="k", linestyle="--", label="dense (16 bits)")
        ax.set_ylim(0.9 * dense[metric], 20 * dense[metric])  # int2's 1e5-1e6 would flatten the rest: off the top
    ax.set_xscale("log", base=2)
    ticks = sorted({round(r["bits_per_weight"] * 2) / 2 for r in rows if not r["method"].startswith("dense")})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight of the targeted layers (scales included)")
    ax.set_ylabel("perplexity on held-out text (tokens)" if lm else f"1 - {metric} on held-out sentences")
    ax.set_title(f"{model}: quality at equal bytes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{model}.png", dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
