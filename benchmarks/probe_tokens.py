"""How many tokens the probes need: the probed surrogate's fidelity against the tokens each probe runs.

    python -m benchmarks.probe_tokens [--model smollm2-135m] [--out benchmarks/results/probe-tokens]

Every layer's probe cut (:mod:`colorshare.torch.probe`) is measured once on the first 2 calibration batches
(8 sequences x 256 tokens), keeping the KL divergence of every position. A probe on fewer tokens is a subset
of those: the first ``s`` sequences, their first ``t`` positions (a causal LM's first ``t`` positions are
exactly a ``t``-token sequence's). For each subset the layers' ratios measured / predicted are put on the K-FAC
graph and the committed compression colorings of ``benchmarks/results/colorings.json`` priced by it; their
measured log-perplexity increases (committed beside them) give Spearman's rho at each budget, averaged: the
suite's "rho at equal budget". Also the ratios' spread against the full measurement, and K-FAC alone.
Writes ``<model>.md`` and ``<model>.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colorshare.bench.fidelity import price, spearman
from colorshare.torch import build_graph
from colorshare.torch.probe import cut_rank, position_kl, probe_cut
from colorshare.torch.replay import BlockReplay


def probe_kls(graph, modules, model, batches, fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray, float]:
    """Per layer: the probe's KL at every (sequence, position) of ``batches`` and its K-FAC prediction (the
    package's own probe cut, :func:`colorshare.torch.probe.probe_cut`)."""
    replay = BlockReplay(model, batches)
    refs = [torch.log_softmax(o.logits.float(), dim=-1) for o in replay.dense]
    kls, pred = [], []
    t = time.perf_counter()
    for i, name in enumerate(graph.module_names):
        with probe_cut(graph, i, modules[name].weight, cut_rank(graph, i, fraction)) as predicted:
            outs = replay.outputs(replay.start([name]))
            kls.append(torch.cat([position_kl(o.logits, r) for o, r in zip(outs, refs)]).numpy())
        pred.append(predicted)
    return np.stack(kls), np.array(pred), time.perf_counter() - t


def equal_budget_rho(graph, colorings: list[dict]) -> tuple[float, dict[str, float]]:
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for c in colorings:
        p = price(graph, [(tuple(m), a, mem) for m, a, mem in c["classes"]])
        if p is not None:
            by[c["name"].rsplit("@", 1)[1]].append((p, c["loss_increase"]))
    rhos = {k: spearman([a for a, _ in v], [b for _, b in v]) for k, v in by.items() if len(v) >= 4}
    return statistics.fmean(rhos.values()), rhos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--out", default="benchmarks/results/probe-tokens")
    ap.add_argument("--colorings", default="benchmarks/results/colorings.json")
    ap.add_argument("--price", nargs="*", default=["kfac", "8x256", "2x256", "4x64", "1x256"],
                    help="variants (SEQxTOKENS, or kfac) whose rho is computed (each prices every coloring: minutes)")
    ap.add_argument("--reuse", action="store_true", help="reuse the per-position KLs of an earlier run (.npz)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from colorshare.torch.models import MODEL_CASES
    from colorshare.torch.targets import select_modules

    case = MODEL_CASES[args.model]()
    colorings = json.loads(Path(args.colorings).read_text())[args.model]
    graph = build_graph(case.model, case.batches, case.targets, "kfac", progress=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / f"{args.model}-kl.npz"
    if args.reuse and saved.is_file():
        z = np.load(saved)
        kls, pred, seconds = z["kl"], z["predicted"], float(z["seconds"])
    else:
        modules = select_modules(case.model, case.targets)
        kls, pred, seconds = probe_kls(graph, modules, case.model, case.batches[:2])
        np.savez_compressed(saved, kl=kls.astype(np.float32), predicted=pred, seconds=seconds)
    base = [c.scale for c in graph.curvatures]
    n_seq, n_pos = kls.shape[1:]

    def rho_with(ratios: np.ndarray | None) -> tuple[float, dict[str, float]]:
        r = np.ones(graph.n) if ratios is None else np.array(ratios, dtype=float)
        bad = ~(np.isfinite(r) & (r > 0))  # a subset that measured or predicted no change: the median, as probes do
        r[bad] = float(np.median(r[~bad]))
        target = np.array(base) * r
        graph.rescale(target / np.array([c.scale for c in graph.curvatures]))  # from the scales set last
        return equal_budget_rho(graph, colorings)

    full = kls.reshape(graph.n, -1).mean(1) / pred
    rows: list[dict[str, Any]] = []
    if "kfac" in args.price:
        rows.append({"variant": "kfac (no probes)", "tokens": 0, **dict(zip(("rho", "per_budget"), rho_with(None)))})
    for s in (8, 4, 2, 1):
        for t in (256, 128, 64, 32):
            name = f"{s}x{t}"
            r = kls[:, :s, :t].reshape(graph.n, -1).mean(1) / pred
            sd = float(np.std(np.log(r / full)))
            row = {"variant": f"{s} seq x {t}", "tokens": s * t, "log_ratio_sd_vs_full": sd}
            if name in args.price:
                row["rho"], row["per_budget"] = rho_with(r)
            rows.append(row)
            print(row, flush=True)
    half = [kls[:, k * 4:(k + 1) * 4].reshape(graph.n, -1).mean(1) / pred for k in range(2)]
    res = {"model": args.model, "probe_seconds_full": seconds, "sequences": n_seq, "positions": n_pos,
           "halves_log_ratio_sd": float(np.std(np.log(half[0] / half[1]))), "rows": rows,
           "ratios_full": full.tolist()}
    (out / f"{args.model}.json").write_text(json.dumps(res, indent=2))
    lines = [f"# {args.model}: probed-surrogate fidelity against the tokens per probe", "",
             f"Probes measured once on {n_seq} sequences x {n_pos} tokens ({seconds:.0f} s for {graph.n} layers); "
             f"the two batches' ratios differ by a log-sd of {res['halves_log_ratio_sd']:.3f}. "
             f"{len(colorings)} committed colorings priced by each variant's graph.", "",
             "| probe tokens | tokens | rho at equal budget | log-sd of ratio vs full |", "|---|---|---|---|"]
    for r in rows:
        spread = r.get("log_ratio_sd_vs_full")
        rho = "-" if "rho" not in r else f"{r['rho']:.3f}"
        sd_text = "-" if spread is None else f"{spread:.3f}"
        lines.append(f"| {r['variant']} | {r['tokens']} | {rho} | {sd_text} |")
    (out / f"{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
