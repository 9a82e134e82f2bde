"""What one benchmark run does: the ``quick`` and ``full`` presets, overridable field by field."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["BenchConfig", "PRESETS", "SECTIONS", "MODELS"]

SECTIONS = ("solvers", "compression", "fidelity")
MODELS = ("digits-mlp", "minilm-l6", "smollm2-135m")
INSTANCE_DIR = Path(__file__).resolve().parent / "instances"
"""The committed real-model instances, shipped with the package (package data)."""
MODEL_INSTANCES = ("smollm2-135m-probed", "smollm2-135m-kfac", "minilm-l6-probed")
"""Real models' graphs as committed instance files (``colorshare/bench/instances/NAME.json.gz``, written by
``python -m benchmarks.instances``): their evaluated columns and bounds, at the budgets they list."""


@dataclass(frozen=True)
class BenchConfig:
    """Settings of a run. Times in seconds; budgets as fractions of the dense size of the target layers."""

    out: Path = Path("bench-results")
    sections: tuple[str, ...] = SECTIONS
    models: tuple[str, ...] = MODELS
    solver_models: tuple[str, ...] = ("digits-mlp", "minilm-l6")  # models whose graph enters the solver section
    device: str = "cpu"
    seed: int = 0
    time_limit: float = 10.0
    backends: tuple[str, ...] | None = None  # None: every available backend
    planted_sizes: tuple[int, ...] = (8, 14, 28, 56, 112, 224, 448)  # layers; 7 families from 14 on
    ranked_layers: tuple[int, ...] = (2, 4, 8, 16, 30)  # layers per family of the ranked instances (7 families)
    ranked_families: int = 7  # families of the ranked instances (7 x 30 = 210 layers: SmolLM2's shape)
    model_instances: tuple[str, ...] = MODEL_INSTANCES  # committed real-model instance files (torch-free)
    mycielski: tuple[int, ...] = (3, 4, 5, 6)  # chromatic numbers of the built-in coloring instances
    data: Path | None = None  # folder with dimacs/ and pmed/ (published optima), optional
    dimacs: tuple[str, ...] = ("myciel3", "myciel4", "myciel5", "queen5_5", "queen6_6", "1-FullIns_3")
    pmed: tuple[str, ...] = ("pmed1", "pmed2", "pmed3", "pmed4")
    sweep_instances: tuple[str, ...] = ("llama7b-224", "planted-448", "ranked-210")  # gap versus time
    sweep_limits: tuple[float, ...] = (1.0, 3.0, 30.0)  # besides time_limit
    model_budget: float = 0.5  # budget of the real models' graphs in the solver comparison
    budgets: tuple[float, ...] = (0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
    solve_limit: float = 120.0  # seconds per solve of the compression section (HiGHS); early stops are noted
    measure_rounds: int = 4  # optimal under a probed graph: solves with measured shared classes (0: surrogate only)
    methods: tuple[str, ...] = ("optimal", "adjacent", "per-layer", "all-shared", "similarity", "random")
    group_size: int = 2  # k of adjacent / similarity / random
    random_seeds: int = 3
    curvature: str = "probed"  # the surrogate every compression method minimises (the default pipeline's)
    optimal_curvatures: tuple[str, ...] = ("kfac", "layerwise")  # also solve `optimal` under these (optimal-<name>)
    baselines: tuple[str, ...] = ("svd-uniform", "basis-sharing")  # the papers' baselines, at each budget
    estimators: tuple[str, ...] = ("probed", "kfac", "layerwise", "fisher", "hutchinson", "spectrum", "trace")
    fidelity_colorings: int = 60  # at least this many colorings per estimator (random ones fill up)
    # the others (SmolLM2: each coloring costs a perplexity pass): every graph the run built predicts the
    # compression section's colorings and the baselines, no further colorings
    fidelity_models: tuple[str, ...] = ("digits-mlp", "minilm-l6")
    progress: bool = True

    def with_(self, **changes: Any) -> BenchConfig:
        """A copy with ``changes`` (None values are ignored, so CLI defaults can be passed through)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, BenchConfig] = {
    "full": BenchConfig(),
    "quick": BenchConfig(
        models=("digits-mlp", "minilm-l6"),
        time_limit=5.0,
        planted_sizes=(8, 28, 56, 224),
        ranked_layers=(2, 4, 30),
        mycielski=(3, 4, 5),
        sweep_instances=("llama7b-224",),
        sweep_limits=(1.0, 2.0),
        budgets=(0.7, 0.4),
        random_seeds=2,
        optimal_curvatures=("kfac", "layerwise"),
        fidelity_colorings=50,
        fidelity_models=("digits-mlp",),
    ),
}
