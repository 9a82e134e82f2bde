"""The budget study: the default pipeline (optimal, with its measurement loop) against per-layer ranks under the
same surrogate and the papers' baselines, keep 80-30 %, compression section only, one model per run.

    python -m benchmarks.budgets smollm2-135m benchmarks/results/budgets/smollm2-135m
"""

import sys
import time
from pathlib import Path

from colorshare.bench import PRESETS, run_suite


def main(model: str, out: str) -> None:
    cfg = PRESETS["full"].with_(out=Path(out), sections=("compression",), models=(model,),
                                methods=("optimal", "per-layer"), optimal_curvatures=(), progress=False)
    t = time.perf_counter()
    run_suite(cfg)
    print(f"{model}: {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main(*sys.argv[1:3])
