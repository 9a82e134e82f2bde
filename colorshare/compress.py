"""``colorshare compress``: a model in, its compressed copy and a report out.

    colorshare compress smollm2-135m --budget 50% --out DIR

MODEL is a built-in name (:data:`colorshare.torch.models.MODEL_CASES`) or a local transformers causal-LM
folder or GGUF file. For a transformers model DIR is a model folder that loads by itself
(:func:`colorshare.torch.load_compressed`): ``config.json``, the generation config, the tokenizer's files and
``model.safetensors`` (each shared tensor once, the sharing plan in its metadata) in the source's dtype or
``--dtype``; for other models ``DIR/model.safetensors`` (:func:`~colorshare.torch.load_shared`). Both with
``DIR/report.json`` and ``DIR/report.md``. Budget: stored parameters of the targeted layers, as a
percentage of their dense size ("50%") or a number of parameters.
"""

from __future__ import annotations

import copy
import json
import math
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["compress", "resolve_model", "family_table", "PROBE_TOKENS"]

PROBE_TOKENS = 256
"""Tokens each probe and each measured class runs on by default (one 256-token sequence): on SmolLM2 rho at equal
budget 0.958 against 0.961 on 2048 tokens (benchmarks/results/probe-tokens), an eighth of the cost."""


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def _silent(*_: Any, **__: Any) -> None:
    return None


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def resolve_model(model: str, device: str = "cpu", calibration: str | Path | None = None,
                  evaluation: str | Path | None = None) -> Any:
    """A :class:`~colorshare.torch.models.ModelCase` for a built-in name or a local causal-LM folder / GGUF
    file; ``calibration`` / ``evaluation``: plain-text files to calibrate and measure perplexity on (causal LMs
    only; default: the standard library's pydoc topics, even / odd). ValueError naming the problem for an
    unknown name, an unreadable path or text files given for a model that is not a causal LM."""
    import inspect

    from .torch.models import MODEL_CASES, causal_lm_case, load_causal_lm

    text = {"calibration_text": calibration, "evaluation_text": evaluation}
    if model in MODEL_CASES:
        make = MODEL_CASES[model]
        if "calibration_text" in inspect.signature(make).parameters:  # a causal LM
            return make(device=device, **text)
        if calibration or evaluation:
            raise ValueError(f"--calibration / --evaluation apply to causal LMs; {model!r} is not one")
        return make(device=device)
    p = Path(model)
    if not p.exists():
        raise ValueError(f"unknown model {model!r}: not a built-in model ({', '.join(MODEL_CASES)}) "
                         "and no such file or folder")
    if p.is_file() and p.suffix != ".gguf":
        raise ValueError(f"cannot read {model!r}: a model file must be a GGUF file (*.gguf), or give a "
                         "transformers model folder")
    if p.is_dir() and not (p / "config.json").is_file():
        raise ValueError(f"cannot read {model!r}: the folder has no config.json (not a transformers model)")
    try:
        lm, tok = load_causal_lm(str(p), device)
    except Exception as exc:  # noqa: BLE001 - whatever transformers / gguf raise, name the file
        raise ValueError(f"cannot read {model!r} as a causal language model: {type(exc).__name__}: {exc}") from None
    from .torch.folder import source_dtype

    return causal_lm_case(p.name, lm, tok, device=device, info={"source": str(p)}, source_dtype=source_dtype(p),
                          **text)


def _tokens(batches: Any) -> int | None:
    """Tokens in transformers batches (their ``input_ids``), None for other batches or none."""
    if not batches or not all(isinstance(b, dict) and hasattr(b.get("input_ids"), "numel") for b in batches):
        return None
    return int(sum(b["input_ids"].numel() for b in batches))


def _layer_index(name: str) -> str:
    nums = re.findall(r"\.(\d+)\.", "." + name + ".")
    return nums[0] if nums else name


