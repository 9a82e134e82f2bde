"""``colorshare compress``: a model in, its compressed copy and a report out, in five stages.

    colorshare compress smollm2-135m --budget 50% --out DIR

1. :func:`validate`: every option, the backend and the output folder, before anything is loaded;
2. :func:`plan` (after :func:`start`, torchrun's set-up, and :func:`resolve_model`, the load): measure the model
   dense, build its graph (statistics, probes and, with ``cross_layer``, pair statistics) and solve;
3. :func:`write`: apply the plan, measure the compressed model, write the folder;
4. :func:`verify`: reload the folder alone and measure it again;
5. :func:`report`: ``report.json`` and ``report.md``.

MODEL is a built-in name (:data:`colorshare.torch.models.MODEL_CASES`) or a local transformers causal-LM
folder or GGUF file. For a transformers model DIR is a model folder that loads by itself
(:func:`colorshare.torch.load_compressed`): ``config.json``, the generation config, the tokenizer's files and
``model.safetensors`` (each shared tensor once, the sharing plan in its metadata) in the source's dtype or
``--dtype``; for other models ``DIR/model.safetensors`` (:func:`~colorshare.torch.load_shared`). Budget:
stored parameters of the targeted layers, as a percentage of their dense size ("50%") or a number of
parameters.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import defaults
from .formulations.budget import parse_budget
from .report import family_table, markdown
from .staging import check_target, publish, staging_folder
from .timing import Steps, peak_rss_gib
from .validation import (
    NON_NEGATIVE_INT,
    NONE,
    POSITIVE_INT,
    OneOf,
    Real,
    check,
    check_flag,
    check_max_group_size,
    check_seed,
)

__all__ = ["compress", "resolve_model", "family_table", "CompressOptions", "validate", "start", "plan", "write",
           "verify", "report", "Plan", "Written", "DEFAULT_HEAL_STEPS"]

DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
DEFAULT_HEAL_STEPS = defaults.HEAL_STEPS
"""``--heal`` without a number."""


@dataclass(frozen=True)
class CompressOptions:
    """Every option of a compress run with its default: the command line's defaults are these.

    ``max_group_size``: the largest sharing class (``build_graph``'s; "auto": 2 with shared bases).
    ``cross_layer``: let layers of one family (same role, different blocks) share (``build_graph``'s; default
    :data:`colorshare.defaults.CROSS_LAYER`). ``probe_tokens``: tokens each probe and measured class runs on
    (None: the first 2 batches whole). ``bits``: the bit-widths a layer's weight may be stored in (None: every one
    of :data:`colorshare.torch.quant.BITS` when the budget is in bits per weight or bytes, else 16 only).
    ``overwrite``: replace an existing non-empty output folder (whole; it is never written into). ``heal``: steps
    of healing (:func:`colorshare.torch.heal`; 0: none) at peak learning rate ``heal_lr``, on at most
    ``heal_tokens`` tokens of the calibration's sources (None: all).
    ``measure_rounds``: with the probed surrogate, solve at most this many
    times, pricing the shared classes of each answer by measurement; 0 or 1: the surrogate only.
    ``calibration`` / ``evaluation``: plain-text files (causal LMs). ``dtype``: of the written parameters
    (``auto``: the source's; a GGUF's quantized weights give bfloat16). ``verify``: reload the written model
    from its folder alone and measure it again. ``time_limit``: seconds for the whole solve."""

    curvature: str = defaults.CURVATURE
    backend: str = "highs"
    time_limit: float = 300.0
    device: str = "cpu"
    seed: int = 0
    verify: bool = True
    max_group_size: int | None | str = "auto"
    measure_rounds: int = 4
    calibration: str | Path | None = None
    evaluation: str | Path | None = None
    dtype: str = "auto"
    cross_layer: bool = defaults.CROSS_LAYER
    probe_tokens: int | None = defaults.PROBE_TOKENS
    bits: tuple[int, ...] | None = None
    overwrite: bool = False
    heal: int = 0
    heal_lr: float = defaults.HEAL_LR
    heal_tokens: int | None = None


@dataclass
class Plan:
    """What :func:`plan` decided: the model case, its graph and solution, the budget (parameters), the dense
    metrics, the linear layers left out (name -> why) and the process layout."""

    case: Any
    graph: Any
    solution: Any
    budget: float
    before: dict[str, float]
    left_out: dict[str, str]
    processes: int = 1
    rank: int = 0


@dataclass
class Written:
    """What :func:`write` produced: the compressed model, its metrics, the stored parameters of the whole model
    before and after, the dtype written and the files (name -> bytes), and whether it is a model folder."""

    model: Any
    after: dict[str, float]
    stored_before: int
    stored_after: int
    dtype: str
    files: dict[str, int]
    folder: bool
    reloaded: dict[str, float] | None = field(default=None)
    healed: dict[str, Any] | None = field(default=None)


def _silent(*_: Any, **__: Any) -> None:
    return None


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def validate(model: str, budget: str, out: str | Path, opts: CompressOptions) -> CompressOptions:
    """Check everything the run needs that can be checked without the model; ValueError naming the problem.
    Returns ``opts`` with the curvature resolved."""
    from .solvers.registry import get_backend

    parsed = parse_budget(budget)  # a percentage, parameters, bits per weight or bytes; > 0
    if opts.bits is not None:
        from .torch.quant import BITS

        for b in opts.bits:
            check("--bits", b, OneOf(BITS))
        if parsed.unit == "parameters" and any(b < 16 for b in opts.bits):
            raise ValueError(f"--bits below 16 need a budget in bytes or bits per weight (like 4.5bpw), "
                             f"not {budget!r}")
    check("--time-limit", opts.time_limit, Real(low=0, low_open=True, allow_inf=True, what="a number of seconds"))
    check_seed(opts.seed, "--seed")
    check("--dtype", opts.dtype, OneOf(DTYPE_CHOICES))
    check("--measure-rounds", opts.measure_rounds, NON_NEGATIVE_INT)
    check("--probe-tokens", opts.probe_tokens, NONE, POSITIVE_INT)
    check_flag(opts.cross_layer, "cross_layer")
    check_flag(opts.verify, "verify")
    if opts.max_group_size != "auto":
        check_max_group_size(opts.max_group_size, "--max-group-size")
    get_backend(opts.backend)  # ValueError naming the valid ones
    from .torch.curvature import CURVATURES

    check("--curvature", opts.curvature, OneOf(CURVATURES))
    for label, f in (("--calibration", opts.calibration), ("--evaluation", opts.evaluation)):
        if f is not None and not Path(f).is_file():
            raise ValueError(f"{label} file {str(f)!r} does not exist")
    check_flag(opts.overwrite, "overwrite")
    check("--heal", opts.heal, NON_NEGATIVE_INT)
    check("--heal-lr", opts.heal_lr, Real(low=0, low_open=True))
    check("--heal-tokens", opts.heal_tokens, NONE, POSITIVE_INT)
    check_target(Path(out), Path(model) if Path(model).exists() else None, opts.overwrite)
    if Path(model).is_dir():
        from .torch.folder import check_no_remote_code, check_not_compressed

        check_no_remote_code(Path(model))  # an auto_map: refused before transformers reads the folder
        check_not_compressed(Path(model))  # a colorshare folder: load it with load_compressed instead
    from .torch import distributed as dist

    if opts.device == "auto" and dist.launched_size() > 1:
        raise ValueError("--device auto (one model spread over devices) and torchrun (one model per process) do "
                         "not combine: give each process its device (--device cuda) or run one process")
    return opts


def resolve_model(model: str, device: str = "cpu", calibration: str | Path | None = None,
                  evaluation: str | Path | None = None) -> Any:
    """A :class:`~colorshare.torch.models.ModelCase` for a built-in name or a local causal-LM folder / GGUF
    file; ``calibration`` / ``evaluation``: plain-text files to calibrate and measure perplexity on (causal LMs
    only; default: the standard library's pydoc topics, even / odd). ValueError naming the problem for an
    unknown name, an unreadable path or text files given for a model that is not a causal LM."""
    from .torch.models import MODEL_CASES, causal_lm_case, load_causal_lm

    if model in MODEL_CASES:
        make = MODEL_CASES[model]
        if "calibration_text" in inspect.signature(make).parameters:  # a causal LM
            return make(device=device, calibration_text=calibration, evaluation_text=evaluation)
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
    except ValueError as exc:  # names the problem already (an auto_map, a colorshare folder, missing weights)
        raise ValueError(f"cannot read {model!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever transformers / gguf raise, name the file
        raise ValueError(f"cannot read {model!r} as a causal language model: {type(exc).__name__}: {exc}") from None
    from .torch.folder import source_dtype

    return causal_lm_case(p.name, lm, tok, device=device, info={"source": str(p)}, source_dtype=source_dtype(p),
                          calibration_text=calibration, evaluation_text=evaluation)


def _bits(budget: str, opts: CompressOptions) -> tuple[int, ...] | None:
    """The bit-widths the graph offers: the options', else every one when the budget counts bytes."""
    from .torch.quant import BITS

    if opts.bits is not None:
        return tuple(opts.bits)
    return BITS if parse_budget(budget).unit == "bytes" else None


def _build(case: Any, opts: CompressOptions, steps: Steps, main: bool, bits: tuple[int, ...] | None,
           keep_group: bool = False) -> Any:
    """The case's graph (``build_graph`` with the options); its preparation steps' seconds go to ``steps``.
    ``keep_group``: leave the process group open (the ranks heal together after the solve)."""
    from .torch import build_graph
    from .torch import distributed as dist
    from .torch.memory import release

    with steps("statistics"):
        try:
            graph = build_graph(case.model, case.batches, case.targets, opts.curvature, seed=opts.seed,
                                max_group_size=opts.max_group_size, cross_layer=opts.cross_layer,
                                probe_tokens=opts.probe_tokens, bits=bits, progress=main)
        except BaseException:
            dist.close()
            raise
        if not keep_group:
            dist.close()  # the statistics were the collective part; rank 0 solves and writes alone
        release()  # what the statistics pass and the probes built and dropped (activations, batch covariances)
    for step in ("quantization", "options", "pair statistics"):  # reported as steps of their own
        if step in graph.preparation:
            steps.seconds["statistics"] -= graph.preparation[step]
            steps.seconds[step] = graph.preparation[step]
    return graph


def start(opts: CompressOptions) -> tuple[int, int, str]:
    """Under torchrun, open the process group (data-parallel statistics): (this process's rank, the processes,
    the device it loads the model on); (0, 1, ``opts.device``) in one process."""
    from .torch import distributed as dist

    rank, processes = dist.init_from_env(opts.device)
    device = opts.device
    if processes > 1 and str(device).startswith("cuda"):
        import torch

        device = f"cuda:{torch.cuda.current_device()}"
    return rank, processes, device


def plan(case: Any, budget: str, opts: CompressOptions, steps: Steps, echo: Any = print, rank: int = 0,
         processes: int = 1) -> Plan | None:
    """Measure ``case`` (a :class:`~colorshare.torch.models.ModelCase`) dense, build its graph and solve at
    ``budget``. Under torchrun every rank takes part in the statistics and only rank 0 solves; with healing
    (``opts.heal``) the others get rank 0's solution (they heal with it), else None."""
    from .torch import distributed as dist

    main = rank == 0
    echo = echo if main else _silent
    with steps("evaluate dense"):
        before = case.metrics(case.model) if main else {}
    echo(f"{case.name}: dense " + ", ".join(f"{k} {v:.4f}" for k, v in before.items()))
    for k in ("calibration", "evaluation"):
        if k in case.info:
            echo(f"{k}: {case.info[k]}")
    together = bool(opts.heal) and processes > 1  # the ranks heal together: rank 0's solution goes to all
    graph = _build(case, opts, steps, main, _bits(budget, opts), keep_group=together)
    if not main:
        sol = dist.broadcast_object(None) if together else None
        if sol is None:  # no healing, or rank 0 failed (it raises the error)
            dist.close()
            return None
        return Plan(case, graph, sol, 0.0, {}, {}, processes, rank)
    try:
        p = _decide(case, graph, budget, opts, steps, echo, before, processes)
    except BaseException:
        if together:
            dist.broadcast_object(None)
            dist.close()
        raise
    if together:
        dist.broadcast_object(p.solution)
    return p


def _decide(case: Any, graph: Any, budget: str, opts: CompressOptions, steps: Steps, echo: Any,
            before: dict[str, float], processes: int) -> Plan:
    """Rank 0's part of :func:`plan`: the budget, the layers left out, the solve and its checks."""
    from .torch.targets import left_out

    if processes > 1:
        echo(f"statistics: data-parallel over {processes} processes ({steps.seconds['statistics']:.0f} s)")
    b = parse_budget(budget).for_graph(graph)
    skipped = left_out(case.model, graph.module_names)
    echo(f"layers: {graph.n} in the graph ({graph.dense_size:,} {graph.unit}); left out: "
         + ("; ".join(f"{n} ({why})" for n, why in list(skipped.items())[:6]) if skipped else "none")
         + (f"; and {len(skipped) - 6} more" if len(skipped) > 6 else ""))
    with steps("solve"):
        sol = _solve(case, graph, b, opts, echo)
    _echo_solution(graph, sol, opts, steps.seconds["solve"], echo)
    if sol.colors is None and sol.status.value == "unknown":
        raise ValueError(f"the solve found no coloring within --time-limit {opts.time_limit:g} s (status unknown, "
                         "nothing proven): give it more time")
    if sol.colors is None:
        floor = sum(min(o.memory for o in graph.options((i,))) for i in range(graph.n))
        raise ValueError(f"no coloring fits the budget {b:,.0f} {graph.unit} ({b / graph.dense_size:.1%}); status "
                         f"{sol.status.value}. Each layer at its smallest option inside the trust region needs "
                         f"{floor:,} ({floor / graph.dense_size:.1%}); sharing may go a little lower")
    return Plan(case, graph, sol, b, before, skipped, processes)


def _solve(case: Any, graph: Any, b: float, opts: CompressOptions, echo: Any) -> Any:
    """The solution at ``b`` parameters: the measurement loop under the probed surrogate, else one solve."""
    from . import solve
    from .torch.memory import release

    if opts.measure_rounds > 1 and graph.probe_ratios is not None:
        from .torch.measure import solve_measured

        sol = solve_measured(graph, case.model, graph.probe_set, b, rounds=opts.measure_rounds,
                             backend=opts.backend, time_limit=opts.time_limit, seed=opts.seed)
        m = sol.facts["measured"]
        echo(f"measured: {len(m['classes'])} shared class(es) in {m['rounds']} solve(s), {m['seconds']:.1f} s of "
             f"measurement; {m['stopped']}")
    else:
        sol = solve(graph, b, backend=opts.backend, time_limit=opts.time_limit, seed=opts.seed)
    release()
    return sol


def space_of(graph: Any, cross_layer: bool) -> str:
    """The space a solve of ``graph`` searched, in words."""
    if not cross_layer:
        return "per-layer options and shared input factors within blocks (no cross-layer classes)"
    if graph.max_group_size is None:
        return "classes of any size"
    return f"classes of at most {graph.max_group_size} layer{'s' if graph.max_group_size > 1 else ''}"


def _echo_solution(graph: Any, sol: Any, opts: CompressOptions, seconds: float, echo: Any) -> None:
    gen = sol.facts.get("column_generation") or {}
    echo(f"solve: {sol.status.value}, objective {_fmt(sol.objective)}, bound {_fmt(sol.bound)}, gap "
         f"{'-' if sol.gap is None else format(sol.gap, '.2%')} over {space_of(graph, opts.cross_layer)} "
         f"({seconds:.0f} s" + (f"; {gen['refined_pairs']} pair statistics" if gen.get("refined_pairs") else "")
         + ")")


def write(p: Plan, out: Path, opts: CompressOptions, steps: Steps, echo: Any = print) -> Written:
    """Apply the plan (a transformers model in place: it is reloaded from its folder, not from the dense model),
    measure the compressed model and write it into ``out``."""
    from .torch import apply_coloring, save_compressed, save_shared, stored_memory
    from .torch.folder import DTYPES
    from .torch.memory import release

    case, graph, sol = p.case, p.graph, p.solution
    folder = hasattr(getattr(case.model, "config", None), "save_pretrained")  # a transformers model
    stored_before = stored_memory(case.model, graph.unit)
    teacher = copy.deepcopy(case.model) if opts.heal else None  # the dense model, the healing's target
    with steps("apply"):
        # no second copy of the model in memory; the graph keeps the dense weights its classes are computed from
        shared = apply_coloring(case.model, graph, sol, inplace=folder)
        release()
    healed = None
    if teacher is not None:
        shared, healed = _heal(p, shared, teacher, opts, steps, echo)
        del teacher
        release()
    stored_after = stored_memory(shared, graph.unit)
    if stored_after != stored_before - graph.dense_size + sol.memory:
        raise RuntimeError(f"the compressed model stores {stored_after:,} {graph.unit}, the plan "
                           f"{stored_before - graph.dense_size + sol.memory:,}: please report this as a bug")
    with steps("evaluate compressed"):
        after = case.metrics(shared)
    echo(f"{case.name}: compressed to {sol.memory / graph.dense_size:.1%} of {graph.dense_size:,} {graph.unit}: "
         + ", ".join(f"{k} {p.before[k]:.4f} -> {v:.4f}" for k, v in after.items()))
    out.mkdir(parents=True, exist_ok=True)
    dtype = case.source_dtype if opts.dtype == "auto" else opts.dtype
    with steps("save"):
        if folder:
            save_compressed(shared, out, case.tokenizer, dtype=dtype)
        else:
            save_shared(shared, out / "model.safetensors", dtype=DTYPES[dtype])
    files = {f.name: f.stat().st_size for f in sorted(out.iterdir()) if f.is_file() and not f.name.startswith("report")}
    echo("written: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in files.items()) + f" ({dtype})")
    return Written(shared, after, stored_before, stored_after, dtype, files, folder, healed=healed)


def heal_beside(p: Plan, opts: CompressOptions, steps: Steps) -> None:
    """Under torchrun with healing, a rank other than 0: apply rank 0's plan and heal beside it (this rank's
    share of each batch, :func:`colorshare.torch.heal`); it measures and writes nothing."""
    from .torch import apply_coloring

    teacher = copy.deepcopy(p.case.model)
    shared = apply_coloring(p.case.model, p.graph, p.solution, inplace=True)
    _heal(p, shared, teacher, opts, steps, _silent)


def _heal(p: Plan, shared: Any, teacher: Any, opts: CompressOptions, steps: Steps,
          echo: Any) -> tuple[Any, dict[str, Any]]:
    """Heal the applied plan against the dense ``teacher`` (:func:`colorshare.torch.heal`) on the calibration's
    sources: the metric before and after, the steps and the time. A plan in fewer bits heals its 16-bit version
    for half the steps, is rounded, and heals straight through the rounding for the rest
    (:func:`colorshare.torch.qat.heal_in_bits`); it keeps its bytes."""
    from .torch import distributed as dist
    from .torch import heal
    from .torch.heal import held_back_loss
    from .torch.qat import heal_in_bits

    case, graph = p.case, p.graph
    with steps("evaluate unhealed"):
        unhealed = case.metrics(shared) if p.rank == 0 else {}
    echo(f"{case.name}: before healing " + ", ".join(f"{k} {v:.4f}" for k, v in unhealed.items()))
    with steps("heal"):
        batches, source = case.heal_text(opts.heal_tokens) if case.heal_text else (case.batches, "calibration")
        kw: dict[str, Any] = {"lr": opts.heal_lr, "seed": opts.seed, "progress": True}
        try:  # under torchrun every rank heals its share of each batch (data-parallel)
            if graph.unit == "bytes":  # benchmarks/heal_bits.py measures the ways to heal a plan in bits
                before = held_back_loss(shared, teacher, batches)  # the plan as applied (its 16-bit version differs)
                shared, phases = heal_in_bits(teacher, graph, p.solution, batches, opts.heal, plan=shared, **kw)
                best = held_back_loss(shared, teacher, batches)  # as stored: the same arithmetic as ``before``
            else:
                phases = [heal(shared, teacher, batches, graph.module_names, steps=opts.heal, **kw)]
                before, best = phases[0].held_before, phases[0].held_best
        finally:
            dist.close()
    last = phases[-1]
    seconds = sum(r.seconds for r in phases)
    echo(f"healed: {opts.heal} steps on {source}, held-back loss {before:.4g} -> {best:.4g}"
         f" (best at step {last.best_step}{' of the last phase' if len(phases) > 1 else ''}), {seconds:.0f} s")
    return shared, {"steps": sum(r.steps for r in phases), "best_step": last.best_step,
                    "held_back_before": before, "held_back_best": best,
                    "parameters": max(r.parameters for r in phases), "seconds": seconds, "text": source,
                    "metric_unhealed": unhealed, "lr": opts.heal_lr,
                    "phases": [{"steps": r.steps, "best_step": r.best_step, "held_back_before": r.held_before,
                                "held_back_best": r.held_best, "seconds": r.seconds,
                                "curve": [list(c) for c in r.curve if c[2] is not None]} for r in phases],
                    "curve": [list(c) for c in last.curve if c[2] is not None]}


def verify(p: Plan, w: Written, out: Path, opts: CompressOptions, steps: Steps, echo: Any = print) -> None:
    """Reload what :func:`write` wrote (a transformers model from its folder alone: what a user gets) and
    measure it again; the metrics go to ``w.reloaded``."""
    from .torch import load_compressed, load_shared
    from .torch.models import input_device

    with steps("reload and evaluate"):
        if w.folder:
            device = input_device(p.case.model) if opts.device == "auto" else opts.device
            loaded = load_compressed(out, device=device)
        else:
            loaded = load_shared(out / "model.safetensors", copy.deepcopy(p.case.model))
        w.reloaded = p.case.metrics(loaded)
    echo(f"reloaded ({w.dtype}): " + ", ".join(f"{k} {v:.4f}" for k, v in w.reloaded.items()))


def _unit_fields(graph: Any, budget: float, stored: int, w: Written) -> dict[str, Any]:
    """The report's figures named by their unit: parameters (the compression ratio's), or bytes and bits per
    weight."""
    if graph.unit == "parameters":
        return {"budget_parameters": int(math.floor(budget)) if math.isfinite(budget) else None,
                "stored_parameters": stored, "model_parameters_before": w.stored_before,
                "model_parameters_after": w.stored_after}
    return {"stored_bytes": stored, "bits_per_weight": 8.0 * stored / graph.dense_parameters,
            "model_bytes_before": w.stored_before, "model_bytes_after": w.stored_after}


def report(model: str, p: Plan, w: Written, out: Path, opts: CompressOptions, steps: Steps,
           echo: Any = print, budget_text: str = "", final: Path | None = None) -> dict[str, Any]:
    """The run's report (returned, and written as ``report.json`` and ``report.md`` into ``out``; ``final``: where
    the folder ends up, if ``out`` is its staging place)."""
    graph, sol = p.graph, p.solution
    rep = {
        "model": p.case.name, "source": model, "curvature": opts.curvature,
        "trust_region": graph.trust_region,
        "layers": graph.n, "unit": graph.unit, "budget": budget_text, "dense_memory": graph.dense_size,
        "dense_parameters": graph.dense_parameters,
        "budget_memory": int(math.floor(p.budget)) if math.isfinite(p.budget) else None,
        "budget_fraction": p.budget / graph.dense_size if math.isfinite(p.budget) else None,
        "stored_memory": int(sol.memory),
        "stored_fraction": sol.memory / graph.dense_size,
        "model_memory_before": w.stored_before, "model_memory_after": w.stored_after,
        **_unit_fields(graph, p.budget, int(sol.memory), w),
        "metric_before": p.before, "metric_after": w.after, "metric_after_reload": w.reloaded,
        "solution": {"backend": sol.backend, "status": sol.status.value, "objective": sol.objective,
                     "bound": sol.bound, "gap": sol.gap, "wall_time": sol.wall_time,
                     "space": space_of(graph, opts.cross_layer), "restricted": sol.facts.get("restricted"),
                     "columns": sol.facts.get("columns"), "measured": sol.facts.get("measured"),
                     "colors": sol.colors},
        "probe_tokens": _tokens(getattr(graph, "probe_set", None)), "cross_layer": opts.cross_layer,
        "bits": list(graph.bits_menu),
        "families": family_table(graph, sol), "left_out": p.left_out, "seconds": dict(steps.seconds),
        "processes": p.processes, "peak_memory_gib": peak_rss_gib(),
        "file": str(Path(final or out) / "model.safetensors"), "dtype": w.dtype, "files_bytes": w.files,
        "folder": w.folder, "case_info": {k: str(v) for k, v in p.case.info.items()}, "heal": w.healed,
    }
    (out / "report.json").write_text(json.dumps(rep, indent=2, default=str))
    (out / "report.md").write_text(markdown(rep))
    echo(markdown(rep))
    return rep


def _tokens(batches: Any) -> int | None:
    """Tokens in transformers batches (their ``input_ids``), None for other batches or none."""
    if not batches or not all(isinstance(b, dict) and hasattr(b.get("input_ids"), "numel") for b in batches):
        return None
    return int(sum(b["input_ids"].numel() for b in batches))


def compress(model: str, budget: str, out: str | Path, echo: Any = print, **options: Any) -> dict[str, Any]:
    """Compress ``model`` to ``budget`` and write the model and report into ``out``; returns the report.

    ``options``: the fields of :class:`CompressOptions` (a TypeError names an unknown one). Launched by
    ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1), the statistics run data-parallel over the N
    processes (:mod:`colorshare.torch.distributed`); rank 0 then solves, writes and returns the report, the
    other ranks return ``{"rank": r, "processes": N}``."""
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(CompressOptions)})
    if unknown:
        raise TypeError(f"compress() got unknown option(s) {', '.join(unknown)}")
    opts = validate(model, budget, out, CompressOptions(**options))
    out = Path(out)
    steps = Steps()
    rank, processes, device = start(opts)
    with steps("load"):
        case = resolve_model(model, device, opts.calibration, opts.evaluation)
    p = plan(case, budget, opts, steps, echo, rank, processes)
    if p is None:
        return {"rank": rank, "processes": processes}
    if p.rank != 0:  # a rank healing beside rank 0: applies its plan and heals, writes nothing
        heal_beside(p, opts, steps)
        return {"rank": rank, "processes": processes}
    stage = staging_folder(out)  # the folder is built aside and renamed into place whole: never half-written
    try:
        w = write(p, stage, opts, steps, echo)
        if opts.verify:
            verify(p, w, stage, opts, steps, echo)
        rep = report(model, p, w, stage, opts, steps, echo, budget, final=out)
        publish(stage, out)
        echo(f"folder: {out}")
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return rep


def main_from_args(args: Any) -> int:
    """The CLI's ``compress`` subcommand."""
    mgs = args.max_group_size
    try:
        compress(args.model, args.budget, args.out, curvature=args.curvature, backend=args.backend,
                 time_limit=args.time_limit, device=args.device, seed=args.seed, verify=not args.no_verify,
                 max_group_size="auto" if mgs is None else (None if mgs == 0 else mgs),
                 measure_rounds=args.measure_rounds, calibration=args.calibration, evaluation=args.evaluation,
                 dtype=args.dtype, cross_layer=args.cross_layer,
                 probe_tokens=None if args.probe_tokens == 0 else args.probe_tokens,
                 bits=None if args.bits is None else tuple(args.bits), overwrite=args.overwrite,
                 heal=args.heal, heal_lr=args.heal_lr, heal_tokens=args.heal_tokens)
    except (ValueError, OSError) as exc:
        print(f"colorshare: error: {exc}", file=sys.stderr)
        return 2
    return 0
