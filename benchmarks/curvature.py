"""Curvature estimator cost: each estimator's time as a ratio to a plain forward pass over the same batches.

    python -m benchmarks.curvature [--width 128] [--depth 8] [--batches 16]

Measured side by side in one run on a deep MLP (digits-shaped input). Target for ``layerwise``: <= 1.5x.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from colorshare.torch import estimate, select_modules
from colorshare.torch.curvature import forward


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    w = args.width
    model = nn.Sequential(nn.Linear(64, w), nn.ReLU(),
                          *[m for _ in range(args.depth) for m in (nn.Linear(w, w), nn.ReLU())],
                          nn.Linear(w, 10))
    data = [(torch.randn(args.batch_size, 64), torch.randint(0, 10, (args.batch_size,))) for _ in range(args.batches)]
    mods = select_modules(model)

    def loss_fn(out, b):
        return nn.functional.cross_entropy(out, b[1])

    t0 = time.perf_counter()
    with torch.no_grad():
        for b in data:
            forward(model, b)
    base = time.perf_counter() - t0
    print(f"{'estimator':<11} {'seconds':>8} {'x forward':>10}")
    print(f"{'forward':<11} {base:>8.3f} {1.0:>10.2f}")
    for kind, kw in [("layerwise", {}), ("fisher", {}), ("trace", {"probes": 1}), ("hutchinson", {"probes": 1}),
                     ("spectrum", {"probes": 1, "k": 2})]:
        t0 = time.perf_counter()
        estimate(model, mods, data if kind != "spectrum" else data[:2], kind, loss_fn, progress=False, **kw)
        dt = time.perf_counter() - t0
        note = " (2 batches)" if kind == "spectrum" else ""
        print(f"{kind:<11} {dt:>8.3f} {dt / base:>10.2f}{note}")


if __name__ == "__main__":
    main()