def family_table(graph: Any, solution: Any) -> list[dict[str, Any]]:
    """Per family: its classes as (layer indices, action, rank), and stored / dense parameters of those
    classes; classes across families (a shared input-side factor) in a last row of their own."""
    rows = []
    across = [c for c in solution.classes if len({graph.families[i] for i in c.members}) > 1]
    for fam, members in graph.family_members.items():
        mset = set(members)
        classes = [c for c in solution.classes if c.members[0] in mset and c not in across]
        rows.append({
            "family": fam,
            "layers": sum(len(c.members) for c in classes),  # its layers not in a shared-input class
            "dense": int(sum(int(graph.sizes[i]) for c in classes for i in c.members)),
            "stored": int(sum(c.memory for c in classes)),
            "classes": [{"layers": [_layer_index(graph.module_names[i]) for i in c.members], "action": c.action,
                         "rank": (c.params or {}).get("rank"), "parameters": c.memory} for c in classes],
        })
    if across:  # classes of layers fed one input (q/k/v, gate/up): a shared input-side factor
        rows.append({
            "family": "shared inputs (across families)",
            "layers": sum(len(c.members) for c in across),
            "dense": int(sum(int(graph.sizes[i]) for c in across for i in c.members)),
            "stored": int(sum(c.memory for c in across)),
            "classes": [{"layers": [graph.module_names[i] for i in c.members], "action": c.action,
                         "rank": (c.params or {}).get("rank"), "parameters": c.memory} for c in across],
        })
    return rows


