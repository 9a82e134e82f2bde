"""The benchmark suite: solver gaps, compression at equal memory on real models, surrogate fidelity.

    colorshare bench [--quick] [--out DIR] [--device cpu|cuda] [--time-limit S]     (or python -m benchmarks)

Writes solvers.csv, compression.csv, fidelity.csv, summary.md and PNG plots into DIR. The solver section is
numpy-only; the model sections import torch through :mod:`colorshare.torch`.
"""

from .config import PRESETS, BenchConfig
from .run import main, run_suite
from .solvers import AgreementError, check_agreement

__all__ = ["BenchConfig", "PRESETS", "run_suite", "main", "AgreementError", "check_agreement"]
