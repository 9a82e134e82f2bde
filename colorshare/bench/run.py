"""``colorshare bench``: run the suite, write the CSVs, summary.md and plots, fail loudly on disagreement."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import functools
import importlib.util
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .config import MODELS, PRESETS, SECTIONS, BenchConfig
from .results import BenchResult, Note, SolverRow, compression_row, fidelity_row

if TYPE_CHECKING:  # colorshare.bench imports torch only where a model section runs
    from ..torch.model_graph import ModelGraph
    from .compression import Coloring

__all__ = ["run_suite", "main", "add_arguments", "config_from_args", "write_csv", "read_results"]

_META = ("started", "known", "families", "agreement", "timings")
_NUMERIC = {"n_layers": int, "time_limit": float, "objective": float, "bound": float, "gap": float,
            "wall_time": float, "budget_fraction": float, "stored_parameters": int, "surrogate": float,
            "value": float, "predicted": float, "measured": float}


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Any], rename: dict[str, str] | None = None) -> None:
    """Rows as CSV with exactly ``columns`` (None written as an empty cell); ``rename``: column -> the row
    field it is written from (compression.csv's ``method`` cell holds the row's ``label``)."""
    rename = rename or {}
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="raise")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[rename.get(k, k)] is None else r[rename.get(k, k)]) for k in columns})


class ModelRun:
    """One model of the run: its case, and its graphs per curvature estimator (built once, on first use)."""

    def __init__(self, cfg: BenchConfig, name: str, res: BenchResult) -> None:
        from ..torch.models import MODEL_CASES

        t0 = time.perf_counter()
        if cfg.progress:
            print(f"[bench] {name}: loading / training and building its graph", flush=True)
        self.cfg, self.name, self.res = cfg, name, res
        self.case = MODEL_CASES[name](device=cfg.device)
        self.graphs: dict[tuple[str, bool], ModelGraph] = {}
        self.graph = self.graph_for(cfg.curvature)
        self.seconds = time.perf_counter() - t0

    def supports(self, estimator: str) -> bool:
        return self.case.estimators is None or estimator in self.case.estimators

    def graph_for(self, estimator: str, trust: bool = True) -> ModelGraph:
        """The model's graph under ``estimator`` (warnings, e.g. negative curvature clipped, go to the log).

        ``trust``: with the default trust region (the default pipeline, for the compression section), or
        without (fidelity: every coloring must carry over to every estimator's graph)."""
        key = (estimator, trust)
        if key not in self.graphs and (estimator, not trust) in self.graphs:
            # the same statistics (and probes) under the other trust region: no second pass over the model
            from ..torch.model_graph import DEFAULT_TRUST_REGION

            self.graphs[key] = self.graphs[(estimator, not trust)].with_trust_region(
                DEFAULT_TRUST_REGION if trust else None)
        if key not in self.graphs:
            import warnings

            from ..torch import build_graph
            from ..torch.model_graph import DEFAULT_TRUST_REGION

            c = self.case
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                # kfac / probed: the default self-distillation Fisher and divergence (a distillation loss has
                # zero gradient at the dense model, so its empirical Fisher is 0)
                self.graphs[key] = build_graph(
                    c.model, c.batches, c.targets, estimator,
                    loss_fn=None if estimator in ("kfac", "probed") else c.loss_fn,
                    ranks=c.ranks, seed=self.cfg.seed, trust_region=DEFAULT_TRUST_REGION if trust else None,
                    progress=self.cfg.progress and estimator == self.cfg.curvature)
            if caught:
                self.res.note("warning", f"{self.name} {estimator}: {len(caught)} warning(s), e.g. {caught[0].message}")
        return self.graphs[key]


def _solvers(cfg: BenchConfig, runs: dict[str, ModelRun], res: BenchResult) -> Exception | None:
    """The solver section; returns (not raises) an AgreementError so that the other sections still run."""
    from .solvers import SOLVER_COLUMNS, AgreementError, check_agreement, run_solvers, solver_instances

    instances = solver_instances(cfg, {n: mr.graph for n, mr in runs.items() if n in cfg.solver_models})
    res.solvers = run_solvers(cfg, instances)
    write_csv(Path(cfg.out) / "solvers.csv", SOLVER_COLUMNS, res.solvers)
    res.known = {i.name: i.known for i in instances}
    res.families = {i.name: i.family for i in instances}
    try:
        res.agreement = check_agreement(res.solvers, res.known)
    except AgreementError as exc:
        res.agreement = ["FAILED: " + line for line in str(exc).splitlines()]
        return exc
    return None


def _compression(cfg: BenchConfig, runs: dict[str, ModelRun], res: BenchResult) -> dict[str, list[Coloring]]:
    """The compression section; returns each model's colorings (for the fidelity section)."""
    from .compression import COMPRESSION_COLUMNS, run_compression

    colorings: dict[str, list[Coloring]] = {}
    for name, mr in runs.items():
        extra = {e: mr.graph_for(e) for e in cfg.optimal_curvatures if mr.supports(e) and e != cfg.curvature}
        for g in (mr.graph, *extra.values()):
            if "pair statistics" in g.preparation:  # built with the graph, outside the solves' time limits
                res.note("info", f"{name}: pair statistics {g.preparation['pair statistics']:.0f} s")
        rows, colorings[name] = run_compression(cfg, mr.case, mr.graph, res, extra)
        res.compression += rows
    write_csv(Path(cfg.out) / "compression.csv", COMPRESSION_COLUMNS, res.compression, rename={"method": "label"})
    # every coloring with its classes, so a later analysis can price or apply it again without solving again
    (Path(cfg.out) / "colorings.json").write_text(json.dumps(
        {name: [dataclasses.asdict(c) for c in cs] for name, cs in colorings.items()}, default=str))
    return colorings


def _fidelity(cfg: BenchConfig, runs: dict[str, ModelRun], res: BenchResult,
              colorings: dict[str, list[Coloring]]) -> None:
    from .fidelity import FIDELITY_COLUMNS, price, random_colorings, run_fidelity

    for name, mr in runs.items():
        case = mr.case
        if name not in cfg.fidelity_models or case.loss_fn is None:
            # no further colorings: every graph the run built (with its trust region) prices each coloring of the
            # compression section, baselines included, against its measured loss increase
            priced: set[str] = set()
            for (est, _), g in list(mr.graphs.items()):
                if est in priced:  # the same statistics under the other trust region: the same prices
                    continue
                priced.add(est)
                for c in colorings[name]:
                    predicted = price(g, c.classes)
                    if predicted is not None and c.loss_increase is not None:
                        res.fidelity.append(fidelity_row(name, est, c.name, predicted, c.loss_increase))
            continue
        cols = [c for c in colorings[name] if not c.baseline]  # off-menu ranks: carried over by evaluate()
        cols += random_colorings(mr.graph, max(0, cfg.fidelity_colorings - len(cols)), cfg.seed, name)
        if case.info.get("left out"):
            res.note("info", f"{name} fidelity: left out {case.info['left out']}")
        res.fidelity += run_fidelity(cfg, case, cols, [e for e in cfg.estimators if mr.supports(e)],
                                     functools.partial(mr.graph_for, trust=False))
    write_csv(Path(cfg.out) / "fidelity.csv", FIDELITY_COLUMNS, res.fidelity)


def run_suite(cfg: BenchConfig) -> BenchResult:
    """Run the configured sections and write everything into ``cfg.out``.

    Returns the :class:`BenchResult`: the rows of each section, the agreement evidence and the run's notes. Raises
    :class:`~colorshare.bench.solvers.AgreementError` after writing the files if exact backends disagree.

    Example
    -------
    >>> from colorshare.bench import PRESETS, run_suite
    >>> res = run_suite(PRESETS["quick"].with_(out="bench-results", models=("digits-mlp",)))  # doctest: +SKIP
    """
    from .report import write_report

    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    res = BenchResult(started=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    needs_models = bool(cfg.models) and any(s in cfg.sections for s in SECTIONS)
    runs = {name: ModelRun(cfg, name, res) for name in cfg.models} if needs_models else {}
    for name, mr in runs.items():
        res.timings[f"{name}: model + graph"] = mr.seconds
        nf = len(mr.graph.family_members)
        res.note("layers", f"{name}: {mr.graph.n} target layers in {nf} famil{'y' if nf == 1 else 'ies'}, dense "
                 f"size {mr.graph.dense_size} parameters")
    error = None
    t0 = time.perf_counter()
    if "solvers" in cfg.sections:
        error = _solvers(cfg, runs, res)
        res.timings["solvers"] = time.perf_counter() - t0
    colorings: dict[str, list[Coloring]] = {}
    if "compression" in cfg.sections or "fidelity" in cfg.sections:
        t0 = time.perf_counter()
        colorings = _compression(cfg, runs, res)
        res.timings["compression"] = time.perf_counter() - t0
    if "fidelity" in cfg.sections:
        t0 = time.perf_counter()
        _fidelity(cfg, runs, res, colorings)
        res.timings["fidelity"] = time.perf_counter() - t0
    res.timings["total"] = time.perf_counter() - t_start
    meta: dict[str, Any] = {k: getattr(res, k) for k in _META}
    meta["notes"] = [dataclasses.asdict(n) for n in res.notes]
    meta["config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}
    (Path(cfg.out) / "run.json").write_text(json.dumps(meta, indent=1, default=str))
    write_report(cfg, res)
    if error is not None:
        raise error
    return res


def read_results(out: Path) -> tuple[BenchConfig, BenchResult]:
    """The config and results of a finished run, read back from ``out`` (CSVs + run.json)."""
    meta = json.loads((Path(out) / "run.json").read_text())
    fields = {f.name: f for f in dataclasses.fields(BenchConfig)}
    conf = {}
    for k, v in meta.pop("config").items():
        if k not in fields:
            continue
        if isinstance(v, list):
            v = tuple(v)
        elif k in ("out", "data") and v is not None:
            v = Path(v)
        conf[k] = v
    cfg = BenchConfig(**conf).with_(out=Path(out))
    notes = [Note(**n) for n in meta.get("notes", [])]
    if "log" in meta:  # runs written before notes had kinds
        notes = [Note("layers" if "target layers" in t else "solve" if ("gap" in t or "no coloring" in t) else "info",
                      t) for t in meta["log"]]
    res = BenchResult(started=meta.get("started") or "", notes=notes, known=meta.get("known") or {},
                      families=meta.get("families") or {}, agreement=meta.get("agreement") or [],
                      timings=meta.get("timings") or {})
    for section in SECTIONS:
        path = Path(out) / f"{section}.csv"
        rows: list[dict[str, Any]] = []  # column -> cell: None if empty, numeric columns parsed (_NUMERIC)
        if path.exists():
            with open(path, newline="") as fh:
                for r in csv.DictReader(fh):
                    rows.append({k: (None if v == "" else _NUMERIC[k](float(v)) if k in _NUMERIC else v)
                                 for k, v in r.items()})
        if section == "solvers":
            res.solvers = cast("list[SolverRow]", rows)  # solvers.csv has exactly SOLVER_COLUMNS
        elif section == "compression":
            res.compression = [compression_row(r["model"], r["method"], r["budget_fraction"], r["stored_parameters"],
                                               r["surrogate"], r["metric"], r["value"]) for r in rows]
        else:
            res.fidelity = [fidelity_row(r["model"], r["curvature"], r["coloring"], r["predicted"], r["measured"])
                            for r in rows]
    return cfg, res


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="the short preset (under 10 minutes on 2 cores)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: bench-results)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="where the models run (default cpu)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds per solve in the solver comparison")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=None, help="subset of sections")
    p.add_argument("--models", nargs="*", choices=MODELS, default=None, help="subset of models (none: no models)")
    p.add_argument("--budgets", nargs="+", type=float, default=None, help="budget fractions, e.g. 0.9 0.5")
    p.add_argument("--backends", nargs="+", default=None, help="subset of backends (default: all available)")
    p.add_argument("--data", type=Path, default=None,
                   help="folder with dimacs/ and pmed/ instances and their published optima (optional)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--curvature", default=None,
                   help="the surrogate all compression methods minimise (default probed; e.g. kfac)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite summary.md and the plots from the results already in --out")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The preset chosen by ``--quick`` with the given overrides; ValueError naming a bad value."""
    cfg = PRESETS["quick" if args.quick else "full"]
    if args.time_limit is not None and not (args.time_limit > 0 and math.isfinite(args.time_limit)):
        raise ValueError(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    if args.budgets is not None and not all(0 < b <= 1 for b in args.budgets):
        raise ValueError(f"--budgets must be fractions in (0, 1], got {args.budgets}")
    if args.data is not None and not (args.data / "dimacs").is_dir():
        raise ValueError(f"--data {args.data} has no dimacs/ folder")
    models = tuple(args.models) if args.models is not None else cfg.models
    missing = [m for m in ("torch", "sklearn", "matplotlib") if importlib.util.find_spec(m) is None]
    if models and missing:
        raise ValueError(f"the model sections need {', '.join(missing)}: pip install 'colorshare[torch,bench]' "
                         "(or run only the solvers with --models and no names)")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda, but torch sees no CUDA device")
    if args.backends:
        from ..solvers.registry import get_backend

        for b in args.backends:
            get_backend(b)
    if args.curvature is not None:
        from ..torch import CURVATURES

        if args.curvature not in CURVATURES:
            raise ValueError(f"--curvature {args.curvature!r} is unknown; valid: {', '.join(CURVATURES)}")
    return cfg.with_(
        curvature=args.curvature, out=args.out, device=args.device, time_limit=args.time_limit,
        sections=tuple(args.sections) if args.sections else None,
        models=models,
        budgets=tuple(args.budgets) if args.budgets else None,
        backends=tuple(args.backends) if args.backends else None, data=args.data, seed=args.seed,
        progress=False if args.no_progress else None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks``: parse ``argv`` and run; the exit code of :func:`run_from_args`."""
    p = argparse.ArgumentParser(prog="colorshare bench", description="Run the benchmark suite.")
    add_arguments(p)
    args = p.parse_args(argv)
    return run_from_args(args, p)


def run_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run with parsed arguments; exit code 0, 1 if exact backends disagree, 2 for a bad argument."""
    from .solvers import AgreementError

    if args.report_only:
        from .report import write_report

        out = args.out or PRESETS["full"].out
        if not (Path(out) / "run.json").exists():
            parser.error(f"--report-only: {out} holds no finished run (run.json missing)")
        write_report(*read_results(out))
        print(f"rewrote summary.md and plots in {out}")
        return 0
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        res = run_suite(cfg)
    except AgreementError as exc:
        print(f"\nBENCHMARK FAILED: {exc}\n(results written to {cfg.out})")
        return 1
    print(f"\nwrote {', '.join(sorted(p.name for p in Path(cfg.out).iterdir()))} to {cfg.out} "
          f"in {res.timings['total']:.0f} s")
    return 0
