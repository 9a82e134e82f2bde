"""Calibration text: how much, and from how many sources, the statistics need (unhealed plans, one run).

    python -m benchmarks.calibration [--chunks 32 128] [--keeps 0.8 0.5] [--eval-chunks 16] [--out DIR]

For each calibration set, SmolLM2's graph with ``colorshare compress``'s defaults (:mod:`colorshare.defaults`),
one solve per budget (HiGHS) and the plan applied, unhealed: its token perplexity on ``--eval-chunks`` x 256
tokens of installed packages' descriptions (:func:`colorshare.corpus.package_text`), a source no calibration
set comes from. The sets: the older default (the first 32 chunks of the even ``pydoc_data.topics`` topics)
and, for each of ``--chunks``, the built-in default's way (:func:`colorshare.torch.models.calibration_tokens`:
the even topics and the standard library's docstrings alternately, spread over each source). The seconds of
the statistics (forward and backward passes over every chunk) and of the probes are each graph's own.

Writes ``calibration-smollm2-135m.md`` and ``.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from colorshare.bench.report import machine_line


def _rows(case: Any, label: str, calib: Any, keeps: list[float]) -> dict[str, Any]:
    from colorshare import defaults, solve
    from colorshare.torch import apply_coloring, build_graph

    batches = [{"input_ids": calib[i:i + 4]} for i in range(0, len(calib), 4)]
    t0 = time.perf_counter()
    graph = build_graph(case.model, batches, case.targets, defaults.CURVATURE, progress=False)
    row: dict[str, Any] = {"calibration": label, "tokens": int(calib.numel()),
                           "graph_seconds": time.perf_counter() - t0,
                           "preparation": {k: float(v) for k, v in graph.preparation.items()}}
    for keep in keeps:
        sol = solve(graph, keep * graph.dense_size, backend="highs", time_limit=300)
        plan = apply_coloring(case.model, graph, sol)
        row[f"keep {keep:.0%}"] = case.metrics(plan)["perplexity"]
        del plan
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, nargs="*", default=[32, 128])
    p.add_argument("--keeps", type=float, nargs="*", default=[0.8, 0.5])
    p.add_argument("--eval-chunks", type=int, default=16, help="256-token chunks of held-out text")
    p.add_argument("--out", default="benchmarks/results/calibration")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    from colorshare.bench.report import machine_info
    from colorshare.corpus import package_text
    from colorshare.torch.models import calibration_tokens, smollm2_135m, topic_tokens

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        held = Path(tmp) / "packages.txt"
        held.write_text(package_text()[0])
        case = smollm2_135m(evaluation_text=held, evaluation=args.eval_chunks, calibration=1)
    tok = case.tokenizer
    rows = [_rows(case, "32 x 256, the even pydoc topics (the older default)", topic_tokens(tok, 0, 32, 256),
                  args.keeps)]
    for n in args.chunks:
        rows.append(_rows(case, f"{n} x 256, the even pydoc topics and the standard library's docstrings",
                          calibration_tokens(tok, n, 256), args.keeps))
    res: dict[str, Any] = {"machine": machine_info(), "model": "smollm2-135m",
                           "dense": case.metrics(case.model)["perplexity"],
                           "evaluation": f"{args.eval_chunks} x 256 tokens of installed packages' descriptions",
                           "rows": rows}
    stem = out / "calibration-smollm2-135m"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str))
    keys = [f"keep {k:.0%}" for k in args.keeps]
    lines = ["# Calibration text and SmolLM2's unhealed plans", "",
             f"Machine: {machine_line(res['machine'])}, torch {res['machine'].get('torch')}. One run. Token "
             f"perplexity on {res['evaluation']} (a source no calibration set comes from); dense "
             f"{res['dense']:.2f}. Graph with compress's defaults; statistics = the forward and backward passes "
             "over every calibration chunk.", "",
             "| calibration | statistics s | probes s | " + " | ".join(keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for r in rows:
        prep = r["preparation"]
        lines.append(f"| {r['calibration']} | {prep.get('statistics', 0):.0f} | {prep.get('probes', 0):.0f} | "
                     + " | ".join(f"{r[k]:.1f}" for k in keys) + " |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
