"""Calibration noise on MiniLM: per-layer ranks (max_group_size=1) and the default at 50 % and 40 %, calibrated on
each half of the 256 calibration sentences; the spread between halves is the noise of a 128-sentence set."""
import time
import warnings

from colorshare import solve
from colorshare.torch import apply_coloring, build_graph
from colorshare.torch.model_graph import DEFAULT_TRUST_REGION
from colorshare.torch.models import minilm_l6

warnings.simplefilter("ignore")

case = minilm_l6()
halves = {"A": case.batches[:4], "B": case.batches[4:]}
for h, bs in halves.items():
    t = time.perf_counter()
    g = build_graph(case.model, bs, case.targets, "probed", ranks=case.ranks, seed=0,
                    trust_region=DEFAULT_TRUST_REGION, progress=False)
    for frac in (0.5, 0.4):
        s = solve(g, frac * g.dense_size, backend="highs", time_limit=60, max_group_size=1)
        m = case.metrics(apply_coloring(case.model, g, s))
        print(f"half {h} keep {frac:.0%} per-layer cosine {m['cosine']:.4f}", flush=True)
    print(f"half {h}: {time.perf_counter()-t:.0f} s", flush=True)