def _markdown(report: dict[str, Any]) -> str:
    s = report["solution"]
    out = [f"# colorshare compress: {report['model']}", "",
           f"- budget: {report['budget_parameters']:,} parameters ({report['budget_fraction']:.1%} of "
           f"{report['dense_parameters']:,} in {report['layers']} layers)",
           f"- stored after sharing: {report['stored_parameters']:,} ({report['stored_fraction']:.1%}); "
           f"whole model {report['model_parameters_before']:,} -> {report['model_parameters_after']:,}",
           f"- solver: {s['backend']}, status {s['status']}, objective {s['objective']:.6g}, bound "
           f"{'-' if s['bound'] is None else format(s['bound'], '.6g')}, gap "
           f"{'-' if s['gap'] is None else format(s['gap'], '.3g')} over {s.get('space', 'every class')}; "
           f"{s['restricted'] or 'full column set'}",
           f"- curvature: {report['curvature']}"
           + (f" (probes and measured classes on {report['probe_tokens']:,} tokens)"
              if report.get("probe_tokens") else "")
           + f", trust region {report['trust_region']}"]
    out += [f"- {k}: {v}" for k, v in report.get("case_info", {}).items() if k in ("calibration", "evaluation")]
    skipped = report.get("left_out") or {}
    out += [f"- linear layers left out: {len(skipped)}" + (": " + "; ".join(f"`{n}` ({why})" for n, why in
                                                                         list(skipped.items())[:8]) if skipped else "")
            + (f"; and {len(skipped) - 8} more" if len(skipped) > 8 else "")]
    out += [""]
    out += ["| metric | before | after |", "|---|---|---|"]
    for k, v in report["metric_before"].items():
        out.append(f"| {k} | {v:.4f} | {report['metric_after'][k]:.4f} |")
    out += ["", "| family | layers | stored / dense | classes (layers: action rank) |", "|---|---|---|---|"]
    for row in report["families"]:
        cls = "; ".join(f"{'+'.join(c['layers'])}: {c['action']}{'' if c['rank'] is None else ' ' + str(c['rank'])}"
                        for c in row["classes"])
        frac = row['stored'] / row['dense'] if row['dense'] else 0.0
        out.append(f"| {row['family']} | {row['layers']} | {frac:.1%} | {cls} |")
    files = report.get("files_bytes") or {}
    if files:
        sizes = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in files.items())
        how = ("colorshare.torch.load_compressed(DIR)" if report.get("folder")
               else "colorshare.torch.load_shared(FILE, fresh_model)")
        out += ["", f"written ({report.get('dtype')}): {sizes}; load with `{how}`"]
        if report.get("metric_after_reload"):
            out.append("reloaded from the written files: " + ", ".join(
                f"{k} {v:.4f}" for k, v in report["metric_after_reload"].items()))
    out += ["", "| step | seconds |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in report["seconds"].items()]
    out += ["", f"peak memory (resident): {report['peak_memory_gb']:.2f} GB"]
    return "\n".join(out) + "\n"


def compress(model: str, budget: str, out: str | Path, curvature: str | None = None, backend: str = "highs",
             time_limit: float = 300.0, device: str = "cpu", seed: int = 0, verify: bool = True,
             echo: Any = print, max_group_size: int | None | str = "auto", measure_rounds: int = 4,
             calibration: str | Path | None = None, evaluation: str | Path | None = None,
             dtype: str = "auto", cross_layer: bool = False, probe_tokens: int | None = PROBE_TOKENS) -> dict[str, Any]:
    """Compress ``model`` to ``budget`` and write the model and report into ``out``; returns the report.
    ``max_group_size``: the largest sharing class (``build_graph``'s; "auto": 2 with shared bases).
    ``cross_layer``: let layers of one family (same role, different blocks) share; by default only the input-side
    factors of layers fed one input do (``build_graph``'s ``cross_layer``): the solve is then proven in time
    linear in the layers, without the pair statistics that cross-layer classes need (quadratic in the depth).
    ``probe_tokens``: tokens each probe (and each measured class) runs on, whole sequences of the first
    calibration batch (``build_graph``'s; None: its first 2 batches whole; default :data:`PROBE_TOKENS`).
    ``measure_rounds``: with the probed surrogate, solve at most this many times, pricing the shared classes of
    each answer by measurement (:func:`colorshare.torch.measure.solve_measured`); 0 or 1: the surrogate only.
    ``calibration`` / ``evaluation``: plain-text files (causal LMs; the report states their token counts).
    ``dtype``: of the written parameters, ``auto`` (the source's: a GGUF's quantized weights give bfloat16),
    ``float32``, ``bfloat16`` or ``float16``; ``verify`` reloads the written model (a transformers model from
    its folder alone) and measures it again. Launched by ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1),
    the statistics run data-parallel over the N processes (:mod:`colorshare.torch.distributed`); rank 0 then
    solves, writes and returns the report, the other ranks return ``{"rank": r, "processes": N}``."""
    from . import solve
    from .formulations.budget import parse_budget
    from .torch import apply_coloring, build_graph, load_compressed, load_shared, save_compressed, save_shared
    from .torch import stored_parameters
    from .torch.curvature import DEFAULT_CURVATURE
    from .torch.folder import DTYPES
    from .torch.graph import DEFAULT_TRUST_REGION
    from .torch.memory import release

    curvature = curvature or DEFAULT_CURVATURE
    if not parse_budget(budget, 1) > 0:  # fail before loading anything: a number or a percentage, > 0
        raise ValueError(f"budget {budget!r} must be > 0")
    if not (isinstance(time_limit, (int, float)) and time_limit > 0):
        raise ValueError(f"--time-limit must be > 0 seconds, got {time_limit!r}")
    if dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(DTYPES)}")
    out = Path(out)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    for label, f in (("--calibration", calibration), ("--evaluation", evaluation)):
        if f is not None and not Path(f).is_file():  # fail before loading anything
            raise ValueError(f"{label} file {str(f)!r} does not exist")
    from .torch import distributed as dist

    if device == "auto" and dist.launched_size() > 1:
        raise ValueError("--device auto (one model spread over devices) and torchrun (one model per process) do "
                         "not combine: give each process its device (--device cuda) or run one process")
    rank, processes = dist.init_from_env(device)  # under torchrun: data-parallel statistics, rank 0 does the rest
    if processes > 1 and str(device).startswith("cuda"):
        import torch

        device = f"cuda:{torch.cuda.current_device()}"
    main = rank == 0
    if not main:
        echo = _silent
    case = resolve_model(model, device, calibration, evaluation)
    seconds["load"] = time.perf_counter() - t
    t = time.perf_counter()
    before = case.metrics(case.model) if main else {}
    seconds["evaluate dense"] = time.perf_counter() - t
    echo(f"{case.name}: dense " + ", ".join(f"{k} {v:.4f}" for k, v in before.items()))
    for k in ("calibration", "evaluation"):
        if k in case.info:
            echo(f"{k}: {case.info[k]}")
    t = time.perf_counter()
    try:
        graph = build_graph(case.model, case.batches, case.targets, curvature, seed=seed,
                            max_group_size=max_group_size, cross_layer=cross_layer, probe_tokens=probe_tokens,
                            progress=main)
    finally:
        dist.close()  # the statistics were the collective part; rank 0 solves and writes alone
    release()  # what the statistics pass and the probes built and dropped (activations, batch covariances)
    seconds["statistics"] = time.perf_counter() - t
    if not main:
        return {"rank": rank, "processes": processes}
    if processes > 1:
        echo(f"statistics: data-parallel over {processes} processes ({seconds['statistics']:.0f} s)")
    b = parse_budget(budget, graph.dense_size)
    from .torch.targets import left_out

    skipped = left_out(case.model, graph.module_names)
    echo(f"layers: {graph.n} in the graph ({graph.dense_size:,} parameters); left out: "
         + ("; ".join(f"{n} ({why})" for n, why in list(skipped.items())[:6]) if skipped else "none")
         + (f"; and {len(skipped) - 6} more" if len(skipped) > 6 else ""))
    if cross_layer and graph.max_group_size is not None and graph.max_group_size <= 2:
        t = time.perf_counter()
        graph.pair_statistics()  # what proves the solve over classes of two layers (see build_graph)
        seconds["pair statistics"] = time.perf_counter() - t
    t = time.perf_counter()
    if measure_rounds > 1 and graph.probe_ratios is not None:
        from .torch.measure import solve_measured

        sol = solve_measured(graph, case.model, graph.probe_set, b, rounds=measure_rounds, backend=backend,
                             time_limit=time_limit, seed=seed)
        m = sol.facts["measured"]
        echo(f"measured: {len(m['classes'])} shared class(es) in {m['rounds']} solve(s), {m['seconds']:.1f} s of "
             f"measurement; {m['stopped']}")
    else:
        sol = solve(graph, b, backend=backend, time_limit=time_limit, seed=seed)
    release()
    seconds["solve"] = time.perf_counter() - t
    space = ("classes of any size" if graph.max_group_size is None
             else f"classes of at most {graph.max_group_size} layer{'s' if graph.max_group_size > 1 else ''}")
    if not cross_layer:
        space = "per-layer options and shared input factors within blocks (no cross-layer classes)"
    gen = sol.facts.get("column_generation") or {}
    echo(f"solve: {sol.status.value}, objective {_fmt(sol.objective)}, bound {_fmt(sol.bound)}, gap "
         f"{'-' if sol.gap is None else format(sol.gap, '.2%')} over {space} ({seconds['solve']:.0f} s"
         + (f"; {gen['refined_pairs']} pair statistics" if gen.get("refined_pairs") else "") + ")")
    if sol.colors is None:
        floor = sum(min(o.memory for o in graph.options((i,))) for i in range(graph.n))
        raise ValueError(f"no coloring fits the budget {b:,.0f} parameters ({b / graph.dense_size:.1%}); status "
                         f"{sol.status.value}. Per-layer low rank at the trust region's limit needs {floor:,} "
                         f"({floor / graph.dense_size:.1%}); sharing may go a little lower")
    folder = hasattr(getattr(case.model, "config", None), "save_pretrained")  # a transformers model
    stored_before = stored_parameters(case.model)
    t = time.perf_counter()
    # a transformers model is changed in place (it is reloaded from its folder, not from the dense model): no
    # second copy of the model in memory; the graph keeps the dense weights its classes are computed from
    shared = apply_coloring(case.model, graph, sol, inplace=folder)
    release()
    seconds["apply"] = time.perf_counter() - t
    stored_after = stored_parameters(shared)
    assert stored_after == stored_before - graph.dense_size + sol.memory, "stored parameters differ from the plan"
    t = time.perf_counter()
    after = case.metrics(shared)
    seconds["evaluate compressed"] = time.perf_counter() - t
    echo(f"{case.name}: compressed to {sol.memory / graph.dense_size:.1%} of {graph.dense_size:,} parameters: "
         + ", ".join(f"{k} {before[k]:.4f} -> {v:.4f}" for k, v in after.items()))
    out.mkdir(parents=True, exist_ok=True)
    written = case.source_dtype if dtype == "auto" else dtype
    t = time.perf_counter()
    if folder:
        save_compressed(shared, out, case.tokenizer, dtype=written)
    else:
        save_shared(shared, out / "model.safetensors", dtype=DTYPES[written])
    seconds["save"] = time.perf_counter() - t
    files = {f.name: f.stat().st_size for f in sorted(out.iterdir()) if f.is_file() and not f.name.startswith("report")}
    echo(f"wrote {out}: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in files.items()) + f" ({written})")
    reloaded = None
    if verify:
        t = time.perf_counter()
        if folder:  # from the folder alone: what a user gets
            from .torch.models import input_device

            loaded = load_compressed(out, device=input_device(case.model) if device == "auto" else device)
        else:
            loaded = load_shared(out / "model.safetensors", copy.deepcopy(case.model))
        reloaded = case.metrics(loaded)
        seconds["reload and evaluate"] = time.perf_counter() - t
        echo(f"reloaded ({written}): " + ", ".join(f"{k} {v:.4f}" for k, v in reloaded.items()))
        del loaded
    sd = sol.to_dict()
    report = {
        "model": case.name, "source": model, "curvature": curvature,
        "trust_region": getattr(graph, "trust_region", DEFAULT_TRUST_REGION),
        "layers": graph.n, "dense_parameters": graph.dense_size, "budget_parameters": int(math.floor(b)),
        "budget_fraction": b / graph.dense_size, "stored_parameters": int(sol.memory),
        "stored_fraction": sol.memory / graph.dense_size,
        "model_parameters_before": stored_before, "model_parameters_after": stored_after,
        "metric_before": before, "metric_after": after, "metric_after_reload": reloaded,
        "solution": {"backend": sol.backend, "status": sol.status.value, "objective": sol.objective,
                     "bound": sol.bound, "gap": sol.gap, "wall_time": sol.wall_time, "space": space,
                     "restricted": sol.facts.get("restricted"), "columns": sol.facts.get("columns"),
                     "measured": sol.facts.get("measured"),
                     "colors": sd.get("colors")},
        "probe_tokens": _tokens(getattr(graph, "probe_set", None)), "cross_layer": cross_layer,
        "families": family_table(graph, sol), "left_out": skipped, "seconds": seconds, "processes": processes,
        "peak_memory_gb": _peak_gb(),
        "file": str(out / "model.safetensors"), "dtype": written, "files_bytes": files,
        "folder": folder, "case_info": {k: str(v) for k, v in case.info.items()},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "report.md").write_text(_markdown(report))
    echo(_markdown(report))
    return report


def main_from_args(args: Any) -> int:
    """The CLI's ``compress`` subcommand."""
    try:
        mgs = args.max_group_size
        compress(args.model, args.budget, args.out, args.curvature, args.backend, args.time_limit, args.device,
                 args.seed, verify=not args.no_verify,
                 max_group_size="auto" if mgs is None else (None if mgs == 0 else mgs),
                 measure_rounds=args.measure_rounds, calibration=args.calibration, evaluation=args.evaluation,
                 dtype=args.dtype, cross_layer=args.cross_layer,
                 probe_tokens=None if args.probe_tokens == 0 else args.probe_tokens)
    except (ValueError, OSError) as exc:
        print(f"colorshare: error: {exc}", file=sys.stderr)
        return 2
    return 0
